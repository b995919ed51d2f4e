"""Dump sources: the dump runs in its own container and streams through a FIFO into the agent;
only a dump that exits 0 becomes a recovery point. With Debian's PostgreSQL, the real pg_dump
goes through the whole path and the point restores into a database with the same rows."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

from .conftest import POLICY, points, policy, settled, wait_event


def dump_policy(name: str, command: list[str], env: list | None = None) -> dict:
    body = policy(name, source={"command": {"image": "postgres:16", "command": command, "env": env or []}})
    body["spec"]["destinations"] = [
        {"name": "local", "filesystem": {"claimName": "backup-local", "path": f"/{name}"}},
        {"name": "offsite", "offSite": True, "filesystem": {"claimName": "backup-offsite", "path": f"/{name}"}},
    ]
    return body


def pod_of(kube, job: str) -> dict:
    [pod] = kube.objects("pods", selector=f"job-name={job}")[-1:]
    return pod


def exit_codes(pod: dict) -> dict[str, int]:
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    return {c["name"]: c["state"]["terminated"]["exitCode"] for c in statuses if "terminated" in c["state"]}


async def test_a_dump_streams_into_every_destination_and_a_failed_dump_publishes_nothing(kube, seeded, clock):
    good = dump_policy("lab", ["/bin/sh", "-c", "printf 'id,result\\n1,4.2\\n'"])
    bad = dump_policy("broken", ["/bin/sh", "-c", "printf 'half a dump'; exit 3"])
    async with kube.operator(clock=clock):
        kube.create(good)
        kube.create(bad)
        await settled(kube, "lab", generation=1)
        await settled(kube, "broken", generation=1)

        ok = await kube.run_cronjob("lab-full")
        assert ok.phase == "Succeeded", kube.job_log(ok.job)
        pod = pod_of(kube, ok.job)
        spec = pod["spec"]
        assert [c["name"] for c in spec.get("initContainers", []) + spec["containers"]] == ["prepare", "dump", "agent"]
        assert exit_codes(pod) == {"prepare": 0, "dump": 0, "agent": 0}
        [rp] = await kube.wait_for(lambda: points(kube, "lab"), timeout=20)
        assert rp["spec"]["sizeBytes"] == len("id,result\n1,4.2\n")
        assert sorted(c["destination"] for c in rp["spec"]["copies"]) == ["local", "offsite"]

        failed = await kube.run_cronjob("broken-full")
        assert failed.phase == "Failed" and exit_codes(pod_of(kube, failed.job))["dump"] == 3
        [event] = await wait_event(kube, "broken", "BackupFailed")
        assert "the dump command exited with status 3" in event["message"]
        assert "dump exited 3" in event["message"]
        obj = await kube.wait_for(lambda: (o := kube.stored(POLICY, None, "broken")) and
                                  (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o)
        assert obj["status"]["lastBackup"]["message"] == "the dump command exited with status 3"
        assert points(kube, "broken") == []


async def test_pg_dump_of_a_real_database_restores_with_the_same_rows(
        kube, clock, tmp_path, volumes, key_text, postgres):
    db = postgres.createdb(f"lab_{uuid.uuid4().hex[:8]}")
    postgres.psql(db, "CREATE TABLE result (id int primary key, value text);"
                      "INSERT INTO result SELECT g, md5(g::text) FROM generate_series(1, 5000) g;")
    for claim in ("backup-local", "backup-offsite"):
        kube.claim(claim, volumes[claim])
    kube.secret("pacs-key", {"key": key_text})
    kube.secret("lab-db", {"user": postgres.user})
    env = [{"name": "PGHOST", "value": postgres.host}, {"name": "PGPORT", "value": str(postgres.port)},
           {"name": "PGUSER", "valueFromSecret": {"name": "lab-db", "key": "user"}}]
    body = dump_policy("lab-db", ["pg_dump", "--format=custom", "--no-owner", db], env)
    async with kube.operator(clock=clock):
        kube.create(body)
        await settled(kube, "lab-db", generation=1)
        result = await kube.run_cronjob("lab-db-full")
        assert result.phase == "Succeeded", kube.job_log(result.job)
        await kube.wait_for(lambda: points(kube, "lab-db"), timeout=20)
    [rp] = points(kube, "lab-db")
    copy = next(c for c in rp["spec"]["copies"] if c["destination"] == "offsite")
    key = tmp_path / "restore.key"
    key.write_text(key_text)
    key.chmod(0o600)
    target = postgres.createdb(f"restored_{uuid.uuid4().hex[:8]}")
    dump = subprocess.run([sys.executable, "-m", "lifeline.agent", "restore", copy["snapshotId"], "--to", "-",
                           "--repo", copy["repository"], "--key", f"file://{key}"],
                          capture_output=True, check=True, timeout=120).stdout
    subprocess.run([str(postgres.bin_dir / "pg_restore"), "--no-owner", "--exit-on-error", "-d", target],
                   input=dump, check=True, env={**os.environ, **postgres.env()}, timeout=120)
    count = "SELECT count(*), md5(string_agg(value, ',' ORDER BY id)) FROM result;"
    assert postgres.psql(target, count) == postgres.psql(db, count)
    assert rp["spec"]["copies"][0]["repository"].startswith("file://")
