"""Actuators against the emulator (fencing by annotation, traffic by annotation), and the CLI's edges."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from lifeline.api import BY_KIND
from lifeline.api.failoverplan import FailoverPlanSpec
from lifeline.commands.failover import render_status
from lifeline.devstack.emulator import install_crd, simple_crd
from lifeline.failover import actuators
from lifeline.failover.machine import Fence, Promote, SwitchTraffic
from lifeline.failover.sites import Clusters
from lifeline.kube import Kube
from lifeline.cli import main as lifeline

from .conftest import NS, plan_body, workload

PLANS = BY_KIND["FailoverPlan"]


def spec(**overrides) -> FailoverPlanSpec:
    body = plan_body("p", "http://127.0.0.1:1", "http://127.0.0.1:2", **overrides)
    body["spec"]["primary"].pop("cluster")
    body["spec"]["primary"]["namespace"] = NS
    return FailoverPlanSpec.model_validate(body["spec"])


async def test_annotation_fencing_and_an_annotation_traffic_switch(emulator, kubeconfig):
    emulator.seed("v1/namespaces", {"metadata": {"name": NS}})
    install_crd(emulator, simple_crd("externaldns.k8s.io", "v1alpha1", "dnsendpoints", "DNSEndpoint"))
    emulator.seed("externaldns.k8s.io/v1alpha1/dnsendpoints", {
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
        "metadata": {"name": "monitoring", "namespace": NS}, "spec": {"endpoints": []}})
    for kind, name, n in (("StatefulSet", "prometheus-a", 2), ("Deployment", "grafana-a", 1),
                          ("StatefulSet", "prometheus-b", 0), ("Deployment", "grafana-b", 0)):
        emulator.seed(f"apps/v1/{kind.lower()}s", workload(kind, name, NS, n))
    s = spec(fencing="Annotation", traffic={"annotation": {
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint", "name": "monitoring",
        "namespace": NS, "key": "dr.lifeline.io/active-site"}})
    kube = Kube.connect(kubeconfig)
    clusters = Clusters(kube, NS)
    try:
        fenced = await actuators.perform(Fence("site-a", "Annotation"), spec=s, clusters=clusters, stamp="T")
        assert fenced.ok and fenced.replicas == {"StatefulSet/prometheus-a": 2, "Deployment/grafana-a": 1}
        stored = emulator.stored("apps/v1/statefulsets", NS, "prometheus-a")
        assert stored["spec"]["replicas"] == 2, "annotation fencing leaves the replicas alone"
        assert stored["metadata"]["annotations"][actuators.FENCED_ANNOTATION] == "T"
        promoted = await actuators.perform(Promote("site-a", {"StatefulSet/prometheus-a": 3}), spec=s,
                                           clusters=clusters, stamp="T")
        stored = emulator.stored("apps/v1/statefulsets", NS, "prometheus-a")
        assert promoted.ok and stored["spec"]["replicas"] == 3
        assert actuators.FENCED_ANNOTATION not in (stored["metadata"].get("annotations") or {})
        switched = await actuators.perform(SwitchTraffic("site-b"), spec=s, clusters=clusters, stamp="T")
        dns = emulator.stored("externaldns.k8s.io/v1alpha1/dnsendpoints", NS, "monitoring")
        assert switched.ok and dns["metadata"]["annotations"]["dr.lifeline.io/active-site"] == "site-b"
        # a missing traffic object is an error the step retries, not a crash
        s2 = spec(traffic={"service": {"name": "nope", "namespace": NS, "primarySelector": {"a": "1"},
                                       "standbySelector": {"b": "2"}}})
        failed = await actuators.perform(SwitchTraffic("site-b"), spec=s2, clusters=clusters, stamp="T")
        assert not failed.ok and not failed.unreachable and "404" in failed.message
    finally:
        clusters.close()
        kube.close()


def test_a_selector_patch_leaves_exactly_the_new_selector():
    assert actuators.selector_patch({"site": "b", "tier": "x"}, {"site": "a", "zone": "1"}) == {
        "zone": None, "site": "b", "tier": "x"}


def test_failover_help_lists_the_verbs():
    out = subprocess.run([sys.executable, "-m", "lifeline.cli", "failover", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for verb in ("approve", "back", "switch", "status"):
        assert verb in out


async def test_cli_requests_and_status_without_an_operator(emulator, kubeconfig, capsys):
    emulator.seed("v1/namespaces", {"metadata": {"name": NS}})
    body = plan_body("icu", "http://127.0.0.1:1", "http://127.0.0.1:2")
    emulator.seed(PLANS.resource, {**body, "metadata": {"name": "icu", "namespace": NS}})
    run = lambda *args: asyncio.to_thread(lifeline, ["failover", *args, "-n", NS, "--kubeconfig", str(kubeconfig)])
    assert await run("back", "icu", "--timeout", "0") == 0
    annotation = emulator.stored(PLANS.resource, NS, "icu")["metadata"]["annotations"]["dr.lifeline.io/request"]
    assert json.loads(annotation)["verb"] == "back"
    assert await run("approve", "icu", "--timeout", "0.3", "--accept-unfenced") == 2
    assert "has not answered" in capsys.readouterr().err
    assert json.loads(emulator.stored(PLANS.resource, NS, "icu")["metadata"]["annotations"]
                      ["dr.lifeline.io/request"])["acceptUnfenced"] is True
    assert await run("status", "icu") == 0
    assert "phase:       <not observed yet>" in capsys.readouterr().out
    assert await run("status", "nope") == 1
    assert "404" in capsys.readouterr().err


def test_render_status_shows_what_a_person_needs():
    obj = {"metadata": {"namespace": NS, "name": "icu"}, "spec": {"mode": "Automatic"}, "status": {
        "phase": "FailingOver", "activeSite": "site-a", "fencePending": "site-a",
        "switchover": {"kind": "Failover", "source": "site-a", "target": "site-b", "step": "AwaitReady",
                       "startedTime": "2026-11-23T10:01:00.000Z"},
        "checks": [{"site": "site-a", "name": "ready", "healthy": False, "consecutiveFailures": 7,
                    "reason": "Timeout", "message": "no answer within 2s"}],
        "history": [{"time": "2026-11-23T10:00:00.000Z", "phase": "FailedOver", "activeSite": "site-b",
                     "reason": "FailoverComplete", "achievedRTOSeconds": 61.5, "switchoverSeconds": 1.5}],
    }}
    text = render_status(obj)
    assert "switchover:  Failover site-a -> site-b, step AwaitReady" in text
    assert "site site-a could not be reached" in text and "RTO 61.5s" in text and "Timeout" in text
