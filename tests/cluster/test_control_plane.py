"""The local control plane is real Kubernetes: its version, RBAC, controllers and the process kubelet."""
from __future__ import annotations

import json
import re
import urllib.error
from pathlib import Path

import pytest

from lifeline.devstack import live
from lifeline.devstack.cluster import PEOPLE, Cluster
from lifeline.devstack.cluster_version import KUBE_VERSION
from tests.cluster_fixtures import external
from tests.realparts.ports import wait_for

pytestmark = pytest.mark.slow


def test_version_is_the_pinned_release(cluster, kubectl):
    assert cluster.request("GET", "/version")["gitVersion"] == KUBE_VERSION
    out = json.loads(kubectl("version", "-o", "json"))
    assert out["serverVersion"]["gitVersion"] == KUBE_VERSION


def test_node_is_ready(cluster, kubectl):
    rows = kubectl("get", "nodes", "--no-headers").split()
    assert rows[0] == cluster.node and rows[1] == "Ready"


@pytest.mark.any_cluster
def test_people_are_judged_by_real_rbac(cluster, kubectl, namespace):
    assert {"alice", "bob", "carol", "dave"} <= set(PEOPLE)
    assert kubectl("auth", "can-i", "create", "pods", "-n", namespace, user="alice", check=False).startswith("no")
    kubectl("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", namespace)
    assert wait_for(lambda: kubectl("auth", "can-i", "create", "pods", "-n", namespace, user="alice",
                                    check=False).startswith("yes"), 10, "alice's binding to take effect")
    denied = kubectl("get", "pods", "-n", "kube-system", user="alice", check=False)
    assert "Forbidden" in denied


def _job(name: str, script: str, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, **spec, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script],
                                "env": [{"name": "WHO", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                "terminationMessagePath": "/dev/termination-log"}]}}}}


def _wait_job(cluster: Cluster, namespace: str, name: str, timeout: float = 60) -> dict:
    def done():
        job = cluster.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        conds = {c["type"]: c["status"] for c in (job.get("status") or {}).get("conditions") or []}
        return job if conds.get("Complete") == "True" or conds.get("Failed") == "True" else None
    return wait_for(done, timeout, f"job {name} to finish", interval=0.2)


def test_a_job_runs_as_a_process_and_reports_like_a_kubelet(cluster, kubectl, namespace):
    cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                    _job("hello", 'echo "hello from $WHO"; echo done > /dev/termination-log'))
    job = _wait_job(cluster, namespace, "hello")
    assert job["status"].get("succeeded") == 1
    pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Dhello")["items"]
    assert len(pods) == 1
    state = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0 and state["message"] == "done\n"
    logs = kubectl("logs", "-n", namespace, pods[0]["metadata"]["name"])
    assert logs.strip() == f"hello from {pods[0]['metadata']['name']}"


def test_a_failing_job_fails_with_the_exit_code(cluster, namespace):
    cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", _job("boom", "exit 3"))
    job = _wait_job(cluster, namespace, "boom")
    assert job["status"].get("failed") == 1
    pod = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Dboom")["items"][0]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


# Nothing of a container outlives it: a container is a local process group here, so a child it
# started (an agent's worker, a shell's background job) dies with it. Each Job below leaves a child
# that records its pid and would sleep for minutes.

def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _child(pidfile: Path) -> int:
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the child's pid", interval=0.05)
    return int(pidfile.read_text())


@pytest.mark.parametrize("then,outcome", [("exit 0", "succeeded"), ("kill -9 $$", "failed")])
def test_a_child_dies_with_its_container(cluster, namespace, tmp_path, then, outcome):
    pidfile = tmp_path / "child.pid"
    cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                    _job("leaves-a-child", f"sleep 300 & echo $! > {pidfile}; {then}"))
    job = _wait_job(cluster, namespace, "leaves-a-child")
    assert job["status"].get(outcome) == 1
    child = _child(pidfile)
    wait_for(lambda: not _alive(child), 15, "the child to be killed with its container", interval=0.05)


