"""Lifeline installed by ``helm install`` into the session's real control plane, and a tenant
namespace per test with the claims, the key Secret and the people's RoleBindings a policy needs.

The operator runs as the chart's Deployment (a process under the process kubelet) with the chart's
ServiceAccount: everything it does is judged by real RBAC and admission, and a verb missing from
the chart shows up as a 403 in its log (``forbidden_in_operator_log``).
"""
from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lifeline.devstack import install, live
from lifeline.keys import create_key_file
from tests.cluster_fixtures import external
from tests.realparts.ports import wait_for

KEY_SECRET = "tenant-key"
KEY_REF = f"secret://{KEY_SECRET}/key"
CLAIMS = ("data", "backup-onsite", "backup-offsite")


@pytest.fixture(scope="module")
def lifeline(cluster, chart):
    """The chart's operator Deployment scaled to one replica for this module's tests, then to zero again
    (on a given cluster, the operator as its owner runs it: left alone)."""
    if external(cluster):
        yield chart
        return
    install.scale(chart, 1)
    yield chart
    install.scale(chart, 0)
    wait_for(lambda: not cluster.request(
        "GET", f"/api/v1/namespaces/{chart.namespace}/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Doperator"
    )["items"], 60, "the operator's Pod to be gone", interval=0.2)


@pytest.fixture()
def team(cluster, lifeline, namespace, tmp_path):
    """A namespace with a local key Secret and the people's RoleBindings."""
    key = create_key_file(tmp_path / "kek").read_bytes()
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "metadata": {"name": KEY_SECRET}, "data": {"key": base64.b64encode(key).decode()}})
    install.bind_people(cluster.request, namespace, by_name=external(cluster))
    return namespace


@pytest.fixture()
def tenant(cluster, team):
    """:func:`team`'s namespace with three bound claims on this machine's host-path volumes."""
    namespace = team
    for claim in CLAIMS:
        cluster.request("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    if not external(cluster):  # elsewhere a claim may wait for its first Pod (WaitForFirstConsumer)
        for claim in CLAIMS:
            wait_for(lambda c=claim: claim_path(cluster, namespace, c), 30, f"claim {claim} to bind", interval=0.2)
    return namespace


def _busybox_job(cluster, namespace: str, claim: str, script: str) -> str:
    """Run ``script`` in a busybox Job with ``claim`` at /data; its name once it succeeded. A Pod, not a
    host path, so it works on any cluster (the process kubelet maps busybox to this machine's sh)."""
    job = cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": f"{claim}-files-"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}})
    name = job["metadata"]["name"]
    end = wait_for(lambda: live.job_end(live.get(cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")),
                   120, f"Job {name}", interval=0.2)
    assert end == "Succeeded", live.job_log(cluster, namespace, name, container="main")
    return name


def put_files(cluster, namespace: str, claim: str, files: dict[str, bytes]) -> None:
    """Write ``files`` (paths relative to the claim's root) into the claim, through a Pod."""
    script = " && ".join(f"mkdir -p \"$(dirname /data/{path})\" && echo {base64.b64encode(data).decode()} "
                         f"| base64 -d > /data/{path}" for path, data in files.items())
    _busybox_job(cluster, namespace, claim, script)


def read_file(cluster, kubectl, namespace: str, claim: str, path: str) -> str:
    """A file of the claim, read by a Pod and returned through its log (``kubectl logs``)."""
    job = _busybox_job(cluster, namespace, claim, f"cat /data/{path}")
    return kubectl("logs", "-n", namespace, f"job/{job}")


def claim_path(cluster, namespace: str, claim: str) -> Path | None:
    """The host directory behind a bound claim (its host-path PersistentVolume)."""
    pvc = cluster.request("GET", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    volume = pvc["spec"].get("volumeName")
    if not volume or pvc.get("status", {}).get("phase") != "Bound":
        return None
    path = Path(cluster.request("GET", f"/api/v1/persistentvolumes/{volume}")["spec"]["hostPath"]["path"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def policy(name: str = "files", *, incremental: str | None = None, **spec) -> dict:
    schedule = {"full": "0 1 * * *", **({"incremental": incremental} if incremental else {})}
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
            "spec": {"tier": "B", "objectives": {"rpo": "15m"}, "source": {"pvc": {"claimName": "data"}},
                     "schedule": schedule,
                     "destinations": [
                         {"name": "on-site", "filesystem": {"claimName": "backup-onsite", "path": "/repo"}},
                         {"name": "off-site", "offSite": True,
                          "filesystem": {"claimName": "backup-offsite", "path": "/repo"}}],
                     "encryption": {"keyRef": KEY_REF}, **spec}}


def lifeline_cli(cluster, *args: str, user: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The ``lifeline`` CLI in a subprocess, as a person with the admin kubeconfig (or ``--context user``)."""
    argv = [sys.executable, "-m", "lifeline.cli", *args] + (["--context", user] if user else [])
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def forbidden_in_operator_log(kubectl, lifeline) -> list[str]:
    logs = kubectl("logs", "-n", lifeline.namespace, f"deploy/{lifeline.name}-operator", "--tail=-1")
    # RBAC's refusals only ("User X cannot get resource Y"): a namespace being deleted refuses too.
    return [line for line in logs.splitlines() if "403" in line and "cannot " in line and "resource" in line
            and "admission webhook" not in line]
