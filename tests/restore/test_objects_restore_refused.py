"""An objects Restore the target refuses, on the real control plane: a custom kind the target no longer
serves (its CRD was removed) and an immutable ConfigMap that exists there with other data. The
server's dry run names both, with its own words, in the Restore's status; nothing is written and
nothing that was there changes."""
from __future__ import annotations

import pytest

from lifeline.commands.restore import _describe as describe
from lifeline.devstack import live
from lifeline.devstack.children import wait_for
from tests.backup.conftest import fast_timers, key_text, points, seeded, volumes  # noqa: F401 - fixtures
from tests.backup.test_objects import objects_policy

from .conftest import restore_body
from .conftest import APPROVERS
from .helpers import decide, phase, stored
from .objects_helpers import PAIR, RBAC, gone
from .test_objects_restore import standby_namespace  # noqa: F401 - fixture

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
CRD_BASE = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def beds_crd(kube) -> str:
    """A custom kind of this test alone (its CRD is deleted before the restore)."""
    group = f"{kube.namespace}.example.org"
    name = f"beds.{group}"
    live.create(kube.cluster, CRD_BASE, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "beds", "singular": "bed", "kind": "Bed", "listKind": "BedList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in
             (kube.cluster.request("GET", f"{CRD_BASE}/{name}").get("status") or {}).get("conditions") or []),
             30, f"CRD {name}", interval=0.1)
    return group


async def test_what_the_target_refuses_is_named_with_the_servers_words_and_nothing_is_written(
        kube, seeded, people, clock, fast_env, monkeypatch, standby_namespace):
    target = standby_namespace
    monkeypatch.setenv(PAIR, f"{kube.namespace}->{target}")
    group = beds_crd(kube)
    labels = {"app": "his"}
    kube.seed("v1/configmaps", {"metadata": {"name": "his-frozen", "labels": labels}, "immutable": True,
                                "data": {"beds": "12"}})
    kube.seed("v1/configmaps", {"metadata": {"name": "his-settings", "labels": labels}, "data": {"ward": "icu"}})
    kube.seed(f"{group}/v1/beds", {"apiVersion": f"{group}/v1", "kind": "Bed",
                                   "metadata": {"name": "bed-12", "labels": labels}, "spec": {"ward": "icu"}})
    # what is already in the target: the frozen settings, with other data
    there = kube.request("POST", f"/api/v1/namespaces/{target}/configmaps", {
        "metadata": {"name": "his-frozen"}, "immutable": True, "data": {"beds": "8"}})
    rbac = f"/apis/{RBAC}/v1/namespaces/{target}"
    kube.request("POST", f"{rbac}/roles", {"metadata": {"name": "beds-admin"}, "rules": [
        {"apiGroups": [group], "resources": ["beds"], "verbs": ["get", "create", "update"]}]})
    kube.request("POST", f"{rbac}/rolebindings", {
        "metadata": {"name": "beds-admin"}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "beds-admin"},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "hospital-dba"}]})

    async with kube.operator(clock=clock):
        kube.create(objects_policy(selector={"matchLabels": labels}, includeKinds=["configmaps", f"beds.{group}"]))
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "his-objects-full"))
        run = await kube.run_cronjob("his-objects-full")
        assert run.phase == "Succeeded", kube.job_log(run.job)
        [point] = await kube.wait_for(lambda: points(kube, "his-objects"), timeout=20)

        body = restore_body("his-back", point["metadata"]["name"],
                            target={"namespace": target, "objects": {"existing": "Update", "withData": False}})
        kube.create(body, user="carol")  # checked while the kind is still served
        kube.request("DELETE", f"{CRD_BASE}/beds.{group}")  # and then the kind goes
        await kube.wait_for(lambda: not any(g["name"] == group for g in kube.request("GET", "/apis")["groups"])
                            and gone(kube, f"/apis/{group}/v1"), timeout=30)
        name = body["metadata"]["name"]
        await kube.wait_for(lambda: phase(kube, name) == "PendingApproval")
        for person in APPROVERS:
            code, out = await decide(people[person], "approve", name, kube.namespace)
            assert code == 0, out
        await kube.wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout=120)
        status = stored(kube, name)["status"]

    assert status["phase"] == "Failed" and "ObjectsFailed: 2 of 3 objects failed" in status["message"], status
    failures = {f["name"]: f for f in status["objects"]["failures"]}
    assert failures[f"{target}/bed-12"]["kind"] == "Bed"
    assert failures[f"{target}/bed-12"]["message"] == f"not served: the cluster does not serve {group}/v1"
    assert "field is immutable when `immutable` is set" in failures[f"{target}/his-frozen"]["message"]
    assert status["objects"]["counts"] == {"failed": 2, "would create": 1}, status["objects"]
    assert "nothing that was there was deleted" in status["message"]
    # nothing written, nothing that was there changed
    assert kube.stored("v1/configmaps", target, "his-settings") is None
    frozen = kube.stored("v1/configmaps", target, "his-frozen")
    assert frozen["data"] == {"beds": "8"} and frozen["metadata"]["resourceVersion"] == there["metadata"]["resourceVersion"]
    # and the CLI says the same, object by object (`lifeline restore status his-back`)
    said = describe({**stored(kube, "his-back")})
    assert "objects:        2 failed, 1 would create" in said
    assert f"    {'Bed':<9}  {target}/bed-12: not served: the cluster does not serve {group}/v1" in said
    assert f"    ConfigMap  {target}/his-frozen: " in said
