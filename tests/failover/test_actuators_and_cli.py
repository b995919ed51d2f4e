"""Actuators against the real API server as the chart's ServiceAccount (fencing by annotation,
traffic by annotation on an external-dns DNSEndpoint), and the CLI's edges."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from lifeline.api import BY_KIND
from lifeline.api.failoverplan import FailoverPlanSpec
from lifeline.cli import main as lifeline
from lifeline.commands.failover import render_status
from lifeline.devstack import install, live
from lifeline.devstack.children import wait_for
from lifeline.failover import actuators
from lifeline.failover.machine import Fence, Promote, SwitchTraffic
from lifeline.failover.sites import Clusters
from lifeline.kube import Kube
from tests.live_kube import LiveKube

from .conftest import plan_body

PLANS = BY_KIND["FailoverPlan"]
DNS_CRD = "dnsendpoints.externaldns.k8s.io"
DNS = "externaldns.k8s.io/v1alpha1/dnsendpoints"
PAUSE = "registry.k8s.io/pause:3.10"


def spec(namespace: str, **overrides) -> FailoverPlanSpec:
    """Both sites in ``namespace`` of the operator's own cluster."""
    body = plan_body("p", "http://127.0.0.1:1", "http://127.0.0.1:2", primary_ns=namespace, standby_ns=namespace,
                     **overrides)
    body["spec"]["primary"].pop("cluster")
    return FailoverPlanSpec.model_validate(body["spec"])


def dns_endpoint_crd(cluster) -> None:
    """external-dns's DNSEndpoint kind, served once per session cluster (its schema left open)."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           # *.k8s.io groups are protected; external-dns's own CRD carries this approval
           "metadata": {"name": DNS_CRD,
                        "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/external-dns/pull/2007"}},
           "spec": {"group": "externaldns.k8s.io", "scope": "Namespaced",
                    "names": {"plural": "dnsendpoints", "singular": "dnsendpoint", "kind": "DNSEndpoint",
                              "listKind": "DNSEndpointList"},
                    "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                      "spec": open_object, "status": open_object}}}}]}}
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    live.create(cluster, base, crd)
    wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in
                         (cluster.request("GET", f"{base}/{DNS_CRD}").get("status") or {}).get("conditions") or []),
             30, f"CRD {DNS_CRD} to be established", interval=0.1)


def workload(kind: str, name: str, replicas: int) -> dict:
    """Pause containers: what these actuators change is the API objects, never a server."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "serviceName": name,
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                                           "containers": [{"name": "main", "image": PAUSE}]}}}}


