"""A production Restore into a database (``target.command``: ``pg_restore -d ...``) end to end with a
real PostgreSQL: a real pg_dump point, two approvals, the restore Job's agent streams the point
into the ``load`` container's pg_restore against a fresh database of the test's server; the rows
arrive. A pg_restore that fails (its database does not exist) ends the Restore Failed with the
command's reason, never Succeeded.

What stands in: the job runner's environment (PGHOST/PGPORT/PGUSER) points the load container at
the test's server, as the database Service's name would in a cluster."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid

import pytest

from lifeline.devstack.job_runner import JobRunner
from lifeline.keys import create_key_file
from lifeline.planning import restore_run
from tests.backup.conftest import policy
from tests.kube_client import Api

from .conftest import restore_body
from .helpers import NS, decide, events, phase, stored

pytestmark = pytest.mark.asyncio
AGENT = [sys.executable, "-m", "lifeline.agent"]
ROWS = 211
POINT = "his-20261123-0200"


@pytest.fixture
def dumped(tmp_path, emulator, postgres):
    """pg_dump of a database with rows, stored by the agent, catalogued as a RecoveryPoint of a dump policy."""
    source = postgres.createdb(f"his_{uuid.uuid4().hex[:8]}")
    postgres.psql(source, "CREATE TABLE patients (id int primary key, name text);"
                          f"INSERT INTO patients SELECT g, 'patient ' || g FROM generate_series(1, {ROWS}) g;")
    vols = {"backup-local": tmp_path / "volumes" / "backup-local"}
    vols["backup-local"].mkdir(parents=True)
    key = create_key_file(tmp_path / "kek")
    repo = vols["backup-local"] / "his"
    subprocess.run([*AGENT, "init", "--repo", f"file://{repo}", "--key", f"file://{key}"], check=True,
                   capture_output=True)
    dump = subprocess.Popen([str(postgres.bin_dir / "pg_dump"), "--format=custom", "--no-owner", "-h", postgres.host,
                             "-p", str(postgres.port), "-U", postgres.user, source], stdout=subprocess.PIPE)
    out = subprocess.run([*AGENT, "backup", "--stdin", "--stdin-name", "pg_dump.out", "--repo", f"file://{repo}",
                          "--key", f"file://{key}", "--type", "full", "--json", "--no-progress",
                          "--source-name", f"{NS}/his"], stdin=dump.stdout, check=True, capture_output=True,
                         text=True)
    dump.stdout.close()
    assert dump.wait() == 0
    summary = json.loads(out.stdout)
    emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": "backup-local", "namespace": NS},
                                                 "spec": {"accessModes": ["ReadWriteOnce"]}})
    emulator.seed("v1/secrets", {"metadata": {"name": "his-key", "namespace": NS},
                                 "data": {"key": base64.b64encode(key.read_bytes()).decode()}})
    body = policy("his", destinations=[{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/his"}}],
                  encryption={"keyRef": "secret://his-key/key"})
    body["spec"]["source"] = {"command": {"image": "postgres:16",
                                          "command": ["pg_dump", "--format=custom", "--no-owner", "his"]}}
    body["metadata"]["namespace"] = NS
    emulator.seed("dr.lifeline.io/v1alpha1/backuppolicies", body)
    emulator.seed("dr.lifeline.io/v1alpha1/recoverypoints", {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint",
        "metadata": {"name": POINT, "namespace": NS},
        "spec": {"policyName": "his", "type": "full", "sizeBytes": summary.get("size_bytes", 0),
                 "manifestChecksum": summary["manifest_checksum"], "keyRef": "secret://his-key/key",
                 "startTime": "2026-11-23T02:00:00Z", "completionTime": "2026-11-23T02:01:00Z",
                 "copies": [{"destination": "local", "repository": "file:///destinations/local/his",
                             "snapshotId": summary["point_id"]}]}})
    return vols


def database_restore(name: str, database: str) -> dict:
    return restore_body(name, POINT, target={"command": {
        "image": "postgres:16", "command": ["pg_restore", "--no-owner", "--exit-on-error", "-d", database]}})


async def restore_into(emulator, people, kube_url, tmp_path, clock, postgres, vols, body):
    alice = Api(people["alice"])
    try:
        await alice.create(body)
    finally:
        alice.client.close()
    name = body["metadata"]["name"]
    await emulator.wait_for(lambda: phase(emulator, name) == "PendingApproval")
    for person in ("bob", "carol"):
        code, out = await decide(people[person], "approve", name)
        assert code == 0, out
    await emulator.wait_for(lambda: phase(emulator, name) == "Running")
    env = {"PGHOST": postgres.host, "PGPORT": str(postgres.port), "PGUSER": postgres.user}
    async with JobRunner(kube_url, workdir=tmp_path / "pods", volumes=vols, clock=clock,
                         extra_path=[str(postgres.bin_dir)], env=env) as runner:
        result = await runner.run(NS, restore_run.job_name(name))
    await emulator.wait_for(lambda: phase(emulator, name) in ("Succeeded", "Failed"), timeout=20)
    return result, stored(emulator, name)["status"]


async def test_after_two_approvals_pg_restore_loads_the_rows_into_a_fresh_database(
        operator, emulator, people, dumped, kube_url, tmp_path, clock, postgres):
    fresh = postgres.createdb(f"his_restored_{uuid.uuid4().hex[:8]}")
    result, status = await restore_into(emulator, people, kube_url, tmp_path, clock, postgres, dumped,
                                        database_restore("his-into-db", fresh))
    assert [*result.containers] == ["prepare", "agent", "load"]
    assert result.phase == "Succeeded", {n: c.log.read_text()[-1500:] for n, c in result.containers.items()}
    assert status["phase"] == "Succeeded", status
    assert postgres.psql(fresh, "select count(*) from patients").strip() == str(ROWS)
    assert postgres.psql(fresh, "select name from patients where id = 7").strip() == "patient 7"


async def test_a_failing_pg_restore_fails_the_restore_with_its_reason(
        operator, emulator, people, dumped, kube_url, tmp_path, clock, postgres):
    missing = f"no_such_db_{uuid.uuid4().hex[:8]}"
    result, status = await restore_into(emulator, people, kube_url, tmp_path, clock, postgres, dumped,
                                        database_restore("his-into-missing", missing))
    assert result.phase == "Failed"
    assert status["phase"] == "Failed", status
    assert "LoadFailed: the load command exited with status 1" in status["message"], status
    assert f"database \"{missing}\" does not exist" in status["message"], status  # pg_restore's words
    assert "restore-state=failed" not in status["message"]  # no claim to mark: the hint names the database
    [event] = await emulator.wait_for(lambda: events(emulator, "his-into-missing", "RestoreFailed"), timeout=10)
    assert missing in event["message"]
