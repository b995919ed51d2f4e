"""Resources sources: a namespace's Kubernetes objects backed up as documents, on the real control plane.

The operator discovers what the API server serves, binds the policy's own ServiceAccount to get and
list exactly the selected kinds in the policy's namespace, and the backup Job (run by the real Job
controller and the process kubelet) writes each object out and stores the tree like a volume."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error

import pytest

from lifeline.devstack import live
from lifeline.devstack.children import wait_for

from .conftest import points, policy, settled
from .test_snapshots import restore

WARDS_CRD = "wards.his.example.org"


def wards_crd(cluster) -> None:
    """A custom resource kind of the application's own (served once per session cluster)."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    live.create(cluster, base, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": WARDS_CRD},
        "spec": {"group": "his.example.org", "scope": "Namespaced",
                 "names": {"plural": "wards", "singular": "ward", "kind": "Ward", "listKind": "WardList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": open_object}}}}]}})
    wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in
             (cluster.request("GET", f"{base}/{WARDS_CRD}").get("status") or {}).get("conditions") or []),
             30, f"CRD {WARDS_CRD} to be established", interval=0.1)


def application(kube) -> None:
    """HIS's objects: a Deployment (no replicas: its objects matter here, not its pods), its Service,
    settings, a database password and a Ward."""
    labels = {"app": "his"}
    kube.seed("apps/v1/deployments", {"metadata": {"name": "his-web", "labels": labels}, "spec": {
        "replicas": 0, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "his:1"}]}}}})
    kube.seed("v1/services", {"metadata": {"name": "his-web", "labels": labels},
                              "spec": {"selector": labels, "ports": [{"port": 80}]}})
    kube.seed("v1/configmaps", {"metadata": {"name": "his-settings", "labels": labels}, "data": {"ward": "icu"}})
    kube.seed("v1/secrets", {"metadata": {"name": "his-db", "labels": labels}, "stringData": {"password": "s3cret"}})
    kube.seed("his.example.org/v1/wards", {"apiVersion": "his.example.org/v1", "kind": "Ward",
                                           "metadata": {"name": "icu", "labels": labels}, "spec": {"beds": 12}})
    kube.seed("v1/configmaps", {"metadata": {"name": "unrelated"}, "data": {"x": "y"}})


def objects_policy(**source) -> dict:
    body = policy("his-objects", source={"resources": source}, incremental=None)
    body["spec"]["destinations"] = [{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/objects"}}]
    return body


def may(kube, user: str, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    review = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                                      "resource": resource}}})
    return bool(review["status"].get("allowed"))


@pytest.fixture
def his(kube, seeded):
    wards_crd(kube.cluster)
    application(kube)


