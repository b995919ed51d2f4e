"""The DR compliance report, built from objects read from the real API server, as a person sees it in Chromium.

The objects live in the test's own namespace of the session cluster; the report is built from that
namespace (as ``lifeline report -n`` and an operator watching it build theirs): other tests'
objects share the cluster."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta

import aiohttp

from lifeline.audit import chain, open_store
from lifeline.observability import audit
from lifeline.clock import FrozenClock
from lifeline.observability.report import (
    audit_facts, collect_objects, render_report, write_report, write_report_async,
)

from . import browser
from .scene import NOW, NS, apply, objects

PACS_KEY = "vault-transit://lifeline-pacs?mount=transit"


def _audit_log(url: str, namespace: str = NS) -> None:
    sink = audit.use_store(url, writer="test")
    try:
        audit.record("key-rotation", actor="ops@hospital", outcome="succeeded",
                     subject={"kind": "Key", "namespace": "", "name": PACS_KEY},
                     details={"latest_version": 4, "rewrapped": 12}, when=NOW - timedelta(days=10))
        audit.record("drill", actor="system:lifeline-operator", outcome="succeeded",
                     subject={"kind": "RestoreDrill", "namespace": namespace, "name": "pacs-images-quarterly"},
                     when=NOW - timedelta(days=22))
    finally:
        audit.remove_sink(sink)


async def test_report_shows_an_auditor_every_objective(kube, client, chromium_bin, tmp_path):
    listed = await apply(kube, client)
    ns = kube.namespace
    audit_url = f"file://{tmp_path}/audit"
    _audit_log(audit_url, ns)
    page = await write_report_async(await collect_objects(client, namespace=ns), tmp_path / "report.html",
                                    audit_url, now=NOW)
    # the same objects as plain dicts give the same page: the report is a pure function of its inputs
    assert page.read_text() == render_report(listed, audit_facts(audit_url), NOW)

    text, shot = await asyncio.to_thread(browser.render, chromium_bin, page, tmp_path)
    assert shot.stat().st_size > 20_000
    assert "Lifeline DR compliance report" in text
    assert "Generated 2026-11-23 10:00:00 UTC" in text

    summary = browser.section(text, "Summary", "Audit trail")
    assert f"BackupPolicy {ns}/his-database: RPO missed" in summary
    assert f"RestoreDrill {ns}/pacs-images-quarterly: RTO missed in the last drill" in summary
    assert "pacs-images: RPO missed" not in summary

    his = browser.section(text, f"BackupPolicy {ns}/his-database", f"BackupPolicy {ns}/pacs-images")
    assert "target 5m, achieved 1h30m: RPO missed" in his
    assert "full backup Failed" in his and "S3 bucket 'dr-site-b' unreachable" in his
    assert "key ref vault-transit://lifeline-his?mount=transit" in his
    assert "provider Vault transit (envelope encryption)" in his
    assert "never rotated (no key-rotation record in the audit log)" in his
    assert "his-database-20261123-0830 | full | 2026-11-23 08:30:00 UTC | 38.0 GiB | site-b-s3" in his
    assert "restore drills | his-database-monthly" in his

    pacs = browser.section(text, f"BackupPolicy {ns}/pacs-images", "Restore drills")
    assert "target 15m, achieved 7m: RPO met" in pacs
    assert "last key rotation | 2026-11-13 10:00:00 UTC by ops@hospital (succeeded, audit record 0)" in pacs
    assert "off-site copies | Off-site copy present" in pacs
    assert "offsite-s3" in pacs and "812.0 GiB" in pacs
    assert "restore drills | pacs-images-quarterly" in pacs

    drills = browser.section(text, "Restore drills", "Failovers")
    pacs_drill = browser.section(drills, f"RestoreDrill {ns}/pacs-images-quarterly", f"RestoreDrill {ns}/his")
    assert "45m10s | 30m | RTO missed" in pacs_drill
    assert "20m50s | 30m | RTO met" in pacs_drill
    his_drill = browser.section(drills, f"RestoreDrill {ns}/his-database-monthly", f"RestoreDrill {ns}/pacs")
    assert "4m2s | 5m | RTO met" in his_drill

    failovers = browser.section(text, "Failovers", "End of report")
    assert f"FailoverPlan {ns}/icu-monitoring (tier A)" in failovers
    assert "FailoverComplete | site-b | 3m32s | 5m | RTO met" in failovers
    assert "FailbackComplete | site-a | — | 5m | planned (no outage)" in failovers

    trail = browser.section(text, "Audit trail", "Backups per policy")
    assert "Audit chain verified: audit log " + audit_url + " is intact: 2 records" in trail


def test_a_tampered_audit_log_is_flagged_in_the_report(chromium_bin, tmp_path):
    audit_url = f"file://{tmp_path}/audit"
    _audit_log(audit_url)
    store = open_store(audit_url, create=False)
    record = json.loads(store.backend.get(chain.record_name(0)))
    record["actor"] = "someone-else"
    store.backend.put(chain.record_name(0), chain.to_bytes(record))
    plain = {"backuppolicies": [b for b, _ in objects() if b["kind"] == "BackupPolicy"]}  # no status yet
    page = write_report(plain, tmp_path / "tampered.html", audit_url=audit_url, now=NOW)
    text, _ = browser.render(chromium_bin, page, tmp_path, height=1600)
    assert "Audit chain verification FAILED" in text
    assert "record 0 was edited: its content no longer matches its hash" in text
    assert "Audit log: verification FAILED" in browser.section(text, "Summary", "Audit trail")
    assert "RPO unknown: no successful backup yet" in text


async def test_lifeline_report_command_writes_the_page(kube, client, tmp_path):
    await apply(kube, client)
    out = tmp_path / "cli.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifeline.cli", "report", "--kubeconfig", str(kube.cluster.kubeconfig),
        "-n", kube.namespace, "-o", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LIFELINE_AUDIT_URL": ""})
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    html = out.read_text()
    assert f"BackupPolicy {kube.namespace}/his-database" in html and "RPO missed" in html
    assert "No audit log configured" in html


async def test_operator_serves_the_same_report(kube, client, tmp_path, monkeypatch):
    audit_url = f"file://{tmp_path}/audit"
    _audit_log(audit_url, kube.namespace)
    monkeypatch.setenv("LIFELINE_AUDIT_URL", audit_url)  # what --audit-url defaults to
    await apply(kube, client)
    async with kube.operator(clock=FrozenClock(NOW)) as ctx:
        assert ctx.options.audit_url == audit_url
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{ctx.health_port}/report") as resp:
                assert resp.status == 200 and resp.content_type == "text/html"
                html = await resp.text()
    assert f"Generated {NOW:%Y-%m-%d %H:%M:%S} UTC" in html
    for name in ("BackupPolicy {}/his-database", "BackupPolicy {}/pacs-images",
                 "RestoreDrill {}/pacs-images-quarterly", "FailoverPlan {}/icu-monitoring"):
        assert name.format(kube.namespace) in html
    assert "Audit chain verified" in html and "2026-11-13 10:00:00 UTC by ops@hospital" in html
