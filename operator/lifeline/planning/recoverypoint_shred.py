"""Deletion that shreds: pure decisions for a RecoveryPoint whose policy says ``deletionPolicy: Shred``.

* :func:`finalizer_patch` — such a point carries the finalizer ``dr.lifeline.io/shred`` and a
  snapshot of what a shred needs (destinations, key reference, pod options) in an
  annotation, so it can still be shredded after its policy is gone;
* :func:`blockers` — the shred unit is the key epoch (a full backup and the points on it):
  a point is shredded only once every other live point of its epoch is being deleted too,
  otherwise destroying its key would silently destroy theirs;
* :func:`shred_job` — the Job that runs ``python -m lifeline.keys.shred_job`` (the same
  ``lifeline keys shred`` a person runs) with the destinations' credentials, and the key when a
  destination is immutable (its shred is a tombstone sealed with the epoch's key: docs/immutability.md);
* :func:`outcome` — whether a finished Job's summary (a :class:`~lifeline.messages.ShredSummary`)
  lets the finalizer go.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from lifeline import API_VERSION
from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.labels import (LABEL_APP_COMPONENT, LABEL_APP_INSTANCE, LABEL_APP_MANAGED_BY, LABEL_APP_NAME,
                             LABEL_APP_PART_OF)
from lifeline.labels import ANN_SHRED_ATTEMPT as ANN_ATTEMPT, ANN_SHRED_PLAN as ANN_PLAN
from lifeline.labels import ANN_SHRED_POINT as ANN_POINT, ANN_SHRED_RETRY_AFTER as ANN_RETRY_AFTER
from lifeline.labels import FINALIZER_SHRED as FINALIZER, LABEL_SHRED_FOR as LABEL_FOR
from lifeline.messages import PLAN_ENV, KeyPlan, ShredCopyPlan, ShredPlan, ShredSummary, UnreadableMessage, read_plan

from . import backup

COMPONENT = "shred"
JOB_COMMAND = ("python", "-m", "lifeline.keys.shred_job")
RETRY_BASE, RETRY_MAX = 30.0, 1800.0  # seconds between failed attempts: 30 s, 60 s, ... at most 30 min


def wants_shred(policy_body: dict | None) -> bool:
    return ((policy_body or {}).get("spec") or {}).get("deletionPolicy") == "Shred"


def snapshot(policy_body: dict) -> str:
    """What a shred needs from the policy (no secret: names of Secrets, never their values)."""
    spec = policy_body.get("spec") or {}
    keep = {k: spec[k] for k in ("tier", "destinations", "encryption", "pod") if k in spec}
    keep["policy"] = policy_body["metadata"]["name"]
    return json.dumps(keep, sort_keys=True, separators=(",", ":"))


def finalizer_patch(point: dict, policy_body: dict | None) -> dict | None:
    """Metadata to write (with the point's resourceVersion) so the finalizer follows the policy; None: as is."""
    meta = point.get("metadata") or {}
    if meta.get("deletionTimestamp") or policy_body is None:
        return None  # being deleted, or the policy is gone: keep what the point carries
    finalizers = list(meta.get("finalizers") or [])
    ann = meta.get("annotations") or {}
    if wants_shred(policy_body):
        plan = snapshot(policy_body)
        if FINALIZER in finalizers and ann.get(ANN_PLAN) == plan:
            return None
        if FINALIZER not in finalizers:
            finalizers.append(FINALIZER)
        return {"resourceVersion": meta.get("resourceVersion"), "finalizers": finalizers,
                "annotations": {ANN_PLAN: plan}}
    if FINALIZER not in finalizers:
        return None
    return {"resourceVersion": meta.get("resourceVersion"), "finalizers": [f for f in finalizers if f != FINALIZER],
            "annotations": {ANN_PLAN: None, ANN_ATTEMPT: None, ANN_RETRY_AFTER: None}}


def release_patch(point: dict) -> dict:
    meta = point.get("metadata") or {}
    return {"resourceVersion": meta.get("resourceVersion"),
            "finalizers": [f for f in meta.get("finalizers") or [] if f != FINALIZER]}


# ---- the epoch a point belongs to, per destination ------------------------------------------


def _copy(point: dict, destination: str) -> dict | None:
    return next((c for c in (point.get("spec") or {}).get("copies") or [] if c.get("destination") == destination),
                None)


def _root(point: dict, destination: str, by_name: dict[str, dict]) -> str:
    """The full backup a point's copy at ``destination`` builds on (its key epoch), by name."""
    seen = set()
    while True:
        name = point["metadata"]["name"]
        copy = _copy(point, destination) or {}
        kind = copy.get("type") or (point.get("spec") or {}).get("type")
        parent = (point.get("spec") or {}).get("parent")
        if kind == "full" or not parent or parent in seen or parent not in by_name:
            return name
        seen.add(name)
        point = by_name[parent]


def _epoch_mates(point: dict, points: list[dict]):
    """The other points of the same policy that share this point's key epoch at some destination."""
    policy = (point.get("spec") or {}).get("policyName")
    mates = [p for p in points if (p.get("spec") or {}).get("policyName") == policy]
    by_name = {p["metadata"]["name"]: p for p in mates}
    by_name[point["metadata"]["name"]] = point
    me = point["metadata"]["name"]
    for copy in (point.get("spec") or {}).get("copies") or []:
        d = copy.get("destination")
        root = _root(point, d, by_name)
        for p in mates:
            if p["metadata"]["name"] != me and _copy(p, d) is not None and _root(p, d, by_name) == root:
                yield p


def _deleting(point: dict) -> bool:
    return bool((point.get("metadata") or {}).get("deletionTimestamp"))


def blockers(point: dict, points: list[dict]) -> list[str]:
    """Other points of the same policy and key epoch that are neither being deleted nor gone already."""
    return sorted({p["metadata"]["name"] for p in _epoch_mates(point, points)
                   if not _deleting(p) and (p.get("status") or {}).get("phase") not in ("Pruned", "Shredded")})


def ahead(point: dict, points: list[dict]) -> list[str]:
    """Points of the same policy and key epoch also being deleted whose shred goes first (by name).

    Shred Jobs of one epoch rewrite the same key objects of the same repositories: run side by side
    they undo each other's work, so they run one after the other."""
    me = point["metadata"]["name"]
    return sorted({p["metadata"]["name"] for p in _epoch_mates(point, points)
                   if _deleting(p) and p["metadata"]["name"] < me})


# ---- the Job ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShredFacts:
    agent_image: str
    vault_env: tuple[tuple[str, str], ...] = ()


def job_name(point_name: str, attempt: int) -> str:
    return backup.child_name(point_name, f"shred-{attempt}", backup.JOB_NAME_MAX)


def attempt_of(point: dict) -> int:
    try:
        return max(1, int(((point.get("metadata") or {}).get("annotations") or {}).get(ANN_ATTEMPT) or 1))
    except ValueError:
        return 1


def _policy_spec(snap: dict) -> BackupPolicySpec:
    """A spec the pod renderer accepts: the snapshot's destinations, key and pod options (no source is mounted)."""
    body = {"tier": snap.get("tier", "C"), "source": {"pvc": {"claimName": "unused"}},
            "schedule": {"full": "0 0 * * *"}, "destinations": snap["destinations"],
            "encryption": snap["encryption"], "pod": snap.get("pod") or {}}
    return BackupPolicySpec.model_validate(body)


def shred_job(point: dict, facts: ShredFacts, attempt: int) -> dict:
    """The Job that shreds every copy of ``point``; raises ValueError when the point carries no usable plan."""
    meta = point["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    raw = (meta.get("annotations") or {}).get(ANN_PLAN)
    if not raw:
        raise ValueError(f"annotation {ANN_PLAN} is missing: the point was not marked for shredding by its policy")
    snap = json.loads(raw)
    spec = _policy_spec(snap)
    policy = snap.get("policy") or (point.get("spec") or {}).get("policyName") or name
    bfacts = backup.Facts(facts.agent_image, vault_env=facts.vault_env)
    pod = backup.pod_spec(namespace, policy, spec, "prune", None, bfacts)
    base = backup.job_plan(namespace, policy, spec, "prune", None)
    sealed = any(d.immutable is not None for d in spec.destinations)  # docs/immutability.md: shred needs the key
    account = spec.pod.service_account_name or "default"
    plan = ShredPlan(
        namespace=namespace, policy=policy, recovery_point=name,
        copies=[ShredCopyPlan(destination=c["destination"], snapshot_id=c["snapshotId"])
                for c in (point.get("spec") or {}).get("copies") or []],
        # an immutable destination's shred is a tombstone sealed with the epoch's key: the key's file, then
        destinations=base.destinations, key=KeyPlan(ref=base.key.ref, file=base.key.file if sealed else None),
        # who shreds: the Job's own Kubernetes identity, on the policy's behalf
        actor=f"system:serviceaccount:{namespace}:{account}",
        reason=f"RecoveryPoint {namespace}/{name} deleted under deletionPolicy Shred of BackupPolicy {policy}")
    agent = pod["containers"][0]
    agent["command"], agent["args"] = list(JOB_COMMAND), []
    agent["env"] = [plan.to_env(), *(e for e in agent["env"] if e["name"] != PLAN_ENV)]
    if not sealed:
        # the shred needs no key file: drop the key Secret (it may be gone already)
        agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["name"] != "key"]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "key"]
        pod["automountServiceAccountToken"] = False  # nor Vault: a wrapped key is deleted without unwrapping it
    for v in pod["volumes"]:
        if v["name"] == "key":  # a Secret gone already: the pod starts, and the shred says it needs the key
            v["secret"]["optional"] = True
    labels = {
        LABEL_APP_NAME: "lifeline", LABEL_APP_INSTANCE: backup.label_value(name),
        LABEL_APP_COMPONENT: COMPONENT, LABEL_APP_MANAGED_BY: "lifeline",
        LABEL_APP_PART_OF: backup.PART_OF, LABEL_FOR: backup.label_value(name),
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": job_name(name, attempt), "namespace": namespace, "labels": labels,
            "annotations": {ANN_POINT: name, ANN_ATTEMPT: str(attempt)},
            "ownerReferences": [{"apiVersion": point.get("apiVersion") or API_VERSION,
                                 "kind": "RecoveryPoint", "name": name, "uid": meta.get("uid", ""),
                                 "controller": True}],
        },
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 1800, "ttlSecondsAfterFinished": 7 * 86400,
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }


