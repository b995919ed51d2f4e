"""The report people read (issue 20): a one-glance matrix, charts drawn inline, who holds which right,
every Restore's record (also alone), a PDF; in real Chromium, fitting a 1280 px screen and an A4 page."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys


from lifeline.commands.report import print_pdf
from lifeline.devstack import install
from lifeline.observability.report import write_report_async

from . import browser
from .scene import NOW, apply

A4_PX = 718  # an A4 page's width (210 mm) less the 14 mm margins, at 96 px per inch


def widest(chromium, page, workdir, width: int) -> int:
    """How wide the page lays out in a ``width`` px window (its scroll width): > width means it overflows."""
    probe = workdir / f"probe-{width}.html"
    probe.write_text(page.read_text().replace(
        "</body>", "<script>document.title = 'W' + document.documentElement.scrollWidth</script></body>"))
    dom = subprocess.run([str(chromium), *browser.FLAGS, f"--user-data-dir={workdir / 'probe-profile'}",
                          f"--window-size={width},1000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return int(re.search(r"<title>W(\d+)</title>", dom).group(1))


async def test_the_report_shows_objectives_at_a_glance_in_pictures_with_rights_and_restores(
        kube, client, chromium_bin, tmp_path, monkeypatch):
    await apply(kube, client)
    ns = kube.namespace
    install.bind_people(kube.request, ns)  # hospital-dba: admin, dr-approvers: restores, it-management: shreds
    page = await write_report_async(client, tmp_path / "report.html", None, now=NOW)
    html = page.read_text()
    assert html.count("<svg") >= 4 and "http://" not in html.replace("http://www.w3.org/2000/svg", "")

    text, shot = await asyncio.to_thread(browser.render, chromium_bin, page, tmp_path, height=6000)
    assert shot.stat().st_size > 50_000
    glance = browser.section(text, "At a glance", "Audit trail")
    assert f"{ns}/his-database | A | missed | yes | passed" in glance  # its monthly drill passed
    assert f"{ns}/pacs-images | B | met | yes | passed" in glance and "| missed | available" in glance
    pacs = browser.section(text, f"BackupPolicy {ns}/pacs-images", "Restore drills")
    assert "the RPO achieved), against the target 15m" in pacs and "Size of each recovery point" in pacs
    drills = browser.section(text, "Restore drills", "Failovers")
    assert "Measured recovery time of each drill run, against the RTO 30m" in drills
    assert "Failovers and failbacks over time" in browser.section(text, "Failovers", "Access review")

    access = browser.section(text, "Access review", "Restores")
    assert f"{ns} | approve restores | Group dr-approvers" in access
    assert f"{ns} | approve key destruction (shred) | Group it-management" in access
    assert f"{ns} | request restores | Group hospital-dba" in access

    record = browser.section(text, f"Restore {ns}/his-back", "End of report")
    assert re.search(r"requested \| \S+ \S+ UTC by carol", record), record
    assert "erin | Approved |" in record and "his-department-heads | checked INC-4711" in record
    assert "frank | Approved |" in record and "approval policy | his-critical" in record
    assert "Succeeded: his-database-20261123-0830 restored by Job restore-his-back" in record

    # fits a laptop screen and a printed A4 page: nothing wider than the window
    assert widest(chromium_bin, page, tmp_path, 1280) <= 1280
    assert widest(chromium_bin, page, tmp_path, A4_PX) <= A4_PX
    monkeypatch.setenv("LIFELINE_CHROMIUM", str(chromium_bin))
    pdf = tmp_path / "report.pdf"
    assert await asyncio.to_thread(print_pdf, page, pdf) is None
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000


async def test_one_restores_record_prints_alone(kube, client, tmp_path):
    await apply(kube, client)
    out = tmp_path / "restore.html"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifeline.cli", "report", "--kubeconfig", str(kube.cluster.kubeconfig),
        "-n", kube.namespace, "--restore", f"{kube.namespace}/his-back", "-o", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "LIFELINE_AUDIT_URL": ""})
    _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stderr.decode()
    html = out.read_text()
    assert "Restore audit record" in html and "erin" in html and "frank" in html and "BackupPolicy" not in html
    missing = subprocess.run([sys.executable, "-m", "lifeline.cli", "report", "--kubeconfig",
                              str(kube.cluster.kubeconfig), "--restore", "nowhere/none", "-o", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no single Restore 'nowhere/none'" in missing.stderr
