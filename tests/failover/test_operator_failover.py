"""The real operator, two real clusters, real Prometheus servers, outages done for real, a clock the test moves.

Topology (the recommended placement): the operator, the FailoverPlan, the entry Service and the
standby site (site-b) share the session's cluster; the primary (site-a) is a second control plane,
reached through a kubeconfig Secret. Each site runs Prometheus as a StatefulSet under its process
kubelet; the checks ask those servers. Time on the plan's schedule moves only when a test calls
``tick``: the breach window passes without waiting for it, while Pods start on real time.
"""
from __future__ import annotations

import asyncio
import json
import urllib.error

import pytest

from lifeline.cli import main as lifeline
from tests.integration.operator_harness import metric

from .conftest import condition, event_reasons, operator, phase, ready_replicas, tick, until, wait_condition
from .sites import refusal, seed_unvalidated

SERVING_A = {"StatefulSet/prometheus-a": 1, "Deployment/grafana-a": 2}
SERVING_B = {"StatefulSet/prometheus-b": 1, "Deployment/grafana-b": 2}
FENCED_A = {k: 0 for k in SERVING_A}
FENCED_B = {k: 0 for k in SERVING_B}


async def cli(world, *args: str) -> int:
    config = str(world.kube.cluster.kubeconfig)
    return await asyncio.to_thread(lifeline, ["failover", *args, "-n", world.ns, "--kubeconfig", config])


async def test_outage_failover_after_the_window_then_failback_only_on_request_then_the_cap(world, capsys):
    ns = world.ns
    async with operator(world) as ctx:
        await world.create(world.plan())
        status = await phase(world, "Monitoring")
        assert status["activeSite"] == "site-a"
        await tick(world, ctx, times=2)
        assert world.status()["checks"][0]["healthy"] is True

        world.node_down()  # the outage, at t=20s: site A's node stops, and its Prometheus with it
        await tick(world, ctx)  # t=30: the first failed check
        await phase(world, "Degraded")
        await tick(world, ctx, times=5)  # t=80: failing for 50s, inside the 60s window
        assert world.status()["phase"] == "Degraded"
        assert world.replicas() == (SERVING_A, FENCED_B) and world.selector() == {"site": "site-a"}
        await tick(world, ctx)  # t=90: 60s
        status = await phase(world, "FailedOver")
        primary, standby = world.replicas()
        assert primary == FENCED_A, "the old primary is fenced (its API answers while its node is down)"
        assert standby == SERVING_B, "the standby runs as many replicas as the primary did"
        assert world.selector() == {"site": "site-b"}
        assert ready_replicas(world.kube.cluster, ns, "StatefulSet", "prometheus-b") == 1
        last = status["history"][-1]
        assert (last["reason"], last["achievedRTOSeconds"], last["detectionSeconds"]) == ("FailoverComplete", 60, 60)
        assert status["fencedReplicas"] == {"site-a": SERVING_A}
        await until(lambda: metric(ctx, "lifeline_failover_achieved_rto_seconds", namespace=ns, name="icu") == 60)
        assert metric(ctx, "lifeline_failover_phase", namespace=ns, name="icu", phase="FailedOver") == 1
        await event_reasons(world, "SiteDegraded", "FailingOver", "Fenced", "Promoted", "TrafficSwitched",
                            "FailoverComplete")

        # the primary's node recovers: no automatic failback, however long we wait
        await asyncio.to_thread(world.node_up)
        await tick(world, ctx, times=12)
        assert world.status()["phase"] == "FailedOver" and world.selector() == {"site": "site-b"}

        # a person asks for it
        assert await cli(world, "back", "icu") == 0
        assert "Accepted: failback to site-a started" in capsys.readouterr().out
        status = await phase(world, "Monitoring")
        assert world.replicas() == (SERVING_A, FENCED_B) and world.selector() == {"site": "site-a"}
        assert status["history"][-1]["reason"] == "FailbackComplete"
        assert status["fencedReplicas"] == {"site-b": SERVING_B}

        # a second outage within 24h: the cap (1) holds the automatic failover back
        world.node_down()
        await tick(world, ctx, times=8)
        cond = await wait_condition(world, "FailoverRecommended", "True", "CapReached")
        assert "lifeline failover approve icu" in cond["message"]
        assert world.selector() == {"site": "site-a"} and world.status()["phase"] == "Degraded"
        await until(lambda: metric(ctx, "lifeline_failover_recommended", namespace=ns, name="icu") == 1)
        assert await cli(world, "status", "icu") == 0
        out = capsys.readouterr().out
        assert "phase:       Degraded   active site: site-a" in out and "CapReached" in out
    assert not world.stored_plan()["metadata"].get("finalizers"), "no finalizer from the daemon"