# ---- outcomes --------------------------------------------------------------------------------


def plan_of(job: dict) -> ShredPlan | None:
    """The shred plan a Job was given (who shreds, why; no secret is in it), None when unreadable."""
    for c in job["spec"]["template"]["spec"].get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == PLAN_ENV:
                try:
                    return read_plan(e.get("value"), ShredPlan)
                except UnreadableMessage:
                    return None
    return None


def outcome(summary: ShredSummary | None, report: str, problem: str | None = None) -> tuple[bool, str, list[str]]:
    """(shredded everywhere?, a sentence for the Event, the epochs destroyed).

    ``problem``: why the Job's summary could not be read (cut off, not valid), when it could not."""
    if summary is None:
        if problem:
            return False, f"{problem} ({report})", []
        return False, f"the shred Job left no summary ({report})", []
    done, failed = summary.shredded, summary.failures
    epochs = sorted({o.epoch for o in done if o.epoch})
    if failed or not done:
        why = "; ".join(f"{f.destination}: {f.error}" for f in failed) or "no copy was shredded"
        return False, why, epochs
    parts = []
    for o in done:
        if o.already:
            parts.append(f"{o.destination}: already shredded")
        else:
            parts.append(f"{o.destination}: key epoch {o.epoch} destroyed at {o.shredded_at} by {o.actor}")
    return True, "; ".join(parts), epochs


def retry_after(now: datetime, attempt: int) -> datetime:
    return now + timedelta(seconds=min(RETRY_MAX, RETRY_BASE * 2 ** (attempt - 1)))
