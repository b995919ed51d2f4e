"""The operator is SIGKILLed while a backup Job runs; the Job finishes while no operator runs; a
new operator process records it as exactly one RecoveryPoint, and a third one (another hard kill
and restart) records nothing twice."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from lifeline.api import KINDS
from tests.integration.operator_harness import START, until

from .conftest import NS, points, policy, recorded, settled, stored
from .operator_process import OperatorProcess, SharedClock
from .processes import release

KIND_PLURALS = {k.plural for k in KINDS}


async def until_async(probe, timeout: float = 30):
    """Poll an async probe of a process that reports through its metrics endpoint, not the API."""
    async with asyncio.timeout(timeout):
        while not (value := await probe()):
            await asyncio.sleep(0.05)
    return value


@pytest.fixture
def clock(tmp_path) -> SharedClock:  # overrides tests/backup's: the operator process reads it too
    return SharedClock(START, tmp_path / "clock")


@pytest.fixture
def control() -> Path:
    path = Path(tempfile.mkdtemp(prefix="lifeline-e2e-", dir="/var/tmp"))  # outside every pod mount
    yield path
    release(path / "gate")
    shutil.rmtree(path, ignore_errors=True)


async def test_operator_killed_mid_backup_records_the_point_exactly_once(
        emulator, kubeconfig, api, cluster, runner, clock, control, tmp_path):
    started, gate = control / "started", control / "gate"
    os.mkfifo(gate)
    dump = ["/bin/sh", "-c", f"head -c 500000 /dev/urandom; : > {started}; cat {gate}"]
    first = await OperatorProcess(kubeconfig, clock, tmp_path / "operator-1.log").ready(emulator, KIND_PLURALS)
    try:
        await api.create(policy("lab", source={"command": {"image": "postgres:16", "command": dump}}))
        await settled(emulator, "lab")
        job = asyncio.create_task(runner.trigger(NS, "lab-full"))
        await until(started.exists, timeout=60)
        await emulator.wait_for(lambda: ((stored(emulator, "lab")["status"].get("lastBackup") or {})
                                         .get("outcome") == "Running"), timeout=20)
        first.kill()  # mid-backup: the Job runs, the operator is gone
    finally:
        await first.stop()
    writes = len(emulator.writes)
    await asyncio.to_thread(gate.write_bytes, b"end of dump\n")
    result = await asyncio.wait_for(job, 60)
    assert result.phase == "Succeeded", result.containers["agent"].log.read_text()
    assert points(emulator, "lab") == [], "nobody has recorded it yet"
    assert emulator.count_writes("recoverypoints", since=writes) == 0

    second = await OperatorProcess(kubeconfig, clock, tmp_path / "operator-2.log").ready(emulator, KIND_PLURALS)
    try:
        obj = await recorded(emulator, result.job, "lab", timeout=30)
        [point] = await emulator.wait_for(lambda: points(emulator, "lab"), timeout=30)
        await emulator.wait_for(lambda: stored(emulator, "lab")["status"].get("recoveryPoints") == 1, timeout=30)
        assert point["spec"]["sizeBytes"] == 500000 + len(b"end of dump\n")
        assert obj["status"]["lastBackup"]["outcome"] == "Succeeded"
        second.kill()  # a second hard kill, right after it recorded the point
    finally:
        await second.stop()
    created = emulator.count_writes("recoverypoints", method="POST", changed_only=True)
    assert created == 1

    third = await OperatorProcess(kubeconfig, clock, tmp_path / "operator-3.log").ready(emulator, KIND_PLURALS)
    try:
        resynced = len(emulator.writes)
        clock.advance(60)
        # it has looked at the policy (its Jobs, its points) at least once since it started
        await until_async(lambda: third.metric("lifeline_reconciles_total", kind="BackupPolicy"))
        assert len(points(emulator, "lab")) == 1
        assert emulator.count_writes("recoverypoints", method="POST", since=resynced) == 0, "nothing recorded twice"
        assert stored(emulator, "lab")["status"]["recoveryPoints"] == 1
        third.kill()  # done: its graceful shutdown is not what this test is about
    finally:
        await third.stop()
