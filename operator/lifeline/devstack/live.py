"""What `lifeline dev up` and its scenes do to a live cluster, the way a person or a controller would.

Small verbs over :meth:`lifeline.devstack.cluster.Cluster.request`: read an object (None when it
is missing), wait for a condition by polling the API (the demo runs on real time), put a host
directory behind a claim (a PersistentVolume bound to the claim by name, as an admin pre-binds
one), and start a CronJob's Job now as ``kubectl create job --from=cronjob/NAME`` does. Nothing
here runs a Job: the real Job controller, scheduler and process kubelet do.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from lifeline.api import BY_KIND

from .install import service_account_token
from .snapshotter import DRIVER as CSI_DRIVER, STORAGE_CLASS as CSI_STORAGE_CLASS


class Timeout(TimeoutError):
    pass


def get(cluster, path: str) -> dict | None:
    try:
        return cluster.request("GET", path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def create(cluster, path: str, body: dict) -> dict | None:
    """POST, and leave an object that exists already as it is (409)."""
    try:
        return cluster.request("POST", path, body)
    except urllib.error.HTTPError as exc:
        if exc.code == 409:
            return None
        raise


def lifeline_path(kind: str, namespace: str, name: str | None = None) -> str:
    info = BY_KIND[kind]
    out = f"/apis/{info.group}/{info.version}/namespaces/{namespace}/{info.plural}"
    return f"{out}/{name}" if name else out


def stored(cluster, kind: str, namespace: str, name: str) -> dict | None:
    return get(cluster, lifeline_path(kind, namespace, name))


async def until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` (blocking calls run in a thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"waited {timeout:g}s for {what}")
        await asyncio.sleep(interval)


def namespace(cluster, name: str, labels: dict | None = None) -> None:
    create(cluster, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": name, "labels": labels or {}}})


def host_claim(cluster, ns: str, claim: str, path: Path, size: str = "10Gi", *, csi: bool = False) -> None:
    """A claim whose data is the host directory ``path``: a PersistentVolume pre-bound to it by name,
    a host-path one, or with ``csi`` one of the stand-in CSI driver (which can be snapshotted)."""
    path.mkdir(parents=True, exist_ok=True)
    volume = f"{ns}-{claim}"
    source = {"csi": {"driver": CSI_DRIVER, "volumeHandle": str(path)}} if csi else {"hostPath": {"path": str(path)}}
    storage_class = CSI_STORAGE_CLASS if csi else ""
    create(cluster, "/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
                 "claimRef": {"namespace": ns, "name": claim}, **source}})
    create(cluster, f"/api/v1/namespaces/{ns}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class, "volumeName": volume,
                 "resources": {"requests": {"storage": size}}}})


def remote_site_kubeconfig(site, namespace: str, account: str = "lifeline-failover",
                           resources: tuple[str, ...] = ("statefulsets", "deployments")) -> str:
    """A kubeconfig for another site, everything inline (what a Secret can carry): a ServiceAccount
    of ``site`` that may get and patch ``resources`` (apps) in ``namespace`` and nothing else, and a
    token of it. Least privilege for an operator that fences and promotes workloads there."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    create(site, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": account}})
    create(site, f"{rbac}/roles", {"metadata": {"name": account}, "rules": [
        {"apiGroups": ["apps"], "resources": list(resources), "verbs": ["get", "patch"]}]})
    create(site, f"{rbac}/rolebindings", {
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})
    token = service_account_token(site.request, namespace, account)
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": site.name, "cluster": {
            "server": site.url, "certificate-authority-data": base64.b64encode(site.ca.read_bytes()).decode()}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": site.name, "context": {"cluster": site.name, "user": account, "namespace": namespace}}],
        "current-context": site.name})


def job_end(job: dict | None) -> str | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return "Succeeded" if c["type"] == "Complete" else "Failed"
    return None


def start_cronjob(cluster, ns: str, cronjob: str) -> str:
    """``kubectl create job --from=cronjob/<cronjob>``: a Job from its template, owned by it; its name."""
    cj = cluster.request("GET", f"/apis/batch/v1/namespaces/{ns}/cronjobs/{cronjob}")
    template = cj["spec"]["jobTemplate"]
    meta = template.get("metadata") or {}
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"generateName": f"{cronjob}-manual-", "labels": dict(meta.get("labels") or {}),
                         "annotations": {**(meta.get("annotations") or {}),
                                         "cronjob.kubernetes.io/instantiate": "manual"},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob,
                                              "uid": cj["metadata"]["uid"], "controller": True}]},
            "spec": template["spec"]}
    return cluster.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", body)["metadata"]["name"]


async def run_cronjob(cluster, ns: str, cronjob: str, timeout: float = 300) -> tuple[str, str, float]:
    """Start a CronJob's Job now and wait for its end: (job name, Succeeded|Failed, seconds)."""
    began = time.monotonic()
    name = await asyncio.to_thread(start_cronjob, cluster, ns, cronjob)
    phase = await until(lambda: job_end(get(cluster, f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")),
                        timeout, f"Job {ns}/{name}")
    return name, phase, time.monotonic() - began


def job_log(cluster, ns: str, job: str, container: str = "agent", tail: int = 60) -> str:
    """The end of a Job's pod's log, through the API server and the kubelet (``kubectl logs``)."""
    pods = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{job}")["items"]
    if not pods:
        return "(no pod)"
    name = pods[-1]["metadata"]["name"]
    url = f"{cluster.url}/api/v1/namespaces/{ns}/pods/{name}/log?container={container}&tailLines={tail}"
    try:
        with urllib.request.urlopen(url, context=cluster.ssl_context(), timeout=10) as resp:
            return resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read() or b"{}").get("message", str(exc))


__all__ = ["Timeout", "create", "get", "host_claim", "job_end", "job_log", "lifeline_path", "namespace",
           "remote_site_kubeconfig", "run_cronjob", "start_cronjob", "stored", "until"]
