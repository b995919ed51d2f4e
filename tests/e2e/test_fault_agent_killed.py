"""The agent is killed (SIGKILL) in the middle of a backup Job: the Job fails, no RecoveryPoint is
published and the repository holds no manifest for it (manifests are written last); the next run
of the same policy succeeds, from the same repositories."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.integration.operator_harness import running_operator, until

from .conftest import NS, cond, points, policy, recorded, settled, stored
from .processes import agent_pids, kill_container, release


@pytest.fixture
def control() -> Path:
    """A directory for the dump's start flag and gate, outside every path a pod mounts (a pod's
    /tmp is its own emptyDir, so tmp_path would be mapped away from the test)."""
    path = Path(tempfile.mkdtemp(prefix="lifeline-e2e-", dir="/var/tmp"))
    yield path
    release(path / "dump-gate")
    shutil.rmtree(path, ignore_errors=True)


def dump_policy(command: list[str]) -> dict:
    return policy("lab", source={"command": {"image": "postgres:16", "command": command}})


async def test_agent_killed_mid_job_publishes_nothing_and_the_next_run_is_fine(
        emulator, kubeconfig, api, cluster, runner, clock, volumes, control):
    started, gate = control / "dump-started", control / "dump-gate"
    os.mkfifo(gate)
    # 3 MB streamed into the agent, then the dump waits at the gate: the agent is mid-stream
    dump = ["/bin/sh", "-c", f"head -c 3000000 /dev/urandom; : > {started}; cat {gate}"]
    repos = (volumes["backup-local"], volumes["backup-offsite"])

    def repository_points() -> list[str]:
        return sorted(str(p) for r in repos for p in r.rglob("*") if p.is_file() and "/points/" in str(p))

    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(dump_policy(dump))
        await settled(emulator, "lab")

        job = asyncio.create_task(runner.trigger(NS, "lab-full"))
        await until(started.exists, timeout=60)
        [pid] = agent_pids(runner.workdir)
        kill_container(pid)  # the agent container and the processes it started
        # open the gate: the dump writes into a pipe nobody reads any more, and ends
        await asyncio.to_thread(gate.write_bytes, b"tail of the dump\n")
        killed = await asyncio.wait_for(job, 60)
        assert killed.phase == "Failed" and killed.containers["agent"].exit_code == -signal.SIGKILL
        obj = await recorded(emulator, killed.job, "lab")
        assert obj["status"]["lastBackup"]["outcome"] == "Failed"
        assert points(emulator, "lab") == [] and obj["status"].get("recoveryPoints", 0) == 0
        assert repository_points() == [], "no manifest for a backup that never finished"

        # the next run, with nobody killing it, goes through the same repositories
        clock.advance(3600)
        started.unlink()
        gate_opened = asyncio.create_task(asyncio.to_thread(gate.write_bytes, b"tail of the dump\n"))
        ok = await runner.trigger(NS, "lab-full")
        await gate_opened
        assert ok.phase == "Succeeded", ok.containers["agent"].log.read_text()
        obj = await recorded(emulator, ok.job, "lab")
        [point] = await emulator.wait_for(lambda: points(emulator, "lab"), timeout=20)
        assert point["spec"]["sizeBytes"] == 3000000 + len(b"tail of the dump\n")
        assert obj["status"]["recoveryPoints"] == 1
        assert cond(stored(emulator, "lab"), "DestinationsReachable")["status"] == "True"
        assert len(repository_points()) == 2, "one manifest in each repository"
