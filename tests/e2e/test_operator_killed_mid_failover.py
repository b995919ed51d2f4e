"""The operator is SIGKILLed in the middle of a switchover (the old primary fenced, the standby
promoted, its pods not ready yet); a new operator process resumes from the state machine persisted
in the FailoverPlan's status and completes the failover exactly once: no second fence, no second
promotion, one traffic switch, one failover in the history.

Two real clusters (tests/failover's world): site A's node stops for the outage; the standby's
Pods wait at a scheduling gate until the first operator is dead. The API servers' audit logs
count what each operator process wrote.
"""
from __future__ import annotations

import asyncio

from tests.failover.conftest import phase, site_a, world  # noqa: F401  (fixtures)

from .operator_process import OperatorProcess, SharedClock, operator_for


async def rounds(op: OperatorProcess, namespace: str, name: str = "icu") -> float:
    return await op.metric("lifeline_failover_probe_rounds_total", namespace=namespace, name=name)


async def tick(world, op: OperatorProcess, seconds: float = 10, times: int = 1) -> None:  # noqa: F811
    """Move the shared clock, each time until the plan's loop in the operator process has probed."""
    for _ in range(times):
        before = await rounds(op, world.ns)
        world.clock.advance(seconds)
        async with asyncio.timeout(20):
            while await rounds(op, world.ns) <= before:
                await asyncio.sleep(0.02)  # the process reports through /metrics, not the API


async def test_operator_killed_mid_failover_completes_it_exactly_once(world, tmp_path):  # noqa: F811
    world.clock = SharedClock(world.clock.now(), tmp_path / "clock")
    world.hold_standby()  # the standby's pods will wait at a scheduling gate: the switchover stops at AwaitReady
    first = await operator_for(world.kube, world.clock, tmp_path / "operator-1.log")
    try:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        world.node_down()
        await tick(world, first, times=7)
        await world.kube.wait_for(lambda: (world.status().get("switchover") or {}).get("step") == "AwaitReady")
        first.kill()
    finally:
        await first.stop()
    status = world.status()
    primary, standby = world.replicas()
    assert status["phase"] == "FailingOver" and set(primary.values()) == {0}
    assert standby == {"StatefulSet/prometheus-b": 1, "Deployment/grafana-b": 2}
    remote_mark, own_mark = world.remote_mark(), len(world.kube.writes)

    await world.kube.wait_for(lambda: world.standby_held() == 3)
    world.release_standby()
    second = await operator_for(world.kube, world.clock, tmp_path / "operator-2.log")
    try:
        status = await phase(world, "FailedOver", timeout=60)
        second.kill()  # done: its graceful shutdown is not what this test is about
    finally:
        await second.stop()
    assert world.selector() == {"site": "site-b"}
    assert world.remote_writes(remote_mark) == [], "no second fence"
    assert world.kube.count_writes("statefulsets", since=own_mark) == 0, "no second promotion"
    assert world.kube.count_writes("deployments", since=own_mark) == 0, "no second promotion"
    assert world.kube.count_writes("services", name="monitoring-entry") == 1, "traffic switched once"
    assert [h["phase"] for h in status["history"]] == ["Degraded", "FailingOver", "FailedOver"]
    assert len(status["recentFailovers"]) == 1