def test_past_its_deadline_a_job_is_killed_with_its_children(cluster, namespace, tmp_path):
    pidfile = tmp_path / "child.pid"
    cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs",
                    _job("too-slow", f"sleep 300 & echo $! > {pidfile}; wait", activeDeadlineSeconds=2))
    child = _child(pidfile)
    job = _wait_job(cluster, namespace, "too-slow")
    [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "DeadlineExceeded"
    wait_for(lambda: not _alive(child), 30, "the child to be killed with its container", interval=0.05)


def test_an_unmapped_image_fails_the_pod_with_a_reason(cluster, namespace):
    body = _job("nope", "true")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "example.org/unknown:1"
    cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body)
    _wait_job(cluster, namespace, "nope")
    pod = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Dnope")["items"][0]
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "ImageNotMapped" and "example.org/unknown:1" in pod["status"]["message"]


@pytest.mark.any_cluster
def test_the_garbage_collector_removes_children_of_a_deleted_owner(cluster, namespace):
    owner = cluster.request("POST", f"/api/v1/namespaces/{namespace}/configmaps",
                            {"metadata": {"name": "owner"}, "data": {}})
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", {
        "metadata": {"name": "child", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}]},
        "data": {}})
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/owner")
    wait_for(lambda: live.get(cluster, f"/api/v1/namespaces/{namespace}/configmaps/child") is None, 30,
             "the garbage collector to delete the child")


def test_a_deployment_becomes_ready_and_deleting_it_stops_its_process(cluster, namespace):
    cluster.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", {
        "metadata": {"name": "sleeper"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "sleeper"}},
                 "template": {"metadata": {"labels": {"app": "sleeper"}}, "spec": {
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                     "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]}}}})
    wait_for(lambda: (cluster.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/sleeper")
                      .get("status") or {}).get("readyReplicas") == 1, 60, "the deployment to be ready", interval=0.2)
    pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dsleeper")["items"]
    [ready] = [c for p in pods for c in p["status"].get("containerStatuses") or [] if c.get("ready")]
    pid = int(re.sub(r"\D", "", ready["containerID"]))
    cluster.request("DELETE", f"/apis/apps/v1/namespaces/{namespace}/deployments/sleeper")

    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    wait_for(gone, 60, "the container's process to end", interval=0.2)


def test_exec_reaches_the_container(cluster, kubectl, namespace):
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", {
        "metadata": {"name": "shell"},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                 "env": [{"name": "GREETING", "value": "hi"}]}]}})
    wait_for(lambda: (cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/shell").get("status") or {})
             .get("phase") == "Running", 60, "the pod to run", interval=0.2)
    out = kubectl("exec", "-n", namespace, "shell", "--", "sh", "-c", 'echo "$GREETING"; exit 0')
    assert out.strip() == "hi"


@pytest.mark.any_cluster
def test_people_impersonated_through_a_kubeconfig_act_as_themselves(cluster, namespace, tmp_path):
    """How the suite meets a cluster it did not start (tests/any_cluster.py): the admin's kubeconfig,
    a user per person with ``as:``. kubectl honours ``as``; so must the CLI's client, or
    ``lifeline --context carol`` would act with the admin's rights."""
    import asyncio

    from lifeline.kube import Kube
    from tests.any_cluster import ExternalCluster

    given = ExternalCluster(cluster.source if external(cluster) else cluster.kubeconfig, tmp_path)
    assert asyncio.run(Kube.connect(given.kubeconfig_for("carol")).whoami()) == "carol"
    assert asyncio.run(Kube.connect(given.kubeconfig, context="bob").whoami()) == "bob"
    with pytest.raises(urllib.error.HTTPError) as refused:
        given.request("GET", f"/api/v1/namespaces/{namespace}/secrets", user="dave")
    assert refused.value.code == 403
    assert given.request("GET", f"/api/v1/namespaces/{namespace}/secrets")["kind"] == "SecretList"