async def test_a_flapping_endpoint_never_fails_over(world):
    # Prometheus hangs (SIGSTOP) and answers again (SIGCONT) round after round; a hung server
    # costs a probe its timeout, so the checks here wait half a second, not two.
    async with operator(world) as ctx:
        await world.create(world.plan(timeout="500ms"))
        await phase(world, "Monitoring")
        for i in range(16):  # 160s of a check that fails every other round: 60s window never reached
            world.hang() if i % 2 == 0 else world.resume()
            await tick(world, ctx)
            if i % 2 == 0:  # (a hang that missed would pass here; a slow answer after one is no matter)
                checks = [c for c in world.status()["checks"] if c["site"] == "site-a"]
                assert {c["reason"] for c in checks} == {"Timeout"}, f"round {i}, hung: {checks}"
        status = world.status()
        assert status["phase"] == "Degraded", "it flaps between failing and passing: degraded, not down"
        assert not any(h["phase"] == "FailingOver" for h in status["history"])
        assert world.replicas() == (SERVING_A, FENCED_B) and world.selector() == {"site": "site-a"}
        history = [(h["phase"], h.get("reason"), h.get("message")) for h in status["history"]]
        assert [phase for phase, *_ in history] == ["Degraded"], f"hysteresis: the phase does not flap: {history}"
        assert {c["reason"] for c in status["checks"] if c["site"] == "site-a"} == {"Healthy"}
        await tick(world, ctx, times=2)
        assert world.status()["phase"] == "Monitoring"


async def test_an_operator_restarted_mid_failover_completes_it_exactly_once(world):
    world.hold_standby()  # the standby's pods will wait at a scheduling gate: the failover stops at AwaitReady
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        world.node_down()
        await tick(world, ctx, times=7)
        await world.kube.wait_for(lambda: (world.status().get("switchover") or {}).get("step") == "AwaitReady")
    # the operator is gone, mid-failover
    status = world.status()
    assert status["phase"] == "FailingOver" and world.replicas() == (FENCED_A, SERVING_B)
    remote_mark, own_mark = world.remote_mark(), len(world.kube.writes)
    await world.kube.wait_for(lambda: world.standby_held() == 3)  # prometheus-b-0 and two grafana-b pods
    world.release_standby()
    async with operator(world):
        status = await phase(world, "FailedOver")
    assert world.selector() == {"site": "site-b"}
    # nothing was done twice: no second fence or promotion, one selector change, one failover counted
    # (counted by the API servers' audit logs: the operator's writes in site A and here)
    assert world.remote_writes(remote_mark) == [], "no second fence"
    assert world.kube.count_writes("statefulsets", since=own_mark) == 0, "no second promotion"
    assert world.kube.count_writes("deployments", since=own_mark) == 0, "no second promotion"
    assert world.kube.count_writes("services", name="monitoring-entry") == 1, "traffic switched once"
    assert [h["phase"] for h in status["history"]] == ["Degraded", "FailingOver", "FailedOver"]
    assert len(status["recentFailovers"]) == 1


