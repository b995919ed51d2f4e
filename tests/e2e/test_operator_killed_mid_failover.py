"""The operator is SIGKILLed in the middle of a switchover (the old primary fenced, the standby
promoted, its pods not ready yet); a new operator process resumes from the state machine persisted
in the FailoverPlan's status and completes the failover exactly once: no second fence, no second
promotion, one traffic switch, one failover in the history."""
from __future__ import annotations

import asyncio

import pytest

from lifeline.devstack.emulator import make_emulator
from tests.failover.conftest import NS, START, phase, world  # noqa: F401  (fixtures)

from .operator_process import OperatorProcess, SharedClock

PLURALS = {"failoverplans"}


@pytest.fixture
def emulator():  # noqa: F811  tests/failover's world seeds its own namespaces (not tests/backup's)
    return make_emulator()


async def rounds(op: OperatorProcess, name: str = "icu") -> float:
    return await op.metric("lifeline_failover_probe_rounds_total", namespace=NS, name=name)


async def tick(world, op: OperatorProcess, seconds: float = 10, times: int = 1) -> None:  # noqa: F811
    """Move the shared clock, each time until the plan's loop in the operator process has probed."""
    for _ in range(times):
        before = await rounds(op)
        world.clock.advance(seconds)
        async with asyncio.timeout(20):
            while await rounds(op) <= before:
                await asyncio.sleep(0.02)  # the process reports through /metrics, not the API


def changed_writes(cluster, plural: str, name: str, since: int = 0) -> int:
    return cluster.emulator.count_writes(plural, name=name, subresource=None, changed_only=True, since=since)


async def test_operator_killed_mid_failover_completes_it_exactly_once(world, tmp_path):  # noqa: F811
    world.clock = SharedClock(START, tmp_path / "clock")
    world.own.kubelet.hold()  # the standby's pods will not start: the switchover stops at AwaitReady
    first = OperatorProcess(world.own.kubeconfig, world.clock, tmp_path / "operator-1.log", [NS])
    try:
        await first.ready(world.own.emulator, PLURALS)
        await world.create(world.plan())
        await phase(world, "Monitoring", timeout=30)
        world.primary.broken = True
        await tick(world, first, times=7)
        await world.own.emulator.wait_for(
            lambda: (world.status().get("switchover") or {}).get("step") == "AwaitReady", timeout=30)
        first.kill()
    finally:
        await first.stop()
    status = world.status()
    assert status["phase"] == "FailingOver" and world.primary_replicas() == 0 and world.standby_replicas() == 2
    remote_writes, own_writes = len(world.remote.emulator.writes), len(world.own.emulator.writes)

    world.own.kubelet.release()
    second = OperatorProcess(world.own.kubeconfig, world.clock, tmp_path / "operator-2.log", [NS])
    try:
        await second.ready(world.own.emulator, PLURALS)
        status = await phase(world, "FailedOver", timeout=60)
        second.kill()  # done: its graceful shutdown is not what this test is about
    finally:
        await second.stop()
    assert world.selector() == {"site": "site-b"}
    assert changed_writes(world.remote, "statefulsets", "prometheus-a", remote_writes) == 0, "no second fence"
    assert world.own.emulator.count_writes("statefulsets", name="prometheus-b", subresource=None,
                                           since=own_writes) == 0, "no second promotion"
    assert changed_writes(world.own, "services", "monitoring-entry") == 1, "traffic switched once"
    assert [h["phase"] for h in status["history"]] == ["Degraded", "FailingOver", "FailedOver"]
    assert len(status["recentFailovers"]) == 1
