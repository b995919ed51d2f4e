"""The real operator, two emulated clusters, real HTTP health endpoints, a clock the test moves.

Topology (the recommended placement): the operator, the FailoverPlan, the entry
Service and the standby site (site-b) share a cluster; the primary (site-a) is in
another cluster, reached through a kubeconfig Secret. The fake kubelet marks
workloads ready when they are scaled, and each site's endpoint serves only while its
workload runs. Time moves only when a test calls ``tick``: the breach window passes
without waiting for it.
"""
from __future__ import annotations

import asyncio
import json

from lifeline.cli import main as lifeline
from tests.integration.operator_harness import metric

from .conftest import (
    NS, PRIMARY_NS, PodEndpoint, condition, event_reasons, operator, phase, tick, until, wait_condition,
)


async def cli(world, *args: str) -> int:
    return await asyncio.to_thread(lifeline, ["failover", *args, "-n", NS, "--kubeconfig", str(world.own.kubeconfig)])


def changed_writes(cluster, plural: str, name: str, since: int = 0) -> int:
    return cluster.emulator.count_writes(plural, name=name, subresource=None, changed_only=True, since=since)


async def test_outage_failover_after_the_window_then_failback_only_on_request_then_the_cap(world, capsys):
    async with operator(world) as ctx:
        await world.create(world.plan())
        status = await phase(world, "Monitoring")
        assert status["activeSite"] == "site-a"
        await tick(world, ctx, times=2)
        assert world.status()["checks"][0]["healthy"] is True

        world.primary.broken = True  # the outage, at t=20s
        await tick(world, ctx)  # t=30: the first failed check
        await phase(world, "Degraded")
        await tick(world, ctx, times=5)  # t=80: failing for 50s, inside the 60s window
        assert world.status()["phase"] == "Degraded"
        assert (world.primary_replicas(), world.standby_replicas(), world.selector()) == (2, 0, {"site": "site-a"})
        await tick(world, ctx)  # t=90: 60s
        status = await phase(world, "FailedOver")
        assert world.primary_replicas() == 0, "the old primary is fenced"
        assert world.standby_replicas() == 2, "the standby runs as many replicas as the primary did"
        assert world.selector() == {"site": "site-b"}
        last = status["history"][-1]
        assert (last["reason"], last["achievedRTOSeconds"], last["detectionSeconds"]) == ("FailoverComplete", 60, 60)
        assert status["fencedReplicas"] == {"site-a": {"StatefulSet/prometheus-a": 2, "Deployment/grafana-a": 1}}
        await until(lambda: metric(ctx, "lifeline_failover_achieved_rto_seconds", namespace=NS, name="icu") == 60)
        assert metric(ctx, "lifeline_failover_phase", namespace=NS, name="icu", phase="FailedOver") == 1
        await event_reasons(world, "SiteDegraded", "FailingOver", "Fenced", "Promoted", "TrafficSwitched",
                            "FailoverComplete")

        # the primary's site recovers: no automatic failback, however long we wait
        world.primary.broken = False
        await tick(world, ctx, times=12)
        assert world.status()["phase"] == "FailedOver" and world.selector() == {"site": "site-b"}

        # a person asks for it
        assert await cli(world, "back", "icu") == 0
        assert "Accepted: failback to site-a started" in capsys.readouterr().out
        status = await phase(world, "Monitoring")
        assert (world.primary_replicas(), world.standby_replicas(), world.selector()) == (2, 0, {"site": "site-a"})
        assert status["history"][-1]["reason"] == "FailbackComplete"
        assert status["fencedReplicas"] == {"site-b": {"StatefulSet/prometheus-b": 2, "Deployment/grafana-b": 1}}

        # a second outage within 24h: the cap (1) holds the automatic failover back
        world.primary.broken = True
        await tick(world, ctx, times=8)
        cond = await wait_condition(world, "FailoverRecommended", "True", "CapReached")
        assert "lifeline failover approve icu" in cond["message"]
        assert world.selector() == {"site": "site-a"} and world.status()["phase"] == "Degraded"
        await until(lambda: metric(ctx, "lifeline_failover_recommended", namespace=NS, name="icu") == 1)
        assert await cli(world, "status", "icu") == 0
        out = capsys.readouterr().out
        assert "phase:       Degraded   active site: site-a" in out and "CapReached" in out
    assert not world.stored_plan()["metadata"].get("finalizers"), "no finalizer from the daemon"


