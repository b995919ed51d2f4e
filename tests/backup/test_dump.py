"""Dump sources: the dump runs in its own container and streams through a FIFO into the agent;
only a dump that exits 0 becomes a recovery point. With Debian's PostgreSQL, the real pg_dump
goes through the whole path and the point restores into a database with the same rows."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

from lifeline.devstack.job_runner import JobRunner
from tests.integration.operator_harness import running_operator

from .conftest import NS, POLICY, points, policy, seed_pvc, seed_secret, settled, wait_event


def dump_policy(name: str, command: list[str], env: list | None = None) -> dict:
    body = policy(name, source={"command": {"image": "postgres:16", "command": command, "env": env or []}})
    body["spec"]["destinations"] = [
        {"name": "local", "filesystem": {"claimName": "backup-local", "path": f"/{name}"}},
        {"name": "offsite", "offSite": True, "filesystem": {"claimName": "backup-offsite", "path": f"/{name}"}},
    ]
    return body


async def test_a_dump_streams_into_every_destination_and_a_failed_dump_publishes_nothing(
        emulator, kubeconfig, api, cluster, runner, clock):
    good = dump_policy("lab", ["/bin/sh", "-c", "printf 'id,result\\n1,4.2\\n'"])
    bad = dump_policy("broken", ["/bin/sh", "-c", "printf 'half a dump'; exit 3"])
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(good)
        await api.create(bad)
        await settled(emulator, "lab", generation=1)
        await settled(emulator, "broken", generation=1)

        ok = await runner.trigger(NS, "lab-full")
        assert ok.phase == "Succeeded", ok.containers["agent"].log.read_text()
        assert [c for c in ok.containers] == ["prepare", "dump", "agent"]
        await emulator.wait_for(lambda: points(emulator, "lab"), timeout=20)
        [rp] = points(emulator, "lab")
        assert rp["spec"]["sizeBytes"] == len("id,result\n1,4.2\n")
        assert sorted(c["destination"] for c in rp["spec"]["copies"]) == ["local", "offsite"]

        failed = await runner.trigger(NS, "broken-full")
        assert failed.phase == "Failed" and failed.containers["dump"].exit_code == 3
        [event] = await wait_event(emulator, "broken", "BackupFailed")
        assert "the dump command exited with status 3" in event["message"]
        assert "dump exited 3" in event["message"]
        obj = await emulator.wait_for(lambda: (o := emulator.stored(POLICY, NS, "broken")) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o)
        assert obj["status"]["lastBackup"]["message"] == "the dump command exited with status 3"
        assert points(emulator, "broken") == []


async def test_pg_dump_of_a_real_database_restores_with_the_same_rows(
        emulator, kubeconfig, api, clock, tmp_path, volumes, key_text, postgres):
    db = postgres.createdb(f"lab_{uuid.uuid4().hex[:8]}")
    postgres.psql(db, "CREATE TABLE result (id int primary key, value text);"
                      "INSERT INTO result SELECT g, md5(g::text) FROM generate_series(1, 5000) g;")
    for claim in ("backup-local", "backup-offsite"):
        seed_pvc(emulator, claim)
    seed_secret(emulator, "pacs-key", {"key": key_text})
    seed_secret(emulator, "lab-db", {"user": postgres.user})
    env = [{"name": "PGHOST", "value": postgres.host}, {"name": "PGPORT", "value": str(postgres.port)},
           {"name": "PGUSER", "valueFromSecret": {"name": "lab-db", "key": "user"}}]
    body = dump_policy("lab-db", ["pg_dump", "--format=custom", "--no-owner", db], env)
    async with JobRunner(emulator_url(kubeconfig), workdir=tmp_path / "pods", volumes=volumes, clock=clock,
                         extra_path=[str(postgres.bin_dir)]) as runner:
        async with running_operator(kubeconfig, emulator, clock=clock):
            await api.create(body)
            await settled(emulator, "lab-db", generation=1)
            result = await runner.trigger(NS, "lab-db-full")
            assert result.phase == "Succeeded", result.containers["agent"].log.read_text()
            await emulator.wait_for(lambda: points(emulator, "lab-db"), timeout=20)
    [rp] = points(emulator, "lab-db")
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


def emulator_url(kubeconfig) -> str:
    import yaml

    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
