"""Point-in-time restore through a Restore, end to end with a real PostgreSQL.

A primary archives every WAL segment through ``lifeline agent wal-push`` into a repository on the
policy's filesystem destination; a base backup is taken with ``lifeline agent base-backup`` and
catalogued as a RecoveryPoint of a continuous BackupPolicy (as the operator records a base-backup
Job's summary). Rows are committed before and after a time T; the primary is then destroyed. A
Restore with ``targetTime: T`` (then one with ``latest``) is approved by two people, its Job runs
as a Pod of the real Job controller, and PostgreSQL started on the restored directory, exactly as the Job left
it (no agent, no key, no repository: the Job prefetched the WAL into the claim), holds exactly
the rows committed up to T (every row, for latest).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from lifeline.agent import wal_pitr
from lifeline.keys import create_key_file
from lifeline.planning import restore_run
from tests.continuous.pg import ArchivingPostgres, RestoredPostgres, agent_prefix, chown_postgres, run_agent
from tests.realparts.fixtures import missing
from tests.realparts.ports import wait_for
from tests.realparts.postgres import PostgresServer

from .conftest import restore_body
from .helpers import catalogue, phase, request_and_approve, stored

pytestmark = pytest.mark.asyncio
POINT = "icu-charting-20261123-0100"


class History:
    """What the primary committed, read from the primary itself before it was destroyed."""

    def __init__(self, base: Path, key: Path, repo: Path, bin_dir: Path, point_id: str, rows: dict, target: float):
        self.base, self.key, self.repo, self.bin_dir = base, key, repo, bin_dir
        self.point_id, self.rows, self.target = point_id, rows, target


def _insert(primary, n: int) -> None:
    for _ in range(n):  # one transaction per row: each its own commit time
        primary.psql("postgres", "INSERT INTO vitals(note) VALUES ('heart rate 72');")


@pytest.fixture
def history(kube):
    """A primary's history, backed up under the test's namespace (the source name a restore must match)."""
    ok, reason = PostgresServer.available()
    if not ok:
        missing(reason)
    base = Path(tempfile.mkdtemp(prefix="lifeline-pitr-restore-"))
    os.chmod(base, 0o755)  # the postgres user walks into it
    key = base / "key"
    create_key_file(key)
    repo = base / "backup-local" / "icu"
    repo.parent.mkdir()
    rc = run_agent("init", "--repo", f"file://{repo}", "--key", f"file://{key}")
    assert rc.returncode == 0, rc.stderr
    chown_postgres(base)
    primary = ArchivingPostgres(f"{agent_prefix()} wal-push %p --repo file://{repo} --key file://{key}")
    try:
        primary.start()
        primary.psql("postgres", "CREATE TABLE vitals (id serial PRIMARY KEY, note text);")
        _insert(primary, 3)  # in the base backup itself
        rc = run_agent("base-backup", "--repo", f"file://{repo}", "--key", f"file://{key}", "--source-name",
                       f"{kube.namespace}/icu-charting", "--pg-basebackup", str(primary.bin_dir / "pg_basebackup"), "--json",
                       as_postgres=True, env=primary.env())
        assert rc.returncode == 0, rc.stderr
        point = json.loads(rc.stdout)["points"][0]
        point_id = point["point_id"]
        _insert(primary, 5)  # replayed from WAL, before T
        target = float(primary.psql("postgres", "SELECT extract(epoch from clock_timestamp());").strip())
        _insert(primary, 5)  # after T: must not come back in the T restore
        last = primary.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal());").strip()
        wait_for(lambda: primary.psql("postgres", "SELECT last_archived_wal FROM pg_stat_archiver;").strip() >= last,
                 60, f"segment {last} archived")
        out = primary.psql("postgres", "SELECT id, extract(epoch from pg_xact_commit_timestamp(xmin)) FROM vitals;")
        rows = {int(i): float(t) for i, t in (ln.split("|") for ln in out.split())}
        primary.destroy()
        history = History(base, key, repo, primary.bin_dir, point_id, rows, target)
        history.size, history.checksum = point.get("size_bytes", 0), point["manifest_checksum"]
        yield history
    finally:
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)


def _policy() -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "icu-charting"},
            "spec": {"tier": "A", "objectives": {"rpo": "10s", "rto": "5m"},
                     "source": {"continuous": {"claimName": "icu-db-wal", "path": "/wal-archive",
                                               "postgres": {"image": "postgres:16"}}},
                     "schedule": {"full": "30 1 * * *"},
                     "destinations": [{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/icu"}}],
                     "encryption": {"keyRef": "secret://icu-key/key"}}}


@pytest.fixture
def catalogued(history, kube, operator):
    """The base backup as the operator catalogues it: policy, key Secret, claims, RecoveryPoint."""
    for claim, path in (("icu-db-wal", history.base / "wal"), ("backup-local", history.repo.parent)):
        path.mkdir(exist_ok=True)
        kube.claim(claim, path)
    kube.secret("icu-key", {"key": history.key.read_bytes()})
    catalogue(kube, _policy(), {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint", "metadata": {"name": POINT},
        "spec": {"policyName": "icu-charting", "type": "full", "keyRef": "secret://icu-key/key",
                 "sizeBytes": history.size, "manifestChecksum": history.checksum,
                 "startTime": "2026-11-23T01:30:00Z", "completionTime": "2026-11-23T01:31:00Z",
                 "copies": [{"destination": "local", "repository": "file:///destinations/local/icu",
                             "snapshotId": history.point_id}]}})
    return history


def _self_contained(data: Path) -> str:
    """The Job left the WAL recovery needs inside the claim and a restore_command that only copies
    from there (relative to the data directory, wherever the database pod mounts the claim)."""
    text = (data / "postgresql.auto.conf").read_text()
    [command] = re.findall(r"^restore_command = '(.*)'$", text, re.M)
    assert command == wal_pitr.PREFETCH_COMMAND
    assert "wal-fetch" not in text and "--key" not in text and "file://" not in text
    segments = sorted((data / wal_pitr.PREFETCH_DIR).iterdir())
    assert segments and all(len(p.name) == 24 for p in segments)
    return command


async def _restore(kube, people, h: History, name: str, target: str) -> dict:
    claim = f"{name}-data"
    (h.base / claim).mkdir(exist_ok=True)
    kube.claim(claim, h.base / claim)
    volumes = {claim: h.base / claim}
    body = restore_body(name, POINT, targetTime=target, target={"pvc": {"claimName": claim, "path": "/pgdata"}},
                        reason="INC-4790: migration dropped a column")
    await request_and_approve(kube, people, body)
    result = await kube.finished(restore_run.job_name(name))
    assert result.phase == "Succeeded", kube.job_log(result.job)
    await kube.wait_for(lambda: phase(kube, name) == "Succeeded")
    data = volumes[claim] / "pgdata"
    assert (data / "recovery.signal").exists()
    _self_contained(data)
    hidden = h.repo.with_name(h.repo.name + ".away")
    h.repo.rename(hidden)  # the repository (and with it any way to fetch WAL) is gone while it replays
    try:
        with RestoredPostgres(data, h.bin_dir) as pg:
            pg.wait_promoted()
            out = pg.psql("SELECT id, extract(epoch from pg_xact_commit_timestamp(xmin)) FROM vitals;")
            assert "restored log file" in pg.log()  # the WAL came from the claim's copy, by cp
    finally:
        hidden.rename(h.repo)
    return {int(i): float(t) for i, t in (ln.split("|") for ln in out.split())}


async def test_a_restore_to_time_t_recovers_exactly_the_rows_committed_up_to_t(kube, people, catalogued):
    h = catalogued
    target = dt.datetime.fromtimestamp(h.target, dt.timezone.utc).isoformat(timespec="microseconds")
    before = {i for i, t in h.rows.items() if t <= h.target}
    assert 3 < len(before) < len(h.rows)  # rows from the WAL on both sides of T
    got = await _restore(kube, people, h, "icu-at-t", target.replace("+00:00", "Z"))
    assert set(got) == before
    status = stored(kube, "icu-at-t")["status"]
    assert status["jobName"] == restore_run.job_name("icu-at-t")


async def test_a_restore_to_latest_recovers_every_committed_row(kube, people, catalogued):
    h = catalogued
    got = await _restore(kube, people, h, "icu-latest", "latest")
    assert set(got) == set(h.rows)
