"""An audit log on each kind of store backups go to: a directory and an S3 bucket (moto)."""
from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from lifeline.audit import open_store
from lifeline.observability import audit

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
_buckets = itertools.count()


@pytest.fixture(params=["file", "s3"])
def audit_url(request, tmp_path, monkeypatch) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/audit"
    s3 = request.getfixturevalue("s3_server")
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    bucket = s3.make_bucket(f"audit-{next(_buckets)}-{uuid.uuid4().hex[:8]}")
    return f"s3://{bucket}/hospital/audit"


@pytest.fixture()
def chained(audit_url):
    """The chained store wired behind audit.record for this test (and unwired after)."""
    sink = audit.use_store(audit_url, writer="test-writer")
    yield sink
    audit.remove_sink(sink)


def write_records(n: int, start: datetime = T0, step: timedelta = timedelta(minutes=5)) -> list[dict]:
    """``n`` realistic records through the front door, one per DR action kind in turn."""
    kinds = [("backup", "BackupPolicy", "pacs-images"), ("drill", "RestoreDrill", "pacs-monthly"),
             ("key-rotation", "BackupPolicy", "his-db"), ("failover", "FailoverPlan", "monitoring"),
             ("approval", "Restore", "his-db-2026-11"), ("restore", "Restore", "his-db-2026-11")]
    out = []
    for i in range(n):
        action, kind, name = kinds[i % len(kinds)]
        out.append(audit.record(action, actor="system:serviceaccount:lifeline:operator", outcome="succeeded",
                                subject={"kind": kind, "namespace": "hospital", "name": name},
                                details={"n": i}, when=start + i * step))
    return out


def store_of(url: str):
    return open_store(url, create=False)