async def test_a_namespaces_objects_are_backed_up_as_documents_by_an_account_that_reads_only_them(
        kube, his, clock, key_text, tmp_path):
    async with kube.operator(clock=clock):
        kube.create(objects_policy(selector={"matchLabels": {"app": "his"}}, excludeKinds=["pods"]))
        status = (await settled(kube, "his-objects", generation=1))["status"]
        source = next(c for c in status["conditions"] if c["type"] == "SourceAvailable")
        assert source["status"] == "True" and source["reason"] == "KindsSelected", source

        role = await kube.wait_for(lambda: kube.stored("rbac.authorization.k8s.io/v1/roles", None, "his-objects-objects"))
        granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
        assert {("", "configmaps"), ("", "secrets"), ("", "services"), ("apps", "deployments"),
                ("his.example.org", "wards")} <= granted
        assert not granted & {("", "events"), ("", "endpoints"), ("coordination.k8s.io", "leases"), ("", "pods"),
                              ("dr.lifeline.io", "recoverypoints")}
        assert all(rule["verbs"] == ["get", "list"] for rule in role["rules"])
        reader = f"system:serviceaccount:{kube.namespace}:his-objects-objects"
        assert may(kube, reader, "list", "secrets", kube.namespace)
        assert not may(kube, reader, "list", "secrets", "default"), "another namespace's Secrets stay out of reach"
        assert not may(kube, reader, "list", "pods", kube.namespace), "an excluded kind is not granted"
        assert not may(kube, reader, "create", "configmaps", kube.namespace), "read only"
        assert not may(kube, reader, "list", "customresourcedefinitions", "", "apiextensions.k8s.io")

        run = await kube.run_cronjob("his-objects-full")
        assert run.phase == "Succeeded", kube.job_log(run.job)
        [rp] = await kube.wait_for(lambda: points(kube, "his-objects"), timeout=20)

    restored = tmp_path / "restored"
    restore(rp["spec"]["copies"][0], key_text, tmp_path, restored)
    copy, key = rp["spec"]["copies"][0], tmp_path / "restore.key"  # restore() left the key there
    listed = subprocess.run([sys.executable, "-m", "lifeline.agent", "ls", copy["snapshotId"], "--repo",
                             copy["repository"], "--key", f"file://{key}"], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    assert "wards.his.example.org/icu.json" in listed and "secrets/his-db.json" in listed, listed
    stored = {str(p.relative_to(restored)) for p in restored.rglob("*.json")}
    assert stored == {"deployments.apps/his-web.json", "services/his-web.json", "configmaps/his-settings.json",
                      "secrets/his-db.json", "wards.his.example.org/icu.json"}, "the selector's objects, nothing else"
    deployment = json.loads((restored / "deployments.apps/his-web.json").read_text())
    assert deployment["apiVersion"] == "apps/v1" and deployment["kind"] == "Deployment"
    assert not {"uid", "resourceVersion", "managedFields", "creationTimestamp"} & deployment["metadata"].keys()
    assert "status" not in deployment and deployment["spec"]["replicas"] == 0
    ward = json.loads((restored / "wards.his.example.org/icu.json").read_text())
    assert ward["apiVersion"] == "his.example.org/v1" and ward["spec"] == {"beds": 12}


async def test_the_account_follows_the_policy_and_a_policy_cannot_run_its_jobs_as_another(kube, his, clock):
    async with kube.operator(clock=clock):
        kube.create(objects_policy(includeKinds=["configmaps", "Ward"]))
        await settled(kube, "his-objects", generation=1)
        role = await kube.wait_for(lambda: kube.stored("rbac.authorization.k8s.io/v1/roles", None, "his-objects-objects"))
        assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
                                 {"apiGroups": ["his.example.org"], "resources": ["wards"], "verbs": ["get", "list"]}]
        cronjob = kube.stored("batch/v1/cronjobs", None, "his-objects-full")
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "his-objects-objects" and pod["automountServiceAccountToken"] is True

        # a kind the API server does not serve is named in the status
        kube.patch("backuppolicies", "his-objects", {"spec": {"source": {"resources": {"includeKinds": ["beds"]}}}})
        status = (await settled(kube, "his-objects", generation=2))["status"]
        source = next(c for c in status["conditions"] if c["type"] == "SourceAvailable")
        assert source["status"] == "False" and source["reason"] == "KindNotServed" and "beds" in source["message"]

        # the Jobs' account is the reader, never one the tenant names (the validating webhook says so)
        body = objects_policy()
        body["metadata"]["name"] = "as-admin"
        body["spec"]["pod"] = {"serviceAccountName": "namespace-admin"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            kube.create(body)
        assert "leave pod.serviceAccountName out" in str(refused.value)


async def test_someone_who_may_write_policies_but_not_read_secrets_cannot_back_them_up(kube, his, clock):
    """The attack: a tenant allowed BackupPolicies but not Secrets tries to copy the Secrets out
    through a backup (the point, restored into a volume they read, would hold them)."""
    kube.seed("rbac.authorization.k8s.io/v1/roles", {"metadata": {"name": "policy-writer"}, "rules": [
        {"apiGroups": ["dr.lifeline.io"], "resources": ["backuppolicies"], "verbs": ["get", "list", "create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    kube.seed("rbac.authorization.k8s.io/v1/rolebindings", {
        "metadata": {"name": "dave-policies"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "policy-writer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dave"}]})
    async with kube.operator(clock=clock):
        with pytest.raises(urllib.error.HTTPError) as refused:
            kube.create(objects_policy(), user="dave")
        assert refused.value.code == 403
        denied = str(refused.value).split("dave may not list ")[1].split(f" in {kube.namespace}")[0].split(", ")
        assert "secrets" in denied and "deployments.apps" in denied and "configmaps" not in denied, denied
        assert kube.stored("backuppolicies", None, "his-objects") is None
        # what dave may read, dave may back up
        kube.create(objects_policy(includeKinds=["configmaps"]), user="dave")
        await settled(kube, "his-objects", generation=1)


async def test_a_role_of_that_name_made_by_someone_else_is_never_bound_and_no_job_runs(kube, his, clock):
    """The attack: a Role ``<policy>-objects`` made beforehand, with more than reads, for the operator to
    bind to the account its Jobs (and whatever runs in them) use."""
    kube.seed("rbac.authorization.k8s.io/v1/roles", {"metadata": {"name": "his-objects-objects"}, "rules": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
    async with kube.operator(clock=clock):
        kube.create(objects_policy(includeKinds=["configmaps"]))
        status = (await settled(kube, "his-objects", generation=1))["status"]
        source = next(c for c in status["conditions"] if c["type"] == "SourceAvailable")
        assert source["status"] == "False" and source["reason"] == "ReaderNotReady", source
        assert "Role named his-objects-objects already exists and does not belong to this policy" in source["message"]
    assert kube.stored("rbac.authorization.k8s.io/v1/rolebindings", None, "his-objects-objects") is None
    assert kube.stored("batch/v1/cronjobs", None, "his-objects-full") is None, "no Job may run as that account"


async def test_cluster_scoped_dependencies_only_where_the_admin_allowed_them(kube, his, clock, key_text, tmp_path):
    """A tenant's policy asks for the cluster-scoped objects its namespace depends on: nothing runs until
    the admin binds lifeline-objects-cluster-reader to its reader; then the point holds the Ward CRD,
    the claim's StorageClass and its PersistentVolume."""
    kube.seed("v1/persistentvolumeclaims", {"metadata": {"name": "his-data", "labels": {"app": "his"}}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}})
    reader = f"system:serviceaccount:{kube.namespace}:his-objects-objects"
    async with kube.operator(clock=clock):
        kube.create(objects_policy(selector={"matchLabels": {"app": "his"}}, clusterDependencies=True,
                                   includeKinds=["wards", "persistentvolumeclaims"]))
        status = (await settled(kube, "his-objects", generation=1))["status"]
        source = next(c for c in status["conditions"] if c["type"] == "SourceAvailable")
        assert source["status"] == "False" and source["reason"] == "ClusterObjectsNotAllowed", source
        assert "--clusterrole lifeline-objects-cluster-reader" in source["message"]
        assert kube.stored("batch/v1/cronjobs", None, "his-objects-full") is None, "no Job until the admin allows it"
        assert not may(kube, reader, "get", "customresourcedefinitions", "", "apiextensions.k8s.io")

        kube.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": f"{kube.namespace}-his-objects-cluster"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "lifeline-objects-cluster-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "his-objects-objects", "namespace": kube.namespace}]})
        try:
            await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "his-objects-full"), timeout=30)
            assert not may(kube, reader, "list", "secrets", "default"), "reads of the cluster's objects, not Secrets"
            run = await kube.run_cronjob("his-objects-full")
            assert run.phase == "Succeeded", kube.job_log(run.job)
            [rp] = await kube.wait_for(lambda: points(kube, "his-objects"), timeout=20)
        finally:
            kube.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{kube.namespace}-his-objects-cluster")
    restored = tmp_path / "restored"
    restore(rp["spec"]["copies"][0], key_text, tmp_path, restored)
    volume = kube.stored("v1/persistentvolumeclaims", None, "his-data")["spec"]["volumeName"]
    stored = {str(p.relative_to(restored)) for p in restored.rglob("*.json")}
    assert stored == {"wards.his.example.org/icu.json", "persistentvolumeclaims/his-data.json",
                      f"customresourcedefinitions.apiextensions.k8s.io/{WARDS_CRD}.json",
                      "storageclasses.storage.k8s.io/standard.json", f"persistentvolumes/{volume}.json"}, stored
    crd = json.loads((restored / f"customresourcedefinitions.apiextensions.k8s.io/{WARDS_CRD}.json").read_text())
    assert crd["kind"] == "CustomResourceDefinition" and "status" not in crd and "uid" not in crd["metadata"]
