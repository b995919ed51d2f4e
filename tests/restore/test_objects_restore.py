"""A Restore of Kubernetes objects on the real control plane: an application's namespace backed up as
objects (and its volume's data by a pvc policy), put back into another namespace after two
approvals, its claim given its data before its Deployment is made, and the Deployment's Pod (run by
the process kubelet) starting and reading that data there. Every namespaced reference follows the
namespace: the RoleBinding's subject, the claim the Pod mounts, the Service."""
from __future__ import annotations

import pytest

from lifeline.devstack import install
from lifeline.planning import objects_writer, restore_run
from tests.backup.conftest import fast_timers, key_text, seeded, volumes  # noqa: F401 - fixtures
from tests.backup.test_objects import wards_crd

from .conftest import restore_body
from .helpers import claim_dir, phase, request_and_approve, stored
from .objects_helpers import APP, BINDINGS, CHART, KINDS, PAIR, RBAC, RESOURCES, application, backed_up, pod_log, \
    ready_pods, site_provides

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def standby_namespace(kube, tmp_path, key_text):
    """The namespace the application comes back in: the people and the operator have their usual rights
    there, the admin paired it with the test's namespace, and it holds what the site provides rather
    than the application: the repository's volume and the key."""
    name = f"{kube.namespace}-back"
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    install.bind_people(kube.request, name)
    install.grant_tenant(kube.request, name)
    # the application's own kind, and granting roles (its RoleBinding), given to its admins as a
    # platform team aggregates a CRD's rights and delegates RBAC
    rbac = f"/apis/{RBAC}/v1/namespaces/{name}"
    kube.request("POST", f"{rbac}/roles", {"metadata": {"name": "his-admin"}, "rules": [
        {"apiGroups": ["his.example.org"], "resources": ["wards"], "verbs": ["get", "list", "create", "update"]},
        {"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["bind", "escalate"]},
        {"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["bind"]}]})
    kube.request("POST", f"{rbac}/rolebindings", {
        "metadata": {"name": "his-admin"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "his-admin"},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "hospital-dba"}]})
    site_provides(kube.cluster, name, tmp_path / "volumes" / "backup-local", key_text)
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}")
    kube.request("DELETE", f"/api/v1/persistentvolumes/{name}-backup-local")


async def test_an_approved_restore_brings_the_application_back_with_its_data_into_a_mapped_namespace(
        kube, seeded, people, clock, fast_env, monkeypatch, standby_namespace):
    target = standby_namespace
    monkeypatch.setenv(PAIR, f"{kube.namespace}->{target}")
    wards_crd(kube.cluster)
    application(kube, binding=True)
    volume = await kube.wait_for(lambda: claim_dir(kube, "his-data"), timeout=30)
    (volume / "chart.txt").write_text(CHART)

    async with kube.operator(clock=clock):
        point = await backed_up(kube, (*KINDS, BINDINGS))
        body = restore_body("his-back", point["metadata"]["name"], target={"namespace": target, "objects": {}})
        name = await request_and_approve(kube, people, body)
        await kube.wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout=180)
        status = stored(kube, name)["status"]
        job = restore_run.job_name(name)
        assert status["phase"] == "Succeeded", (status, kube.job_log(job))

        # every object is back in the mapped namespace, the claim with its data
        assert status["objects"]["counts"] == {"created": 7}, status["objects"]
        assert status["objects"]["claimsWithData"] == [f"{target}/his-data"]
        assert "7 created" in status["message"] and f"{target}/his-data" in status["message"]
        for resource, obj in (*RESOURCES, (f"{RBAC}/v1/rolebindings", "his-web-view")):
            assert kube.stored(resource, target, obj), f"{resource}/{obj} in {target}"
        assert kube.stored("his.example.org/v1/wards", target, "icu")["spec"] == {"beds": 12}

        # every namespaced reference follows: the binding's subject, the claim (a new volume), the Service
        binding = kube.stored(f"{RBAC}/v1/rolebindings", target, "his-web-view")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default", "namespace": target}]
        assert binding["roleRef"]["name"] == "view"
        deployment = kube.stored("apps/v1/deployments", target, "his-web")
        [claim_ref] = deployment["spec"]["template"]["spec"]["volumes"]
        assert claim_ref["persistentVolumeClaim"]["claimName"] == "his-data"
        old_claim, new_claim = (kube.stored("v1/persistentvolumeclaims", ns, "his-data")
                                for ns in (kube.namespace, target))
        assert new_claim["metadata"]["namespace"] == target and new_claim["status"]["phase"] == "Bound"
        assert new_claim["spec"]["volumeName"] != old_claim["spec"]["volumeName"]
        old_service, new_service = (kube.stored("v1/services", ns, "his-web") for ns in (kube.namespace, target))
        assert new_service["metadata"]["namespace"] == target and new_service["spec"]["selector"] == APP
        assert new_service["spec"]["clusterIP"] != old_service["spec"]["clusterIP"]

        # the Deployment's Pod starts there, mounts the claim of its own namespace, reads the restored chart
        [pod] = await kube.wait_for(lambda: ready_pods(kube.cluster, target), timeout=60)
        assert pod["metadata"]["namespace"] == target
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "his-data"
        assert CHART.strip() in pod_log(kube.cluster, target, pod["metadata"]["name"])

        # the writer's rights ended with the restore
        writer = objects_writer.writer_name(job)
        await kube.wait_for(lambda: not kube.stored(f"{RBAC}/v1/roles", target, writer))
        assert not kube.stored(f"{RBAC}/v1/rolebindings", target, writer)
        assert not kube.stored("v1/serviceaccounts", kube.namespace, writer)
