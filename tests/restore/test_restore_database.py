"""A production Restore into a database (``target.command``: ``pg_restore -d ...``) end to end with a
real PostgreSQL: a real pg_dump point, two approvals, the restore Job's agent streams the point
into the ``load`` container's pg_restore against a fresh database of the test's server; the rows
arrive. A pg_restore that fails (its database does not exist) ends the Restore Failed with the
command's reason, never Succeeded.

The load command names the test's server by host and port (``-h``/``-p``), as it would name the
database's Service in a cluster."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from lifeline.keys import create_key_file
from lifeline.planning import restore_run
from tests.backup.conftest import policy

from .conftest import restore_body
from .helpers import catalogue, events, phase, request_and_approve, stored

pytestmark = pytest.mark.asyncio
AGENT = [sys.executable, "-m", "lifeline.agent"]
ROWS = 211
POINT = "his-20261123-0200"


@pytest.fixture
def dumped(tmp_path, kube, postgres):
    """pg_dump of a database with rows, stored by the agent: the policy and point to catalogue."""
    source = postgres.createdb(f"his_{uuid.uuid4().hex[:8]}")
    postgres.psql(source, "CREATE TABLE patients (id int primary key, name text);"
                          f"INSERT INTO patients SELECT g, 'patient ' || g FROM generate_series(1, {ROWS}) g;")
    local = tmp_path / "volumes" / "backup-local"
    local.mkdir(parents=True)
    key = create_key_file(tmp_path / "kek")
    repo = local / "his"
    subprocess.run([*AGENT, "init", "--repo", f"file://{repo}", "--key", f"file://{key}"], check=True,
                   capture_output=True)
    dump = subprocess.Popen([str(postgres.bin_dir / "pg_dump"), "--format=custom", "--no-owner", "-h", postgres.host,
                             "-p", str(postgres.port), "-U", postgres.user, source], stdout=subprocess.PIPE)
    out = subprocess.run([*AGENT, "backup", "--stdin", "--stdin-name", "pg_dump.out", "--repo", f"file://{repo}",
                          "--key", f"file://{key}", "--type", "full", "--json", "--no-progress",
                          "--source-name", f"{kube.namespace}/his"], stdin=dump.stdout, check=True,
                         capture_output=True, text=True)
    dump.stdout.close()
    assert dump.wait() == 0
    summary = json.loads(out.stdout)
    kube.claim("backup-local", local)
    kube.secret("his-key", {"key": key.read_bytes()})
    body = policy("his", destinations=[{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/his"}}],
                  encryption={"keyRef": "secret://his-key/key"})
    body["spec"]["source"] = {"command": {"image": "postgres:16",
                                          "command": ["pg_dump", "--format=custom", "--no-owner", "his"]}}
    point = {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint", "metadata": {"name": POINT},
        "spec": {"policyName": "his", "type": "full", "sizeBytes": summary.get("size_bytes", 0),
                 "manifestChecksum": summary["manifest_checksum"], "keyRef": "secret://his-key/key",
                 "startTime": "2026-11-23T02:00:00Z", "completionTime": "2026-11-23T02:01:00Z",
                 "copies": [{"destination": "local", "repository": "file:///destinations/local/his",
                             "snapshotId": summary["point_id"]}]}}
    return body, point


def database_restore(name: str, database: str, postgres) -> dict:
    return restore_body(name, POINT, target={"command": {
        "image": "postgres:16", "command": ["pg_restore", "-h", postgres.host, "-p", str(postgres.port),
                                            "-U", postgres.user, "--no-owner", "--exit-on-error", "-d", database]}})


def containers(kube, job: str) -> dict[str, int]:
    """The Job's pod's containers, in order, with the exit codes of those that ran."""
    [pod] = kube.objects("pods", selector=f"job-name={job}")[-1:]
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    return {c["name"]: (c["state"].get("terminated") or {}).get("exitCode") for c in statuses}


async def restore_into(kube, people, dumped, body):
    catalogue(kube, *dumped)
    name = await request_and_approve(kube, people, body)
    result = await kube.finished(restore_run.job_name(name))
    await kube.wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout=20)
    return result, stored(kube, name)["status"]


async def test_after_two_approvals_pg_restore_loads_the_rows_into_a_fresh_database(
        kube, operator, people, dumped, postgres):
    fresh = postgres.createdb(f"his_restored_{uuid.uuid4().hex[:8]}")
    result, status = await restore_into(kube, people, dumped, database_restore("his-into-db", fresh, postgres))
    assert result.phase == "Succeeded", kube.job_log(result.job, "load")
    assert containers(kube, result.job) == {"prepare": 0, "agent": 0, "load": 0}
    assert status["phase"] == "Succeeded", status
    assert postgres.psql(fresh, "select count(*) from patients").strip() == str(ROWS)
    assert postgres.psql(fresh, "select name from patients where id = 7").strip() == "patient 7"


async def test_a_failing_pg_restore_fails_the_restore_with_its_reason(kube, operator, people, dumped, postgres):
    missing = f"no_such_db_{uuid.uuid4().hex[:8]}"
    result, status = await restore_into(kube, people, dumped, database_restore("his-into-missing", missing, postgres))
    assert result.phase == "Failed"
    assert status["phase"] == "Failed", status
    assert "LoadFailed: the load command exited with status 1" in status["message"], status
    assert f"database \"{missing}\" does not exist" in status["message"], status  # pg_restore's words
    assert "restore-state=failed" not in status["message"]  # no claim to mark: the hint names the database
    [event] = await kube.wait_for(lambda: events(kube, "his-into-missing", "RestoreFailed"), timeout=10)
    assert missing in event["message"]
