"""An application drill: a resources policy's point put back into the sandbox, started there, verified. Pure.

A RestoreDrill of a policy with ``source.resources`` rehearses bringing the *application* back, not
only its data. The run restores the point into the sandbox the way a Restore with ``target.objects``
does (:mod:`.restore_objects`, :mod:`.objects_writer`; the agent's
:mod:`lifeline.agent.objects_put_back`), with the policy's namespace mapped to the sandbox, and the
claims it creates given the data of the pvc policies of the same namespace (the newest point at or
before the objects point) before any workload is written. Then the run waits until every
Deployment and StatefulSet restored there has all its replicas ready (:func:`startup`), and then
the drill's verify command runs in the sandbox against the running application. The measured time
is the restore, the start-up (from the workloads' creation to the last one ready) and the
verification, or the wall time from the restore Job's start to the verification's end when longer.

What this module adds to the sandbox (:class:`~lifeline.planning.drill_sandbox.Additions`):

- the **writer**: the restore Job runs in the sandbox as ``restore-writer``, a ServiceAccount
  whose Role there may get and create the kinds the policy selects (less those left out), plus the
  data Jobs and their Pods when claims get data (:func:`~lifeline.planning.objects_writer.in_one_namespace`);
  its RoleBinding is deleted when the restore Job ends;
- copies of the Secrets and mirrors of the repository claims that the *data* points need, beside
  the objects point's own, and their egress ports;
- a LimitRange giving containers without requests the sandbox's defaults (the sandbox's quota
  refuses a Pod that names none, and an application's manifests often name none);
- NetworkPolicies: the restore Job's pod may reach the API server (``LIFELINE_API_SERVER_PORTS``,
  443 and 6443 by default), and every pod of the sandbox may reach the other pods of the sandbox and
  DNS, so the application's parts find each other; nothing else leaves the sandbox, as in every drill;
- what is never restored there (:data:`LEAVE_OUT`, and the drill's ``spec.restore.leaveOut``), and
  Services kept inside the cluster (:mod:`lifeline.agent.objects_sandbox`).

:func:`startup` reads the restored workloads and their pods and says whether the application is
up, still starting, or broken, with the reason taken from the pods (a container waiting with
``ImageNotMapped`` / ``CreateContainerConfigError: secret "x" not found``, a failing readiness
probe, ...) and the workload named.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Literal

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.common import parse_duration
from lifeline.api.restoredrill import RestoreDrillSpec
from lifeline.clock import parse_time, rfc3339
from lifeline.labels import ANN_DRILL, LABEL_APP_COMPONENT, LABEL_DRILL, LABEL_SANDBOX
from lifeline.labels import LABEL_DRILL_RUN as LABEL_RUN
from lifeline.sources import room_of
from lifeline.sources.resources import Served, selection

from . import backup, drill_sandbox, objects_writer, restore_job, restore_objects, restore_pitr
from .backup import PlanError

# Never put back into a sandbox: a NetworkPolicy adds to what the sandbox lets out (policies add up);
# an Ingress, a Gateway or a route takes part of production's traffic for its host names; a DNSEndpoint
# rewrites production's DNS records.
LEAVE_OUT = (
    "NetworkPolicy.networking.k8s.io", "Ingress.networking.k8s.io",
    *(f"{kind}.gateway.networking.k8s.io" for kind in ("Gateway", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute",
                                                       "UDPRoute")),
    "DNSEndpoint.externaldns.k8s.io",
)
API_SERVER_PORTS = (443, 6443)  # the API server behind the kubernetes Service: its port, and kubeadm's
LIMIT_RANGE = "drill-defaults"
CONTAINER_DEFAULTS = {"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                      "default": {"memory": "1Gi"}}
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # the Job controller's label on a Job's pods


def applies(policy: BackupPolicySpec) -> bool:
    """Whether a drill of this policy is an application drill (its points are Kubernetes objects)."""
    return room_of(policy).restores_into == "objects"


def kind_key(r: Served) -> str:
    """``Kind.group`` (``Ingress.networking.k8s.io``), ``Kind`` for the core group: how the agent names kinds."""
    return f"{r.kind}.{r.group}" if r.group else r.kind


def leave_out(names: Iterable[str], served: Iterable[Served]) -> tuple[str, ...]:
    """:data:`LEAVE_OUT` and the kinds ``names`` name (as includeKinds does), as the agent matches them."""
    named = {kind_key(r) for r in served for n in names if r.called(n)}
    return tuple(sorted({*LEAVE_OUT, *named}))


def data_job_name(claim: str) -> str:
    """``restore-data-<hash of the claim>``: the Job that gives a restored claim its data."""
    return f"{drill_sandbox.RESTORE_JOB}-data-{hashlib.sha256(claim.encode()).hexdigest()[:8]}"


def _refuse_what_does_not_apply(drill: RestoreDrillSpec, policy: BackupPolicySpec, name: str) -> None:
    if drill.point.target_time:  # refused with the reason point-in-time drills give
        restore_pitr.require_continuous(policy, name)
    if drill.restore.load is not None:
        raise PlanError("Ready", "NotADump",
                        f"policy {name} backs up Kubernetes objects, not a dump: leave spec.restore.load out "
                        "(an application drill restores the objects and starts them)")


def additions(drill_body: dict, policy_body: dict, point: dict, run: str, sandbox: str, *, policies: list[dict],
              points: list[dict], served: tuple[Served, ...], facts: backup.Facts, vault_addr: str | None = None,
              api_ports: Iterable[int] = API_SERVER_PORTS) -> drill_sandbox.Additions:
    """What the run's sandbox holds besides a drill's usual objects, and how its restore Job writes.

    ``policies`` and ``points``: the drill's namespace's BackupPolicies and RecoveryPoints (the pvc
    policies' points give restored claims their data); ``served``: the API server's discovery.
    """
    meta = drill_body["metadata"]
    ns, drill = meta.get("namespace", ""), meta["name"]
    ref = f"{ns}/{drill}"
    spec = RestoreDrillSpec.model_validate(drill_body.get("spec") or {})
    policy, policy_name = backup.parse_spec(policy_body), policy_body["metadata"]["name"]
    _refuse_what_does_not_apply(spec, policy, policy_name)
    if not served:
        raise PlanError("Ready", "DiscoveryPending", "the kinds the API server serves are not known yet; the drill "
                                                     "runs once they are")
    skipped = leave_out(spec.restore.leave_out, served)
    chosen = [r for r in selection(policy.source.resources, served)[0] if kind_key(r) not in skipped]
    labels = drill_sandbox.sandbox_labels(ns, drill, run)
    run_labels = {LABEL_SANDBOX: "true", LABEL_DRILL: labels[LABEL_DRILL], LABEL_RUN: labels[LABEL_RUN]}
    jobs = restore_objects.claim_jobs(
        point, policies, points, facts, namespace=sandbox, name=data_job_name, labels=run_labels,
        annotations={ANN_DRILL: ref}, ttl=None, deadline=drill_sandbox.restore_deadline(spec, policy))
    secrets, claims, ports = set(), set(), set()  # the data Jobs': the API server is the writer's alone
    for _, data_spec, data_point in restore_objects.claim_points(point, policies, points):
        try:
            copy = restore_job.choose_copy(data_point, data_spec)
        except PlanError:  # no Job for it either (claim_jobs): the claim comes back without data
            continue
        secrets.update(restore_job.secrets_needed(data_spec, copy))
        claims.update(restore_job.claims_needed(data_spec, copy))
        ports.update(drill_sandbox.egress_ports(data_spec, copy, vault_addr))
    writer = objects_writer.in_one_namespace(
        drill_sandbox.RESTORE_JOB, sandbox, chosen, with_data=bool(jobs),
        labels={**labels, LABEL_APP_COMPONENT: objects_writer.COMPONENT}, annotations={ANN_DRILL: ref})
    target = restore_job.RestoreTarget(objects=restore_job.ObjectsTarget(
        namespace_map=((ns, sandbox),), existing="skip", writer=writer[0]["metadata"]["name"],
        data_jobs=tuple(json.dumps(j, sort_keys=True) for j in jobs), leave_out=skipped, sandbox=True))
    return drill_sandbox.Additions(
        target=target, secrets=tuple(sorted(secrets)), claims=tuple(sorted(claims)), ports=tuple(sorted(ports)),
        objects=(_limit_range(sandbox, labels, ref), *_network_policies(sandbox, labels, ref, api_ports), *writer))


def _limit_range(sandbox: str, labels: dict, ref: str) -> dict:
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": drill_sandbox.sandbox_meta(LIMIT_RANGE, sandbox,
                                                                                              labels, ref),
            "spec": {"limits": [dict(CONTAINER_DEFAULTS)]}}


def _network_policies(sandbox: str, labels: dict, ref: str, api_ports: Iterable[int]) -> list[dict]:
    """The restore Job's pod to the API server; the application's pods to each other and to DNS."""
    writer = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": drill_sandbox.sandbox_meta("writer-egress", sandbox, labels, ref),
        "spec": {"podSelector": {"matchLabels": {LABEL_SANDBOX: "true", LABEL_APP_COMPONENT: restore_job.COMPONENT,
                                                 JOB_NAME_LABEL: drill_sandbox.RESTORE_JOB}},
                 "policyTypes": ["Egress"],
                 "egress": [{"ports": [{"protocol": "TCP", "port": p} for p in sorted(set(api_ports))]}]},
    }
    application = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": drill_sandbox.sandbox_meta("application-egress", sandbox, labels, ref),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"podSelector": {}}]},
                            {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53},
                                                                         {"protocol": "TCP", "port": 53}]}]},
    }
    return [writer, application]


# ---- start-up ------------------------------------------------------------------------------------

# Waiting reasons no retry mends in a sandbox nobody else writes to: the image cannot be run here.
BROKEN = frozenset({"ImageNotMapped", "InvalidImageName", "ErrImageNeverPull"})
# ... and a container configuration naming what the point did not bring back (a Secret, a ConfigMap, a key)
MISSING = ("not found", "couldn't find key", "has no key")
STARTING = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class Startup:
    """Where a restored application's start-up stands: ``waiting``, ``ready`` or ``failed`` (reason, message).
    Ready: ``seconds`` from the first workload's creation to the last one's pods ready, by the API server's
    clock (one-second resolution), and when that was (``ready_at``)."""

    state: Literal["waiting", "ready", "failed"]
    reason: str = ""
    message: str = ""
    seconds: float | None = None
    ready_at: str | None = None


def selects(selector: dict | None, labels: dict | None) -> bool:
    """Whether a workload's label selector (matchLabels, matchExpressions) selects these labels."""
    selector, labels = selector or {}, labels or {}
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key, None) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _wanted(workload: dict) -> int:
    replicas = (workload.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _ready(workload: dict) -> bool:
    status = workload.get("status") or {}
    seen = (status.get("observedGeneration") or 0) >= (workload["metadata"].get("generation") or 0)
    return seen and (status.get("readyReplicas") or 0) >= _wanted(workload)


def _ready_since(pod: dict) -> str | None:
    """When the pod became ready (its Ready condition's transition), or None when it is not."""
    cond = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    return cond.get("lastTransitionTime") if cond.get("status") == "True" else None


def _broken(reason: str, message: str) -> bool:
    return reason in BROKEN or (reason == "CreateContainerConfigError" and any(m in message for m in MISSING))


def pod_problem(pod: dict) -> tuple[bool, str] | None:
    """``(broken, words)`` about a pod that is not ready (broken: no wait mends it); None when it is ready."""
    if _ready_since(pod):
        return None
    name, status = pod["metadata"]["name"], pod.get("status") or {}
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in STARTING:
            reason, message = waiting.get("reason") or "Waiting", (waiting.get("message") or "").strip()
            last = (cs.get("lastState") or {}).get("terminated")
            if last:
                said = (last.get("message") or last.get("reason") or "").strip()[-200:]
                message += f" (it last exited with code {last.get('exitCode')}{': ' + said if said else ''})"
            return _broken(reason, message), f"pod {name}: container {cs.get('name')}: {reason}: {message}".rstrip(": ")
    if status.get("phase") == "Failed":
        reason = status.get("reason") or "Failed"
        return reason in BROKEN, f"pod {name} failed: {reason}: {status.get('message') or ''}".rstrip(": ")
    unscheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
                        and c.get("status") == "False"), None)
    if unscheduled:
        return False, f"pod {name} is not scheduled: {unscheduled.get('message') or unscheduled.get('reason')}"
    running = [cs for cs in status.get("containerStatuses") or [] if "running" in (cs.get("state") or {})]
    not_ready = [cs.get("name") for cs in running if not cs.get("ready")]
    if not_ready:
        return False, f"pod {name}: container {', '.join(not_ready)} running but not ready (readiness probe not passed)"
    return False, f"pod {name} is {status.get('phase') or 'Pending'}"