async def test_a_flapping_endpoint_never_fails_over(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        for i in range(16):  # 160s of a check that fails every other round: 60s window never reached
            world.primary.broken = i % 2 == 0
            await tick(world, ctx)
        status = world.status()
        assert status["phase"] == "Degraded", "it flaps between failing and passing: degraded, not down"
        assert not any(h["phase"] == "FailingOver" for h in status["history"])
        assert (world.primary_replicas(), world.standby_replicas(), world.selector()) == (2, 0, {"site": "site-a"})
        assert [h["phase"] for h in status["history"]] == ["Degraded"], "hysteresis: the phase does not flap"
        world.primary.broken = False
        await tick(world, ctx, times=2)
        assert world.status()["phase"] == "Monitoring"


async def test_an_operator_restarted_mid_failover_completes_it_exactly_once(world):
    world.own.kubelet.hold()  # the standby's pods will not start: the failover stops at AwaitReady
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        world.primary.broken = True
        await tick(world, ctx, times=7)
        await world.own.emulator.wait_for(
            lambda: (world.status().get("switchover") or {}).get("step") == "AwaitReady")
    # the operator is gone, mid-failover
    status = world.status()
    assert status["phase"] == "FailingOver" and world.primary_replicas() == 0 and world.standby_replicas() == 2
    remote_writes, own_writes = len(world.remote.emulator.writes), len(world.own.emulator.writes)
    world.own.kubelet.release()
    async with operator(world):
        status = await phase(world, "FailedOver")
    assert world.selector() == {"site": "site-b"}
    # nothing was done twice: no second fence or promotion, one selector change, one failover counted
    assert changed_writes(world.remote, "statefulsets", "prometheus-a", remote_writes) == 0
    assert world.own.emulator.count_writes("statefulsets", name="prometheus-b", subresource=None,
                                           since=own_writes) == 0
    assert changed_writes(world.own, "services", "monitoring-entry") == 1
    assert [h["phase"] for h in status["history"]] == ["Degraded", "FailingOver", "FailedOver"]
    assert len(status["recentFailovers"]) == 1


async def test_an_unreachable_primary_is_fenced_when_it_returns(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        # site A goes dark: its endpoint and its cluster's API
        world.primary.broken = True
        await world.remote_server.down()
        await tick(world, ctx, times=7)
        status = await phase(world, "FailedOver")
        assert status["fencedUnverified"] is True and status["fencePending"] == "site-a"
        assert world.remote.emulator.stored("apps/v1/statefulsets", PRIMARY_NS, "prometheus-a")["spec"]["replicas"] == 2
        assert world.selector() == {"site": "site-b"}
        assert condition(status, "SitesResolved")["reason"] == "ClusterUnreachable"
        await until(lambda: metric(ctx, "lifeline_failover_fenced_unverified", namespace=NS, name="icu") == 1)
        # it comes back, still running: fenced before anything else
        await world.remote_server.up()
        await tick(world, ctx)
        status = await world.own.emulator.wait_for(lambda: "fencePending" not in world.status() and world.status())
        assert world.primary_replicas() == 0 and "fencedUnverified" not in status
        assert world.selector() == {"site": "site-b"}, "traffic stays at the standby"
        await event_reasons(world, "FencedOnReturn", "FencingUnverified")


async def test_manual_mode_recommends_then_the_approval_fails_over(world, capsys):
    async with operator(world) as ctx:
        await world.create(world.plan(mode="Manual"))
        await phase(world, "Monitoring")
        world.primary.broken = True
        await tick(world, ctx, times=8)
        cond = await wait_condition(world, "FailoverRecommended", "True", "ManualMode")
        assert "lifeline failover approve icu" in cond["message"]
        assert (world.primary_replicas(), world.standby_replicas()) == (2, 0), "only recommended"
        await until(lambda: metric(ctx, "lifeline_failover_recommended", namespace=NS, name="icu") == 1)
        await event_reasons(world, "FailoverRecommended")
        assert await cli(world, "approve", "icu") == 0
        assert "Accepted: failover to site-b started" in capsys.readouterr().out
        status = await phase(world, "FailedOver")
        assert status["lastRequest"]["verb"] == "approve" and status["history"][-2]["reason"] == "Approved"
        assert condition(status, "FailoverRecommended")["status"] == "False"
        # a second approval has nothing to approve
        assert await cli(world, "approve", "icu") == 1
        assert "Rejected: no failover is waiting for approval" in capsys.readouterr().out


async def test_bad_input_each_gets_its_own_condition(world):
    garbage = PodEndpoint("garbage")
    garbage.garbage = True
    async with garbage, operator(world) as ctx:
        typo = world.plan("typo")
        typo["spec"]["standby"]["workloads"][0]["name"] = "prometheus-x"
        await world.create(typo)
        await world.create(world.plan("nosecret", secret="site-a-kubeconfg"))
        promql = world.plan("promql", primary_checks=[
            {"name": "scraping", "interval": "10s", "timeout": "2s",
             "promql": {"url": garbage.url, "query": 'up{job="prometheus"}'}}])
        await world.create(promql)
        invalid = world.plan("invalid")
        invalid["spec"]["maxFailovers"]["count"] = 0
        await world.create(invalid)

        c = await wait_condition(world, "SitesResolved", "False", "WorkloadNotFound", name="typo")
        assert "StatefulSet hospital/prometheus-x (spec.standby.workloads[0])" in c["message"]
        c = await wait_condition(world, "SitesResolved", "False", "KubeconfigSecretMissing", name="nosecret")
        assert "create Secret hospital/site-a-kubeconfg" in c["message"]
        await phase(world, "Monitoring", name="promql")
        await tick(world, ctx, name="promql")
        c = await wait_condition(world, "HealthChecksValid", "False", "InvalidResponse", name="promql")
        assert "did not answer like the Prometheus HTTP API" in c["message"] and "check scraping" in c["message"]
        c = await wait_condition(world, "Ready", "False", "InvalidSpec", name="invalid")
        assert "spec.maxFailovers.count" in c["message"] and "phase" not in world.status("invalid")
        for name, reason in (("typo", "WorkloadNotFound"), ("nosecret", "KubeconfigSecretMissing"),
                             ("promql", "InvalidResponse")):
            await event_reasons(world, reason, name=name)
            ready = condition(world.status(name), "Ready")
            # a site a person must fix holds Ready False (kstatus: Stalled); a bad answer does not
            wanted = ("True", "SpecValid") if name == "promql" else ("False", reason)
            assert (ready["status"], ready["reason"]) == wanted
            assert (condition(world.status(name), "Stalled") or {}).get("status") == (
                None if name == "promql" else "True")


async def test_a_steady_plan_costs_no_writes_across_probes_and_restarts(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        await tick(world, ctx)  # the first round records the checks as healthy
        settled = len(world.own.emulator.writes)
        await tick(world, ctx, times=3)
        assert world.own.emulator.count_writes(since=settled) == 0, "healthy rounds change nothing worth a write"
    before = len(world.own.emulator.writes)
    async with operator(world) as ctx:
        await until(lambda: metric(ctx, "lifeline_reconciles_total", kind="FailoverPlan", result="unchanged") >= 1)
        await tick(world, ctx, times=2)
        assert world.own.emulator.count_writes(since=before) == 0, "a restart re-reads, re-probes, writes nothing"


async def test_a_request_annotation_the_operator_cannot_read_is_rejected_once(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        await tick(world, ctx)  # the first round records the checks' health
        await asyncio.to_thread(
            world._custom().patch_namespaced_custom_object, "dr.lifeline.io", "v1alpha1", NS, "failoverplans",
            "icu", {"metadata": {"annotations": {"dr.lifeline.io/request": "please fail over"}}})
        status = await world.own.emulator.wait_for(lambda: world.status().get("lastRequest") and world.status())
        assert status["lastRequest"]["outcome"] == "Rejected"
        writes = len(world.own.emulator.writes)
        await tick(world, ctx, times=2)
        assert world.own.emulator.count_writes("failoverplans", since=writes) == 0
        assert status["lastRequest"]["verb"] == "unreadable" and "lifeline failover approve" in \
            status["lastRequest"]["message"]
    async with operator(world) as ctx:  # a restart does not answer it again
        writes = len(world.own.emulator.writes)
        await until(lambda: metric(ctx, "lifeline_reconciles_total", kind="FailoverPlan", result="unchanged") >= 1)
        await tick(world, ctx)
        assert world.own.emulator.count_writes("failoverplans", since=writes) == 0
        assert json.loads(json.dumps(world.status()["lastRequest"])) == status["lastRequest"]