async def test_an_unreachable_primary_is_fenced_when_it_returns(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        mark = world.remote_mark()
        # site A goes dark: its node (and Prometheus), controllers, API server and etcd all stop
        await asyncio.to_thread(world.site.go_dark)
        await tick(world, ctx, times=7)
        status = await phase(world, "FailedOver")
        assert status["fencedUnverified"] is True and status["fencePending"] == "site-a"
        assert world.remote_writes(mark) == [], "nothing reached site A: still scaled as it was"
        assert world.selector() == {"site": "site-b"}
        assert condition(status, "SitesResolved")["reason"] == "ClusterUnreachable"
        await until(lambda: metric(ctx, "lifeline_failover_fenced_unverified", namespace=world.ns, name="icu") == 1)
        # it comes back, its Prometheus starting again: fenced before anything else
        await asyncio.to_thread(world.site.come_back)
        await tick(world, ctx)
        status = await world.kube.wait_for(lambda: "fencePending" not in (s := world.status()) and s)
        assert world.replicas()[0] == FENCED_A and "fencedUnverified" not in status
        assert sorted(world.remote_writes(mark)) == [("patch", "deployments", "grafana-a"),
                                                      ("patch", "statefulsets", "prometheus-a")], "fenced once"
        assert world.selector() == {"site": "site-b"}, "traffic stays at the standby"
        await event_reasons(world, "FencedOnReturn", "FencingUnverified")


async def test_manual_mode_recommends_then_the_approval_fails_over(world, capsys):
    async with operator(world) as ctx:
        await world.create(world.plan(mode="Manual"))
        await phase(world, "Monitoring")
        world.node_down()
        await tick(world, ctx, times=8)
        cond = await wait_condition(world, "FailoverRecommended", "True", "ManualMode")
        assert "lifeline failover approve icu" in cond["message"]
        assert world.replicas() == (SERVING_A, FENCED_B), "only recommended"
        await until(lambda: metric(ctx, "lifeline_failover_recommended", namespace=world.ns, name="icu") == 1)
        await event_reasons(world, "FailoverRecommended")
        assert await cli(world, "approve", "icu") == 0
        assert "Accepted: failover to site-b started" in capsys.readouterr().out
        status = await phase(world, "FailedOver")
        assert world.replicas() == (FENCED_A, SERVING_B)
        assert status["lastRequest"]["verb"] == "approve" and status["history"][-2]["reason"] == "Approved"
        assert condition(status, "FailoverRecommended")["status"] == "False"
        # a second approval has nothing to approve
        assert await cli(world, "approve", "icu") == 1
        assert "Rejected: no failover is waiting for approval" in capsys.readouterr().out


async def test_bad_input_each_gets_its_own_condition(world):
    ns = world.ns
    # What the CRD's schema forbids never reaches the operator: the API server refuses it, naming the field.
    zero = world.plan("zero")
    zero["spec"]["maxFailovers"]["count"] = 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        world.kube.create(zero)
    assert refused.value.code == 422 and "spec.maxFailovers.count" in refusal(refused.value)
    # A spec only Lifeline's rules refuse, stored past the webhook (as if written before the rule existed).
    invalid = world.plan("invalid")
    invalid["spec"]["primary"]["healthChecks"][0]["timeout"] = "20s"
    await asyncio.to_thread(seed_unvalidated, world.kube, invalid)
    async with operator(world) as ctx:
        typo = world.plan("typo")
        typo["spec"]["standby"]["workloads"][0]["name"] = "prometheus-x"
        await world.create(typo)
        await world.create(world.plan("nosecret", secret="site-a-kubeconfg"))
        # a PromQL check whose URL is a real server's, but not the base of its query API
        promql = world.plan("promql", primary_checks=[
            {"name": "scraping", "interval": "10s", "timeout": "2s",
             "promql": {"url": f"{world.primary_url}/-/ready", "query": 'up{job="prometheus"}'}}])
        await world.create(promql)

        c = await wait_condition(world, "SitesResolved", "False", "WorkloadNotFound", name="typo")
        assert f"StatefulSet {ns}/prometheus-x (spec.standby.workloads[0])" in c["message"]
        c = await wait_condition(world, "SitesResolved", "False", "KubeconfigSecretMissing", name="nosecret")
        assert f"create Secret {ns}/site-a-kubeconfg" in c["message"]
        await phase(world, "Monitoring", name="promql")
        await tick(world, ctx, name="promql")
        c = await wait_condition(world, "HealthChecksValid", "False", "InvalidResponse", name="promql")
        assert "did not answer like the Prometheus HTTP API" in c["message"] and "check scraping" in c["message"]
        c = await wait_condition(world, "Ready", "False", "InvalidSpec", name="invalid")
        assert "spec.primary.healthChecks[0]: timeout 20s is longer than interval 10s" in c["message"]
        assert "phase" not in world.status("invalid")
        for name, reason in (("typo", "WorkloadNotFound"), ("nosecret", "KubeconfigSecretMissing"),
                             ("promql", "InvalidResponse")):
            await event_reasons(world, reason, name=name)
            ready = condition(world.status(name), "Ready")
            # a site a person must fix holds Ready False (kstatus: Stalled); a bad answer does not
            wanted = ("True", "SpecValid") if name == "promql" else ("False", reason)
            assert (ready["status"], ready["reason"]) == wanted
            assert (condition(world.status(name), "Stalled") or {}).get("status") == (
                None if name == "promql" else "True")
        # the operator's webhook refuses the same spec at the door, with the same words
        again = world.plan("invalid-again")
        again["spec"]["primary"]["healthChecks"][0]["timeout"] = "20s"
        with pytest.raises(urllib.error.HTTPError) as refused:
            world.kube.create(again)
        assert "spec.primary.healthChecks[0]: timeout 20s is longer than interval 10s" in refusal(refused.value)


async def test_a_steady_plan_costs_no_writes_across_probes_and_restarts(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        await tick(world, ctx)  # the first round records the checks as healthy
        await world.kube.wait_for(lambda: world.status()["checks"][0].get("healthy"))
        settled, remote = len(world.kube.writes), world.remote_mark()
        await tick(world, ctx, times=3)
        assert world.kube.count_writes(since=settled) == 0, "healthy rounds change nothing worth a write"
    before = len(world.kube.writes)
    async with operator(world) as ctx:
        await until(lambda: metric(ctx, "lifeline_reconciles_total", kind="FailoverPlan", result="unchanged") >= 1)
        await tick(world, ctx, times=2)
        assert world.kube.count_writes(since=before) == 0, [(w.method, w.path) for w in world.kube.writes[before:]]
    assert world.remote_writes(remote) == [], "nor anything in site A"


async def test_a_request_annotation_the_operator_cannot_read_is_rejected_once(world):
    async with operator(world) as ctx:
        await world.create(world.plan())
        await phase(world, "Monitoring")
        await tick(world, ctx)  # the first round records the checks' health
        world.kube.patch("failoverplans", "icu", {"metadata": {"annotations": {
            "dr.lifeline.io/request": "please fail over"}}})
        status = await world.kube.wait_for(lambda: world.status().get("lastRequest") and world.status())
        assert status["lastRequest"]["outcome"] == "Rejected"
        writes = len(world.kube.writes)
        await tick(world, ctx, times=2)
        assert world.kube.count_writes("failoverplans", since=writes) == 0
        assert status["lastRequest"]["verb"] == "unreadable" and "lifeline failover approve" in \
            status["lastRequest"]["message"]
    async with operator(world) as ctx:  # a restart does not answer it again
        writes = len(world.kube.writes)
        await until(lambda: metric(ctx, "lifeline_reconciles_total", kind="FailoverPlan", result="unchanged") >= 1)
        await tick(world, ctx)
        assert world.kube.count_writes("failoverplans", since=writes) == 0
        assert json.loads(json.dumps(world.status()["lastRequest"])) == status["lastRequest"]