def workload_problem(kind: str, workload: dict, pods: list[dict]) -> tuple[bool, str]:
    """``(broken, words)`` about a workload not ready yet: its own failure, else its first pod's."""
    name, status = workload["metadata"]["name"], workload.get("status") or {}
    head = f"{kind} {name}: {status.get('readyReplicas') or 0} of {_wanted(workload)} ready"
    failure = next((c for c in status.get("conditions") or [] if c.get("type") == "ReplicaFailure"
                    and c.get("status") == "True"), None)
    if failure:  # the controller cannot even make its pods (quota, Pod Security, a ServiceAccount not there)
        return True, f"{head}; {failure.get('reason')}: {failure.get('message')}"
    problems = [p for p in (pod_problem(pod) for pod in pods if selects((workload.get("spec") or {}).get("selector"),
                                                                         pod["metadata"].get("labels")))
                if p is not None]
    if not problems:
        return False, f"{head}; no pod yet"
    broken, words = max(problems, key=lambda p: p[0])  # a broken pod first
    return broken, f"{head}; {words}"


def startup(deployments: list[dict], statefulsets: list[dict], pods: list[dict], *, restored_at: str | None,
            now: datetime, deadline: datetime | None, timeout: str) -> Startup:
    """The restored workloads' start-up: ready (with its seconds), waiting, or failed with the reason.

    Failed at once (``ApplicationNotReady``) when a workload's pods show what no wait mends: an image
    that cannot run here, a Secret, ConfigMap or key the point did not bring back, a controller that
    cannot make its pods; failed at ``deadline`` (``StartupTimedOut``) when they are still not ready,
    saying how far each got. ``restored_at``: when the restore Job completed (the API server's time), the
    start-up's start when no workload says when it was made.

    The start-up counts from the workloads' creation, not from the restore Job's end: the agent writes
    them as the last of the restore (after the claims' data), and they start while it finishes.
    """
    workloads = [("Deployment", w) for w in deployments] + [("StatefulSet", w) for w in statefulsets]
    waiting = [(kind, w) for kind, w in workloads if not _ready(w)]
    if not waiting:
        theirs = [p for p in pods if any(selects((w.get("spec") or {}).get("selector"), p["metadata"].get("labels"))
                                         for _, w in workloads)]
        times = [parse_time(t) for t in (_ready_since(p) for p in theirs) if t]
        end = max(times, default=None)
        made = [parse_time(w["metadata"].get("creationTimestamp")) for _, w in workloads]
        start = min((t for t in made if t), default=None) or parse_time(restored_at)
        seconds = round(max(0.0, (end - start).total_seconds()), 3) if end and start else 0.0
        names = ", ".join(f"{k} {w['metadata']['name']}" for k, w in workloads) or "no Deployment or StatefulSet"
        return Startup("ready", "Started", f"ready: {names}", seconds=seconds, ready_at=rfc3339(end) if end else None)
    problems = sorted((workload_problem(kind, w, pods) for kind, w in waiting), key=lambda p: not p[0])
    if problems[0][0]:
        return Startup("failed", "ApplicationNotReady", "; ".join(words for broken, words in problems if broken))
    words = "; ".join(w for _, w in problems)
    if deadline is not None and now >= deadline:
        return Startup("failed", "StartupTimedOut",
                       f"the restored workloads were not all ready within {timeout} (spec.restore.startupTimeout): "
                       f"{words}")
    return Startup("waiting", "Starting", f"waiting for {words}")


def startup_deadline(spec: RestoreDrillSpec, since: datetime) -> datetime:
    """When a run still starting fails: ``spec.restore.startupTimeout`` after ``since``."""
    return datetime.fromtimestamp(since.timestamp() + parse_duration(spec.restore.startup_timeout), tz=since.tzinfo)


__all__ = ["API_SERVER_PORTS", "LEAVE_OUT", "Startup", "additions", "applies", "data_job_name", "leave_out",
           "pod_problem", "selects", "startup", "startup_deadline", "workload_problem"]