async def test_annotation_fencing_and_an_annotation_traffic_switch(kube, tmp_path):
    ns = kube.namespace
    await asyncio.to_thread(dns_endpoint_crd, kube.cluster)
    kube.seed(DNS, {"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
                    "metadata": {"name": "monitoring"}, "spec": {"endpoints": []}})
    for kind, name, n in (("StatefulSet", "prometheus-a", 2), ("Deployment", "grafana-a", 1),
                          ("StatefulSet", "prometheus-b", 0), ("Deployment", "grafana-b", 0)):
        body = workload(kind, name, n)
        if kind == "Deployment":
            del body["spec"]["serviceName"]
        kube.seed(f"apps/v1/{kind.lower()}s", body)
    s = spec(ns, fencing="Annotation", traffic={"annotation": {
        "apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint", "name": "monitoring",
        "namespace": ns, "key": "dr.lifeline.io/active-site"}})
    # as the chart's ServiceAccount: its RBAC must allow every one of these writes
    config = install.operator_kubeconfig(kube.cluster.request, kube.release, kube.cluster.url, kube.cluster.ca,
                                         tmp_path / "operator.kubeconfig")
    client = Kube.connect(config)
    clusters = Clusters(client, ns)
    try:
        fenced = await actuators.perform(Fence("site-a", "Annotation"), spec=s, clusters=clusters, stamp="T")
        assert fenced.ok and fenced.replicas == {"StatefulSet/prometheus-a": 2, "Deployment/grafana-a": 1}
        stored = kube.stored("statefulsets", None, "prometheus-a")
        assert stored["spec"]["replicas"] == 2, "annotation fencing leaves the replicas alone"
        assert stored["metadata"]["annotations"][actuators.FENCED_ANNOTATION] == "T"
        promoted = await actuators.perform(Promote("site-a", {"StatefulSet/prometheus-a": 3}), spec=s,
                                           clusters=clusters, stamp="T")
        stored = kube.stored("statefulsets", None, "prometheus-a")
        assert promoted.ok and stored["spec"]["replicas"] == 3
        assert actuators.FENCED_ANNOTATION not in (stored["metadata"].get("annotations") or {})
        switched = await actuators.perform(SwitchTraffic("site-b"), spec=s, clusters=clusters, stamp="T")
        dns = kube.stored(DNS, None, "monitoring")
        assert switched.ok and dns["metadata"]["annotations"]["dr.lifeline.io/active-site"] == "site-b"
        assert kube.count_writes("statefulsets", name="prometheus-a", method="PATCH") == 2
        assert kube.count_writes(DNS, name="monitoring", method="PATCH") == 1
        # a missing traffic object is an error the step retries, not a crash
        s2 = spec(ns, traffic={"service": {"name": "nope", "namespace": ns, "primarySelector": {"a": "1"},
                                           "standbySelector": {"b": "2"}}})
        failed = await actuators.perform(SwitchTraffic("site-b"), spec=s2, clusters=clusters, stamp="T")
        assert not failed.ok and not failed.unreachable and "404" in failed.message
    finally:
        clusters.close()
        client.close()


def test_a_selector_patch_leaves_exactly_the_new_selector():
    assert actuators.selector_patch({"site": "b", "tier": "x"}, {"site": "a", "zone": "1"}) == {
        "zone": None, "site": "b", "tier": "x"}


def test_failover_help_lists_the_verbs():
    out = subprocess.run([sys.executable, "-m", "lifeline.cli", "failover", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for verb in ("approve", "back", "switch", "status"):
        assert verb in out


async def test_cli_requests_and_status_without_an_operator(kube, tmp_path, capsys):
    """No operator manages the namespace: the request is written and nobody answers it.

    The API server sends every FailoverPlan write to the chart's validating webhook (failurePolicy
    Fail), so an operator must serve that: one runs for another namespace only.
    """
    ns = kube.namespace
    elsewhere = LiveKube(kube.cluster, f"{ns}-elsewhere", kube.release, tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": elsewhere.namespace}})
    run = lambda *args: asyncio.to_thread(lifeline, ["failover", *args, "-n", ns,  # noqa: E731
                                                     "--kubeconfig", str(kube.cluster.kubeconfig)])
    try:
        async with elsewhere.operator():
            kube.create(plan_body("icu", "http://127.0.0.1:1", "http://127.0.0.1:2", primary_ns="monitoring",
                                  standby_ns=ns))
            assert await run("back", "icu", "--timeout", "0") == 0
            annotation = kube.stored(PLANS, None, "icu")["metadata"]["annotations"]["dr.lifeline.io/request"]
            assert json.loads(annotation)["verb"] == "back"
            assert await run("approve", "icu", "--timeout", "0.3", "--accept-unfenced") == 2
            assert "has not answered" in capsys.readouterr().err
            assert json.loads(kube.stored(PLANS, None, "icu")["metadata"]["annotations"]
                              ["dr.lifeline.io/request"])["acceptUnfenced"] is True
            assert await run("status", "icu") == 0
            assert "phase:       <not observed yet>" in capsys.readouterr().out
            assert await run("status", "nope") == 1
            assert "404" in capsys.readouterr().err
        assert kube.count_writes(namespace=ns) == 0, "no operator wrote anything in this namespace"
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{elsewhere.namespace}")


def test_render_status_shows_what_a_person_needs():
    obj = {"metadata": {"namespace": "hospital", "name": "icu"}, "spec": {"mode": "Automatic"}, "status": {
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
