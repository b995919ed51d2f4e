"""The disaster itself, on the real control plane: HIS's namespace is deleted -- its Deployment, Service,
settings, password, Ward, its claim with the volume behind it, and Lifeline's policies and
RecoveryPoints with it. The site rebuilds the namespace (the people's and the operator's rights, the
repository's volume, the key), GitOps applies the policies again, `lifeline backup adopt` makes their
points again from the destinations, and one Restore, requested by carol and approved by alice and bob,
brings all of it back: the claim with its data before the Deployment, whose Pod reads the chart."""
from __future__ import annotations

import pytest

from lifeline.devstack import install
from lifeline.devstack.children import wait_for
from tests.backup.conftest import fast_timers, key_text, points, policy, seeded, settled, volumes  # noqa: F401
from tests.backup.test_adoption import adopt
from tests.backup.test_objects import objects_policy, wards_crd

from .conftest import restore_body
from .helpers import claim_dir, phase, request_and_approve, stored
from .objects_helpers import APP, CHART, KINDS, RBAC, RESOURCES, application, backed_up, gone, pod_log, ready_pods

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def his_admins(kube) -> None:
    """HIS's own kind, given to its admins (hospital-dba) as a platform team aggregates a CRD's rights."""
    rbac = f"/apis/{RBAC}/v1/namespaces/{kube.namespace}"
    kube.request("POST", f"{rbac}/roles", {"metadata": {"name": "his-admin"}, "rules": [
        {"apiGroups": ["his.example.org"], "resources": ["wards"], "verbs": ["get", "list", "create", "update"]}]})
    kube.request("POST", f"{rbac}/rolebindings", {
        "metadata": {"name": "his-admin"}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "his-admin"},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "hospital-dba"}]})


def rebuild_namespace(kube, volumes, key_text) -> None:
    """What the site puts back before any restore: the namespace, who may do what in it, the
    repository's volume (its PersistentVolume outlived the claim) and the key."""
    ns = kube.namespace
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    install.bind_people(kube.request, ns)
    install.grant_tenant(kube.request, ns)
    his_admins(kube)
    kube.request("DELETE", f"/api/v1/persistentvolumes/{ns}-backup-local")
    wait_for(lambda: gone(kube, f"/api/v1/persistentvolumes/{ns}-backup-local"), 30, "the old volume to go")
    kube.claim("backup-local", volumes["backup-local"])
    kube.secret("pacs-key", {"key": key_text})


async def test_after_the_namespace_is_deleted_adoption_and_one_approved_restore_bring_it_all_back(
        kube, seeded, volumes, key_text, people, clock, fast_env):
    ns = kube.namespace
    wards_crd(kube.cluster)
    his_admins(kube)
    application(kube)
    volume = await kube.wait_for(lambda: claim_dir(kube, "his-data"), timeout=30)
    (volume / "chart.txt").write_text(CHART)

    async with kube.operator(clock=clock):
        point = await backed_up(kube)
        [data_point] = points(kube, "his-data")

        # The disaster: the namespace is deleted, and the namespace controller deletes all of it.
        kube.request("DELETE", f"/api/v1/namespaces/{ns}")
        await kube.wait_for(lambda: gone(kube, f"/api/v1/namespaces/{ns}"), timeout=120)
        assert not (volume / "chart.txt").exists(), "the claim's volume went with it (reclaim policy Delete)"

        rebuild_namespace(kube, volumes, key_text)
        for body in (policy("his-data", claim="his-data", incremental=None, destinations=[
                         {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/his-data"}}]),
                     objects_policy(selector={"matchLabels": APP}, includeKinds=list(KINDS))):
            kube.create(body)  # applied again from Git
            await settled(kube, body["metadata"]["name"], generation=1)
        for name in ("his-data", "his-objects"):
            code, said = await adopt(kube, name)
            assert code == 0 and "adopted 1 points" in said, said
        assert [p["metadata"]["name"] for p in points(kube, "his-objects")] == [point["metadata"]["name"]]
        assert [p["spec"]["copies"] for p in points(kube, "his-data")] == [data_point["spec"]["copies"]]

        body = restore_body("his-back", point["metadata"]["name"], target={"objects": {}},
                            reason="INC-5120: namespace deleted by a pipeline")
        name = await request_and_approve(kube, people, body)
        await kube.wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout=180)
        status = stored(kube, name)["status"]
        assert status["phase"] == "Succeeded", status
        assert status["objects"]["counts"] == {"created": len(RESOURCES)}, status["objects"]
        assert status["objects"]["claimsWithData"] == [f"{ns}/his-data"]
        for resource, obj in RESOURCES:
            assert kube.stored(resource, ns, obj), f"{resource}/{obj}"
        [pod] = await kube.wait_for(lambda: ready_pods(kube.cluster, ns), timeout=60)
        assert CHART.strip() in pod_log(kube.cluster, ns, pod["metadata"]["name"])
