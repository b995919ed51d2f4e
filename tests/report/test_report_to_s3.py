"""`lifeline report --output-url`: the day's page under an S3 prefix beside the audit log, as the chart's
CronJob writes it when the audit log is on S3 (moto's S3 server, the session's real API server)."""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import datetime, timezone

import pytest

from lifeline.audit import open_store, verify
from lifeline.cli import main

from .scene import apply
from .test_report import _audit_log


async def _report(kube, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifeline.cli", "report", "--kubeconfig", str(kube.cluster.kubeconfig),
        "-n", kube.namespace, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LIFELINE_AUDIT_URL": "", **env})
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, stdout.decode(), stderr.decode()


def _today() -> str:
    return f"report-{datetime.now(timezone.utc):%Y-%m-%d}.html"


async def test_the_days_report_lands_beside_an_s3_audit_log(kube, client, s3_server, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)  # for the audit records this process writes
    bucket = s3_server.make_bucket(f"report-{uuid.uuid4().hex[:12]}")
    audit_url = f"s3://{bucket}/hospital/audit"
    _audit_log(audit_url, kube.namespace)
    await apply(kube, client)
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="hospital/audit/reports/report-2026-11-22.html", Body=b"yesterday's page")

    before = _today()
    code, out, err = await _report(kube, s3_server.env(), "--audit-url", audit_url,
                                   "--output-url", f"{audit_url}/reports/")
    assert code == 0, err
    names = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="hospital/audit/reports/")["Contents"]}
    [written] = names - {"hospital/audit/reports/report-2026-11-22.html"}
    assert written.rsplit("/", 1)[1] in {before, _today()}, names
    assert f"wrote s3://{bucket}/{written}" in out
    html = s3.get_object(Bucket=bucket, Key=written)["Body"].read().decode()
    assert f"BackupPolicy {kube.namespace}/his-database" in html and "RPO missed" in html
    assert "Audit chain verified" in html and f"audit log {audit_url} is intact: 2 records" in html
    yesterday = s3.get_object(Bucket=bucket, Key="hospital/audit/reports/report-2026-11-22.html")
    assert yesterday["Body"].read() == b"yesterday's page", "another day's report is never touched"
    assert verify(open_store(audit_url, create=False)).ok, "the reports sit beside the chain, not in it"

    code, out, err = await _report(kube, s3_server.env(), "--output-url", f"s3://{bucket}-gone/reports")
    assert code == 1 and out == ""
    assert f"lifeline report: error: S3 bucket '{bucket}-gone' does not exist" in err


def test_output_url_takes_an_object_store_only(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["report", "--output-url", "file:///var/lib/lifeline/audit/reports"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "is not an object-store URL" in err and "use --output-dir" in err
