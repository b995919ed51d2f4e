"""The operator is SIGKILLed while a backup Job runs; the Job finishes while no operator runs; a
new operator process records it as exactly one RecoveryPoint, and a third one (another hard kill
and restart) records nothing twice.

Each operator is a process of its own as the chart runs it (its ServiceAccount, its webhooks);
"exactly once" is read from the API server's audit log: RecoveryPoints the operator created (POSTs
answered 201), whatever it tried.
"""
from __future__ import annotations

import asyncio

import pytest

from .conftest import created, gated_dump, points, policy, recorded, settled, start_job, stored
from .operator_process import SharedClock, operator_for


async def until_async(probe, timeout: float = 30):
    """Poll an async probe of a process that reports through its metrics endpoint, not the API."""
    async with asyncio.timeout(timeout):
        while not (value := await probe()):
            await asyncio.sleep(0.05)
    return value


@pytest.fixture
def clock(tmp_path) -> SharedClock:  # overrides tests/backup's: the operator process reads it too
    return SharedClock.at_real_now(tmp_path / "clock")


async def test_operator_killed_mid_backup_records_the_point_exactly_once(seeded, kube, clock, control, tmp_path):
    dump, started, gate = gated_dump(control, 500000)
    first = await operator_for(kube, clock, tmp_path / "operator-1.log")
    try:
        kube.create(policy("lab", source={"command": {"image": "postgres:16", "command": dump}}))
        await settled(kube, "lab")
        job = await start_job(kube, "lab-full")
        await kube.wait_for(started.exists, timeout=60)
        await kube.wait_for(lambda: ((stored(kube, "lab")["status"].get("lastBackup") or {})
                                     .get("outcome") == "Running"), timeout=20)
        first.kill()  # mid-backup: the Job runs, the operator is gone
    finally:
        await first.stop()
    writes = len(kube.writes)
    await asyncio.to_thread(gate.write_bytes, b"end of dump\n")
    result = await kube.finished(job, timeout=60)
    assert result.phase == "Succeeded", kube.job_log(job)
    assert points(kube, "lab") == [], "nobody has recorded it yet"
    assert kube.count_writes("recoverypoints", since=writes) == 0

    second = await operator_for(kube, clock, tmp_path / "operator-2.log")
    try:
        obj = await recorded(kube, job, "lab", timeout=30)
        [point] = await kube.wait_for(lambda: points(kube, "lab"), timeout=30)
        await kube.wait_for(lambda: stored(kube, "lab")["status"].get("recoveryPoints") == 1, timeout=30)
        assert point["spec"]["sizeBytes"] == 500000 + len(b"end of dump\n")
        assert obj["status"]["lastBackup"]["outcome"] == "Succeeded"
        second.kill()  # a second hard kill, right after it recorded the point
    finally:
        await second.stop()
    assert created(kube, "recoverypoints") == 1

    third = await operator_for(kube, clock, tmp_path / "operator-3.log")
    try:
        resynced = len(kube.writes)
        clock.advance(60)
        # it has looked at the policy (its Jobs, its points) at least once since it started
        await until_async(lambda: third.metric("lifeline_reconciles_total", kind="BackupPolicy"))
        assert len(points(kube, "lab")) == 1
        assert kube.count_writes("recoverypoints", method="POST", since=resynced) == 0, "nothing recorded twice"
        assert stored(kube, "lab")["status"]["recoveryPoints"] == 1
        third.kill()  # done: its graceful shutdown is not what this test is about
    finally:
        await third.stop()
