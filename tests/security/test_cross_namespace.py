"""Finding 5 of the security review, as the attacks: a tenant of one namespace uses a Lifeline object
to make the operator act in another. A Restore in ``his`` whose target is ``lab`` would overwrite the
lab's data with the operator's rights; a FailoverPlan in ``his`` naming a site or a Service in ``lab``
would scale the lab's workloads to zero or re-point its Service. ServiceAccounts would approve for
people nobody can name."""
from __future__ import annotations

import secrets

import pytest

from lifeline.api.failoverplan import FailoverPlanSpec
from lifeline.devstack import install
from lifeline.failover import actuators
from lifeline.failover.machine import Fence, SwitchTraffic
from lifeline.failover.sites import Clusters
from lifeline.kube import Kube
from lifeline.planning import authority
from lifeline.planning import restore as rules
from tests.failover.conftest import plan_body
from tests.restore.conftest import clock, fast_env, people  # noqa: F401 - fixtures
from tests.restore.helpers import decide, phase, stored

PAIR = "LIFELINE_CROSS_NAMESPACE"


@pytest.fixture
def lab(cluster):
    """Another tenant's namespace, with a claim of its own that nobody in the first may touch."""
    name = f"lab-{secrets.token_hex(3)}"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def into(lab: str) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": "steal"},
            "spec": {"recoveryPoint": "his-20261201-0100", "reason": "INC-1: move the data over",
                     "target": {"namespace": lab, "pvc": {"claimName": "lab-results"}}}}


def objects_in(kube, lab: str, plural: str, group: str = "") -> list[dict]:
    base = f"/apis/{group}" if group else "/api/v1"
    return kube.request("GET", f"{base}/namespaces/{lab}/{plural}")["items"]


async def test_approvers_of_one_namespace_cannot_approve_a_restore_into_another(
        kube, lab, people, clock, fast_env):
    async with kube.operator(clock=clock):
        kube.create(into(lab), user="carol")
        await kube.wait_for(lambda: phase(kube, "steal") == "PendingApproval")
        code, out = await decide(people["alice"], "approve", "steal", kube.namespace)
        assert code != 0 and "alice may not approve restores here" in out, out
        assert not (stored(kube, "steal")["status"].get("approvals") or [])


async def test_a_restore_into_another_namespace_does_not_start_unless_the_admin_paired_them(
        kube, lab, people, clock, fast_env, monkeypatch):
    install.bind_people(kube.request, lab)  # the approvers may approve there too: still not allowed
    monkeypatch.delenv(PAIR, raising=False)
    async with kube.operator(clock=clock):
        kube.create(into(lab), user="carol")
        await kube.wait_for(lambda: phase(kube, "steal") == "PendingApproval")
        for person in ("alice", "bob"):
            code, out = await decide(people[person], "approve", "steal", kube.namespace)
            assert code == 0, out
        await kube.wait_for(lambda: phase(kube, "steal") == "Failed")
        status = stored(kube, "steal")["status"]
        assert status["reason"] == "TargetNamespaceNotAllowed"
        assert f"'{kube.namespace}->{lab}'" in status["message"] and "crossNamespace" in status["message"]
        assert objects_in(kube, lab, "jobs", "batch/v1") == [] and objects_in(kube, lab, "persistentvolumeclaims") == []


def test_paired_namespaces_are_allowed_and_only_that_way_round():
    pairs = authority.allowed_pairs({PAIR: "his->his-restore, lab -> lab-dr,broken"})
    assert pairs == {("his", "his-restore"), ("lab", "lab-dr")}
    assert authority.outside_problem("t", "his", "his-restore", pairs) is None
    assert authority.outside_problem("t", "his", "his", frozenset()) is None
    assert authority.outside_problem("t", "his-restore", "his", pairs) is not None


def test_a_service_account_cannot_approve():
    request = rules.Request("Approved", "", ())
    why = rules.refusal(request, user="system:serviceaccount:his:ci-bot", requester="carol", records=[],
                        phase="PendingApproval", may_decide=True)
    assert why and "ServiceAccount" in why
    assert rules.refusal(request, user="alice", requester="carol", records=[], phase="PendingApproval",
                         may_decide=True) is None


async def test_a_failover_plan_cannot_fence_or_switch_another_namespace(kube, lab):
    kube.request("POST", f"/apis/apps/v1/namespaces/{lab}/statefulsets", {
        "metadata": {"name": "lab-db"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "lab-db"}}, "serviceName": "lab-db",
                 "template": {"metadata": {"labels": {"app": "lab-db"}},
                              "spec": {"containers": [{"name": "db", "image": "busybox:1.36",
                                                       "command": ["sleep", "300"]}]}}}})
    kube.request("POST", f"/api/v1/namespaces/{lab}/services", {
        "metadata": {"name": "lab-entry"}, "spec": {"selector": {"site": "lab"}, "ports": [{"port": 80}]}})
    body = plan_body("grab", "http://127.0.0.1:1", "http://127.0.0.1:2", primary_ns=lab, standby_ns=lab)
    del body["spec"]["primary"]["cluster"]  # a site "in this cluster": the lab's namespace
    body["spec"]["primary"]["workloads"] = [{"kind": "StatefulSet", "name": "lab-db"}]
    body["spec"]["traffic"]["service"].update(name="lab-entry", namespace=lab)
    spec = FailoverPlanSpec.model_validate(body["spec"])
    client = Kube.connect(kube.cluster.kubeconfig)
    try:
        clusters = Clusters(client, kube.namespace)  # the plan lives in the test's namespace
        fence = await actuators.perform(Fence("site-a", "ScaleToZero"), spec=spec, clusters=clusters, stamp="t")
        switch = await actuators.perform(SwitchTraffic("site-b"), spec=spec, clusters=clusters, stamp="t")
        for outcome in (fence, switch):
            assert not outcome.ok and "crossNamespace" in outcome.message, outcome
        paired = Clusters(client, kube.namespace, authority.allowed_pairs({PAIR: f"{kube.namespace}->{lab}"}))
        assert (await actuators.perform(SwitchTraffic("site-b"), spec=spec, clusters=paired, stamp="t")).ok
    finally:
        client.close()
    assert kube.request("GET", f"/apis/apps/v1/namespaces/{lab}/statefulsets/lab-db")["spec"]["replicas"] == 1
