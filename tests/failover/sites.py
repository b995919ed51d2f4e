"""Verbs the failover tests need of real clusters that :class:`tests.live_kube.LiveKube` lacks.

Each could move to ``LiveKube`` (or :mod:`lifeline.devstack.live`) if another area needs it:

- :func:`remote_identity`: what an operator in another cluster is given to reach a site: a
  ServiceAccount of that site that may only read and scale its namespace's workloads, as a
  kubeconfig with its token and the site's CA inline (a Secret cannot carry file paths);
- :func:`container_pid` and :func:`signal_pod`: the process behind a Pod's container on the process
  kubelet, for an outage of one server (SIGSTOP: it hangs; SIGCONT: it answers again);
- :func:`seed_unvalidated`: a spec the operator refuses, stored past the chart's validating webhook
  (set to ``failurePolicy: Ignore`` for the moment, while no operator serves it): how an object
  written before a rule existed looks to the operator;
- :func:`ready_replicas` and :func:`wait_ready` over a workload's status, blocking (fixtures).
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error


from lifeline.devstack import live
from lifeline.devstack.children import wait_for
from tests.live_kube import Resource

WORKLOAD_PLURALS = {"StatefulSet": "statefulsets", "Deployment": "deployments"}
REMOTE_SA = "lifeline-failover"


def workload_path(namespace: str, kind: str, name: str = "") -> str:
    path = f"/apis/apps/v1/namespaces/{namespace}/{WORKLOAD_PLURALS[kind]}"
    return f"{path}/{name}" if name else path


def remote_identity(site, namespace: str) -> tuple[str, str]:
    """(user name, kubeconfig text) of a ServiceAccount in ``site`` that may get and patch the
    StatefulSets and Deployments of ``namespace`` and nothing else: least privilege for a remote site."""
    return f"system:serviceaccount:{namespace}:{REMOTE_SA}", live.remote_site_kubeconfig(site, namespace, REMOTE_SA)


def ready_replicas(cluster, namespace: str, kind: str, name: str) -> int | None:
    """Ready replicas of a workload whose controller has seen its latest spec (None if it has not)."""
    obj = live.get(cluster, workload_path(namespace, kind, name)) or {}
    status = obj.get("status") or {}
    if (status.get("observedGeneration") or 0) < (obj.get("metadata") or {}).get("generation", 1):
        return None
    return status.get("readyReplicas") or 0


def wait_ready(cluster, namespace: str, kind: str, name: str, replicas: int, timeout: float = 60) -> None:
    wait_for(lambda: ready_replicas(cluster, namespace, kind, name) == replicas, timeout,
             f"{kind} {namespace}/{name} to have {replicas} ready replica(s)", interval=0.1)


def container_pid(cluster, namespace: str, pod: str) -> int:
    """The process of the Pod's (first) container: the process kubelet reports ``process://PID``."""
    obj = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
    running = [c for c in (obj.get("status") or {}).get("containerStatuses") or [] if "running" in c["state"]]
    if not running:
        raise LookupError(f"pod {namespace}/{pod} has no running container")
    return int(running[0]["containerID"].removeprefix("process://"))


HANG, RESUME = signal.SIGSTOP, signal.SIGCONT


def signal_pod(pid: int, sig: int) -> None:
    """Signal a container's process group (the process kubelet starts each container in its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def stop_pod(pid: int, timeout: float = 10) -> None:
    """SIGSTOP a container's process group and wait until its process is stopped (state ``T``).

    kill() returns before the target stops; a hang that silently missed (the process gone, its
    Pod's status not yet telling) would let a probe pass where the test means it to time out.
    """
    os.killpg(pid, HANG)  # ProcessLookupError: the container is not the one the test meant to hang
    wait_for(lambda: process_state(pid) == "T", timeout, f"process {pid} to stop", interval=0.01)


def process_state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat (R, S, D, T, Z...); after the command's name, which may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def refusal(exc: urllib.error.HTTPError) -> str:
    """What the API server said when it refused a request (LiveKube puts it in the message, a
    bare ``Cluster.request`` leaves it in the body)."""
    return f"{exc.msg} {(exc.read() or b'').decode(errors='replace')}"


def seed_unvalidated(kube, *bodies: dict, timeout: float = 30) -> list[dict]:
    """Create ``bodies`` past the chart's admission webhooks, as if stored before their rules existed.

    The webhooks (validating, and the mutating ones that record and seal) get ``failurePolicy: Ignore``
    (a value the chart offers) for the moment, which lets a spec in only while no operator serves them;
    then the policies they had (``Fail``) again, and this waits until the API server applies them (a
    dry-run create is refused by the webhook), so no later request meets the open door.
    """
    base = "/apis/admissionregistration.k8s.io/v1"
    paths = [f"{base}/validatingwebhookconfigurations/{kube.release.name}-validate",
             f"{base}/mutatingwebhookconfigurations/{kube.release.name}-restore-approvals"]
    before = {path: [w.get("failurePolicy", "Fail") for w in kube.request("GET", path)["webhooks"]] for path in paths}

    def policy(values: dict[str, list[str]]) -> None:
        for path, each in values.items():
            kube.request("PATCH", path, [{"op": "replace", "path": f"/webhooks/{i}/failurePolicy", "value": value}
                                         for i, value in enumerate(each)], content_type="application/json-patch+json")

    def create(body: dict, dry_run: bool = False):
        """The stored object; None when the webhook refused (or failed) it; raises on any other refusal."""
        try:
            if dry_run:
                return kube.request("POST", _collection(body, kube.namespace) + "?dryRun=All", body)
            return kube.create(body)
        except urllib.error.HTTPError as exc:
            text = refusal(exc)
            if "webhook" not in text:
                raise AssertionError(f"refused, and not by the webhook: {text}") from None
            return None

    def until(predicate, what: str):
        """Poll ``predicate``; unlike ``wait_for``, an unexpected refusal ends the wait at once."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g}s for {what}")
            time.sleep(0.1)  # the API server applies a webhook configuration change within moments
        return value

    policy({path: ["Ignore"] * len(each) for path, each in before.items()})
    try:
        stored = [until(lambda b=body: create(b), f"{body['metadata']['name']} to get past the webhook")
                  for body in bodies]
    finally:
        policy(before)
        if set(before[paths[0]]) == {"Fail"}:
            probe = {**bodies[0], "metadata": {"name": f"{bodies[0]['metadata']['name']}-probe"}}
            until(lambda: create(probe, dry_run=True) is None, "the webhook to refuse again")
    return stored


def _collection(body: dict, namespace: str) -> str:
    return Resource.of(body["kind"]).path(namespace)


__all__ = ["HANG", "RESUME", "container_pid", "ready_replicas",
           "refusal", "remote_identity", "seed_unvalidated", "signal_pod", "wait_for", "wait_ready", "workload_path"]
