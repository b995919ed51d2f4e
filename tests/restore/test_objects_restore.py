"""A Restore of Kubernetes objects on the real control plane: an application's namespace backed up as
objects (and its volume's data by a pvc policy), put back into another namespace after two
approvals, its claim given its data before its Deployment is made, and the Deployment's Pod (run by
the process kubelet) starting and reading that data there."""
from __future__ import annotations

import urllib.request

import pytest

from lifeline.devstack import install
from lifeline.devstack.live import host_claim
from lifeline.planning import objects_writer, restore_run
from tests.backup.conftest import fast_timers, key_text, points, policy, seeded, volumes  # noqa: F401 - fixtures
from tests.backup.test_objects import objects_policy, wards_crd

from .conftest import restore_body
from .helpers import claim_dir, phase, request_and_approve, stored

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
PAIR = "LIFELINE_CROSS_NAMESPACE"
APP = {"app": "his"}
CHART = "bed 12: Zhang San, ward ICU\n"
KINDS = ("deployments.apps", "services", "configmaps", "secrets", "persistentvolumeclaims", "wards.his.example.org")


@pytest.fixture
def standby_namespace(kube, tmp_path, key_text):
    """The namespace the application comes back in: the people and the operator have their usual rights
    there, the admin paired it with the test's namespace, and it holds what the site provides rather
    than the application: the repository's volume and the key."""
    name = f"{kube.namespace}-back"
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    install.bind_people(kube.request, name)
    install.grant_tenant(kube.request, name)
    # the application's own kind, given to its admins as a platform team aggregates a CRD's rights
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}"
    kube.request("POST", f"{rbac}/roles", {"metadata": {"name": "wards-admin"}, "rules": [
        {"apiGroups": ["his.example.org"], "resources": ["wards"], "verbs": ["get", "list", "create", "update"]}]})
    kube.request("POST", f"{rbac}/rolebindings", {
        "metadata": {"name": "wards-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wards-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "hospital-dba"}]})
    host_claim(kube.cluster, name, "backup-local", tmp_path / "volumes" / "backup-local")
    kube.request("POST", f"/api/v1/namespaces/{name}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pacs-key"}, "stringData": {"key": key_text}})
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}")
    kube.request("DELETE", f"/api/v1/persistentvolumes/{name}-backup-local")


def application(kube) -> None:
    """HIS: a claim of the default class holding a chart, a Deployment whose Pod is ready only once it
    has read it, its Service, settings, a password and a Ward."""
    kube.seed("v1/persistentvolumeclaims", {"metadata": {"name": "his-data", "labels": APP}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    kube.seed("apps/v1/deployments", {"metadata": {"name": "his-web", "labels": APP}, "spec": {
        "replicas": 1, "selector": {"matchLabels": APP},
        "template": {"metadata": {"labels": APP}, "spec": {
            "containers": [{"name": "web", "image": "busybox:1.36",
                            "command": ["sh", "-c", "cat /data/chart.txt; exec sleep 3600"],
                            "readinessProbe": {"exec": {"command": ["test", "-s", "/data/chart.txt"]},
                                               "periodSeconds": 1},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "his-data"}}]}}}})
    kube.seed("v1/services", {"metadata": {"name": "his-web", "labels": APP},
                              "spec": {"selector": APP, "ports": [{"port": 80}]}})
    kube.seed("v1/configmaps", {"metadata": {"name": "his-settings", "labels": APP}, "data": {"ward": "icu"}})
    kube.seed("v1/secrets", {"metadata": {"name": "his-db", "labels": APP}, "stringData": {"password": "s3cret"}})
    kube.seed("his.example.org/v1/wards", {"apiVersion": "his.example.org/v1", "kind": "Ward",
                                           "metadata": {"name": "icu", "labels": APP}, "spec": {"beds": 12}})


def ready_pods(kube, namespace: str) -> list[dict]:
    return [p for p in kube.objects("pods", namespace, selector="app=his")
            if any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])]


async def test_an_approved_restore_brings_the_application_back_with_its_data_into_a_mapped_namespace(
        kube, seeded, people, clock, fast_env, monkeypatch, standby_namespace):
    target = standby_namespace
    monkeypatch.setenv(PAIR, f"{kube.namespace}->{target}")
    wards_crd(kube.cluster)
    application(kube)
    volume = await kube.wait_for(lambda: claim_dir(kube, "his-data"), timeout=30)
    (volume / "chart.txt").write_text(CHART)

    async with kube.operator(clock=clock):
        kube.create(policy("his-data", claim="his-data", incremental=None, destinations=[
            {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/his-data"}}]))
        kube.create(objects_policy(selector={"matchLabels": APP}, includeKinds=list(KINDS)))
        for name in ("his-data", "his-objects"):  # the data first: the objects point names the newest before it
            run = await kube.run_cronjob(f"{name}-full")
            assert run.phase == "Succeeded", kube.job_log(run.job)
            await kube.wait_for(lambda: points(kube, name), timeout=20)
        [point] = points(kube, "his-objects")

        body = restore_body("his-back", point["metadata"]["name"], target={"namespace": target, "objects": {}})
        name = await request_and_approve(kube, people, body)
        await kube.wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout=180)
        status = stored(kube, name)["status"]
        job = restore_run.job_name(name)
        assert status["phase"] == "Succeeded", (status, kube.job_log(job))

        # every object is back in the mapped namespace, the claim with its data
        assert status["objects"]["counts"] == {"created": 6}, status["objects"]
        assert status["objects"]["claimsWithData"] == [f"{target}/his-data"]
        assert "6 created" in status["message"] and f"{target}/his-data" in status["message"]
        for resource, obj in (("apps/v1/deployments", "his-web"), ("v1/services", "his-web"),
                              ("v1/configmaps", "his-settings"), ("v1/secrets", "his-db"),
                              ("his.example.org/v1/wards", "icu"), ("v1/persistentvolumeclaims", "his-data")):
            assert kube.stored(resource, target, obj), f"{resource}/{obj} in {target}"
        assert kube.stored("his.example.org/v1/wards", target, "icu")["spec"] == {"beds": 12}

        # the Deployment's Pod starts there, reads the restored chart and becomes ready
        [pod] = await kube.wait_for(lambda: ready_pods(kube, target), timeout=60)
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "his-data"
        url = f"{kube.cluster.url}/api/v1/namespaces/{target}/pods/{pod['metadata']['name']}/log?container=web"
        with urllib.request.urlopen(url, context=kube.cluster.ssl_context(), timeout=10) as answer:
            assert CHART.strip() in answer.read().decode()

        # the writer's rights ended with the restore
        writer = objects_writer.writer_name(job)
        await kube.wait_for(lambda: not kube.stored("rbac.authorization.k8s.io/v1/roles", target, writer))
        assert not kube.stored("rbac.authorization.k8s.io/v1/rolebindings", target, writer)
        assert not kube.stored("v1/serviceaccounts", kube.namespace, writer)
