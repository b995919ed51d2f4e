"""What the objects Restore tests share: HIS (a claim with a chart, a Deployment whose Pod is ready only
once it has read it, its Service, settings, a password and a Ward), its backup as objects plus its
claim's data, what a site provides for a restore (the repository's volume and the key), and the
Pods that come back, read on whichever cluster runs them."""
from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from lifeline.devstack import live
from lifeline.devstack.install import service_account_token
from tests.backup.conftest import points, policy
from tests.backup.test_objects import objects_policy

PAIR = "LIFELINE_CROSS_NAMESPACE"
APP = {"app": "his"}
CHART = "bed 12: Zhang San, ward ICU\n"
KINDS = ("deployments.apps", "services", "configmaps", "secrets", "persistentvolumeclaims", "wards.his.example.org")
RBAC = "rbac.authorization.k8s.io"
BINDINGS = f"rolebindings.{RBAC}"
# what every object of application() is, by where it is served
RESOURCES = (("apps/v1/deployments", "his-web"), ("v1/services", "his-web"), ("v1/configmaps", "his-settings"),
             ("v1/secrets", "his-db"), ("his.example.org/v1/wards", "icu"), ("v1/persistentvolumeclaims", "his-data"))


def application(kube, *, binding: bool = False) -> None:
    """HIS in the test's namespace; with ``binding`` also a RoleBinding that lets its Pods' account view
    the namespace (a subject naming the namespace, which a mapped restore must change)."""
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
    if binding:
        kube.seed(f"{RBAC}/v1/rolebindings", {
            "metadata": {"name": "his-web-view", "labels": APP},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": kube.namespace}]})


async def backed_up(kube, kinds: tuple[str, ...] = KINDS) -> dict:
    """HIS's claim's data (a pvc policy) and then its objects backed up by real Jobs; the objects point.
    The operator must be running."""
    kube.create(policy("his-data", claim="his-data", incremental=None, destinations=[
        {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/his-data"}}]))
    kube.create(objects_policy(selector={"matchLabels": APP}, includeKinds=list(kinds)))
    for name in ("his-data", "his-objects"):  # the data first: the objects point names the newest before it
        run = await kube.run_cronjob(f"{name}-full")
        assert run.phase == "Succeeded", kube.job_log(run.job)
        await kube.wait_for(lambda: points(kube, name), timeout=20)
    [point] = points(kube, "his-objects")
    return point


def site_provides(cluster, namespace: str, repository: Path, key_text: str) -> None:
    """What a site gives a restore in ``namespace``, not the application: the repository's volume (a claim
    ``backup-local`` on the host directory ``repository``) and the key (Secret ``pacs-key``)."""
    live.host_claim(cluster, namespace, "backup-local", repository)
    live.create(cluster, f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pacs-key"}, "stringData": {"key": key_text}})


def restorer_kubeconfig(cluster, namespace: str, account: str, kinds: list[tuple[str, str]]) -> tuple[str, str]:
    """(user name, kubeconfig text, everything inline) of a ServiceAccount of ``cluster`` that may do in
    ``namespace`` what an objects restore with data does and nothing else: ``get`` and ``create`` the
    ``kinds`` ((group, plural) pairs), ``create`` and ``get`` Jobs (the claims' data), ``list`` Pods (a
    data Job's reason)."""
    groups: dict[str, list[str]] = {}
    for group, plural in kinds:
        groups.setdefault(group, []).append(plural)
    rules = [{"apiGroups": [g], "resources": sorted(p), "verbs": ["get", "create"]} for g, p in sorted(groups.items())]
    rules += [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
              {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    rbac = f"/apis/{RBAC}/v1/namespaces/{namespace}"
    live.create(cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": account}})
    live.create(cluster, f"{rbac}/roles", {"metadata": {"name": account}, "rules": rules})
    live.create(cluster, f"{rbac}/rolebindings", {
        "metadata": {"name": account}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
    token = service_account_token(cluster.request, namespace, account, seconds=3600)
    config = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster.name, "cluster": {
            "server": cluster.url, "certificate-authority-data": base64.b64encode(cluster.ca.read_bytes()).decode()}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": cluster.name, "context": {"cluster": cluster.name, "user": account,
                                                        "namespace": namespace}}],
        "current-context": cluster.name})
    return f"system:serviceaccount:{namespace}:{account}", config


def gone(kube, path: str) -> bool:
    """Whether the API server answers 404 for ``path`` (an object, or a group version no longer served)."""
    try:
        kube.request("GET", path)
    except urllib.error.HTTPError as exc:
        return exc.code == 404
    return False


def ready_pods(cluster, namespace: str) -> list[dict]:
    """HIS's Pods in ``namespace`` of ``cluster`` that are Ready."""
    query = urllib.parse.quote("app=his")
    pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={query}")["items"]
    return [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in (p.get("status") or {}).get("conditions") or [])]


def pod_log(cluster, namespace: str, pod: str, container: str = "web") -> str:
    """A container's log through the API server and the kubelet that runs the Pod (``kubectl logs``)."""
    url = f"{cluster.url}/api/v1/namespaces/{namespace}/pods/{pod}/log?container={container}"
    with urllib.request.urlopen(url, context=cluster.ssl_context(), timeout=10) as answer:
        return answer.read().decode()


__all__ = ["APP", "BINDINGS", "CHART", "KINDS", "PAIR", "RBAC", "RESOURCES", "application", "backed_up", "gone", "pod_log",
           "ready_pods", "restorer_kubeconfig", "site_provides"]
