"""Finished backup Jobs -> RecoveryPoints and recorded outcomes. Pure.

The agent's Job writes a compact summary (:class:`~lifeline.messages.BackupSummary`, a
prune's :class:`~lifeline.messages.PruneReport`) to its container's termination message; the
operator reads it from the pod (:func:`pod_report`), and these functions turn it into the
RecoveryPoint manifest and into the small outcome it stores on the Job (annotation
``dr.lifeline.io/result``) so the policy's status can be planned from the Jobs alone, after a
restart too.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import NamedTuple

from lifeline import API_VERSION
from lifeline.api import BY_KIND
from lifeline.labels import ANN_HOOKS, ANN_JOB, ANN_JOB_UID, ANN_TRIGGER_JOB, JOB_UID_LABELS, LABEL_APP_COMPONENT
from lifeline.messages import BackupSummary, FingerprintResult, MaintenanceSummary, PruneReport, read_summary

from . import backup, conditions, readiness
from .job_record import JobRecord
from .readiness import EventPlan

RP_NAME_MAX = 253


def _condition(job: dict, type_: str) -> dict | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_ and c.get("status") == "True"), None)


def job_fact(job: dict) -> dict:
    """What the controller keeps of a backup or prune Job (the value of its index)."""
    meta = job.get("metadata") or {}
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    status = job.get("status") or {}
    complete, failed = _condition(job, "Complete"), _condition(job, "Failed")
    phase = "Succeeded" if complete else "Failed" if failed else "Running"
    finished = complete or failed
    result = None  # the record's wire form (lifeline.planning.job_record.JobRecord.of reads it)
    if ann.get(backup.ANN_RESULT):
        try:
            result = json.loads(ann[backup.ANN_RESULT])
        except ValueError:
            result = None
    return {
        "name": meta.get("name"), "uid": meta.get("uid"), "namespace": meta.get("namespace"),
        "policy": ann.get(backup.ANN_POLICY) or labels.get(backup.LABEL_POLICY),
        # "trigger": a volumeSnapshot policy's CronJob run, which the operator turns into a snapshot
        # and a data-mover Job (lifeline.planning.snapshot)
        "operation": {"prune": "prune", "snapshot": "trigger", "maintenance": "maintenance"}.get(
            labels.get(LABEL_APP_COMPONENT), "backup"),
        "hooks": ann.get(ANN_HOOKS),
        "triggerJob": ann.get(ANN_TRIGGER_JOB),  # a data-mover Job's snapshot trigger
        "type": labels.get(backup.LABEL_TYPE),
        "trigger": "OnDemand" if labels.get(backup.LABEL_TRIGGER) == "on-demand" else "Schedule",
        "backupNow": ann.get(backup.ANN_BACKUP_NOW),
        "created": meta.get("creationTimestamp"),
        "start": status.get("startTime") or meta.get("creationTimestamp"),
        "completion": status.get("completionTime") or (finished or {}).get("lastTransitionTime"),
        "phase": phase,
        "reason": (failed or {}).get("reason"), "failMessage": (failed or {}).get("message"),
        "recorded": ann.get(backup.ANN_RECORDED), "result": result,
    }


def terminated(pod: dict, container: str = backup.AGENT) -> dict | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            return (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
    return None


class PodReport(NamedTuple):
    summary: BackupSummary | PruneReport | MaintenanceSummary | None  # the agent's summary, validated
    report: str  # how the containers ended (and why the summary is unusable, first, when it is)
    problem: str | None = None  # the summary was there but cut off, invalid or of another version


def pod_report(pods: list[dict], *kinds: type) -> PodReport:
    """The newest pod's agent summary (one of ``kinds``: by default a backup's or a prune's), and a
    sentence on how its containers ended."""
    ended = [(p, terminated(p)) for p in pods]
    ended = [(p, t) for p, t in ended if t]
    if not ended:
        return PodReport(None, "no pod of the Job reported a finished agent container")
    pod, state = max(ended, key=lambda pt: (pt[1].get("finishedAt") or "", pt[0]["metadata"].get("name", "")))
    summary, problem = read_summary(state.get("message"), *(kinds or (BackupSummary, PruneReport)))
    parts = [problem] if problem else []
    parts.append(f"agent exited {state.get('exitCode')}" + (f" ({state['reason']})" if state.get("reason") else ""))
    dump = terminated(pod, "dump")
    if dump is not None:
        parts.append(f"dump exited {dump.get('exitCode')}" + (f" ({dump['reason']})" if dump.get("reason") else ""))
    if summary is None and problem is None and state.get("message"):
        parts.append("last output: " + state["message"].strip().replace("\n", " ")[-300:])
    return PodReport(summary, "; ".join(parts), problem)


def point_name(policy: str, start: datetime, taken: set[str], type_: str) -> str:
    """``<policy>-<yyyymmdd-hhmmss>`` of the backup's start; a second point in that second gets its type."""
    stamp = start.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    head = policy[: RP_NAME_MAX - len(stamp) - 20]
    name = f"{head}-{stamp}"
    if name not in taken:
        return name
    name = f"{head}-{stamp}-{type_}"
    n = 2
    while name in taken:
        name, n = f"{head}-{stamp}-{type_}-{n}", n + 1
    return name


def recovery_point(policy_body: dict, job: dict, summary: BackupSummary, name: str,
                   parent: str | None, retain: bool) -> dict:
    """The RecoveryPoint of one successful backup (every destination that took it is a copy)."""
    meta = policy_body["metadata"]
    policy = meta["name"]
    copies = summary.copies
    first = copies[0]
    # The agent falls back to a full where a destination has no parent yet: when every copy did,
    # the point is a full; when only some did, the point keeps the requested type and those
    # copies say their own.
    types = {c.type for c in copies}
    type_ = first.type if len(types) == 1 else (summary.requested_type or first.type)
    spec = {
        "policyName": policy,
        "type": type_,
        "copies": [],
        "sizeBytes": summary.size_bytes,
        "files": summary.files,
        "chunks": {"total": first.chunks[0], "new": first.chunks[1]},
        "manifestChecksum": first.manifest_checksum,
        "keyRef": summary.key_ref or "unknown",
        "startTime": summary.start or first.start,
        "completionTime": summary.end or first.end,
        "tags": {"job": job["name"], "trigger": job["trigger"]},
    }
    if parent:
        spec["parent"] = parent
    spec["tags"].update(fingerprint_tags(summary.fingerprint))
    for c in copies:
        copy_ = {"destination": c.destination, "repository": c.repository, "snapshotId": c.snapshot_id,
                 "storedBytes": c.stored_bytes, "manifestChecksum": c.manifest_checksum}
        if c.type != type_:
            copy_["type"] = c.type
        if c.parent_id:
            copy_["parentSnapshotId"] = c.parent_id
        spec["copies"].append(copy_)
    body = {
        "apiVersion": API_VERSION,
        "kind": "RecoveryPoint",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", ""),
            "labels": backup.labels(policy, "recovery-point", type_),
            "annotations": {backup.ANN_POLICY: policy, ANN_JOB: job["name"], ANN_JOB_UID: job["uid"]},
        },
        "spec": spec,
    }
    if not retain:
        body["metadata"]["ownerReferences"] = [{**backup.owner_reference(policy_body), "controller": False}]
    return body


def fingerprint_tags(fp: FingerprintResult | None) -> dict:
    """spec.fingerprint's result as tags: ``verifyOutput`` (what drills compare) or why it is missing."""
    if fp is None:
        return {}
    if fp.output is not None:
        return {"verifyOutput": fp.output[:256]}
    return {"verifyOutputError": (fp.error or "the fingerprint left no result")[:200]}


def result_of(job: dict, summary: BackupSummary | PruneReport | MaintenanceSummary | None, report: str,
              point: str | None, problem: str | None = None) -> JobRecord:
    """The record stored on the Job (``dr.lifeline.io/result``) once it is recorded.

    ``problem``: why the agent's summary could not be used; it is the recorded error then."""
    failures = summary.failures if summary is not None else []
    operation = job["operation"] if job["operation"] in ("prune", "maintenance") else "backup"
    out = JobRecord(outcome=job["phase"], operation=operation,
                    report=report[:300], failures={f.destination: f.error[:200] for f in failures},
                    recovery_point=point, error=problem[:200] if problem else None)
    if isinstance(summary, BackupSummary):
        out.start, out.end = summary.start, summary.end
        out.stored_at = [c.destination for c in summary.copies]
        out.exit_codes = {f.destination: f.exit_code for f in failures}
        out.error = summary.error[:200] if summary.error else None
        out.type = summary.copies[0].type if summary.copies else None
    if isinstance(summary, MaintenanceSummary):
        out.repacked = {r.destination: [r.bytes_before, r.bytes_after, r.packs_rewritten, r.packs_deleted]
                        for r in summary.repacked} or None
        out.error = summary.error[:200] if summary.error else out.error
    return out


def point_fact(rp: dict) -> dict:
    """What the controller keeps of a RecoveryPoint (the value of its index)."""
    meta, spec = rp.get("metadata") or {}, rp.get("spec") or {}
    return {
        "name": meta.get("name"), "uid": meta.get("uid"), "namespace": meta.get("namespace"),
        "policy": spec.get("policyName"), "type": spec.get("type"),
        "start": spec.get("startTime"), "completion": spec.get("completionTime"),
        "copies": [(c.get("destination"), c.get("snapshotId")) for c in spec.get("copies") or []],
        "offSiteDestinations": None,
        "jobUid": (meta.get("annotations") or {}).get(ANN_JOB_UID),
        "phase": (rp.get("status") or {}).get("phase"),
        "ownerUids": [r.get("uid") for r in meta.get("ownerReferences") or []],
        "ownerReferences": meta.get("ownerReferences") or [],
    }


def pruned_points(points: list[dict], forgot: dict[str, list[str]]) -> list[str]:
    """Names of points every copy of which the prune forgot (ids compared by their first 16 digits)."""
    gone = {d: {i[:16] for i in ids} for d, ids in forgot.items()}
    out = []
    for p in points:
        copies = p["copies"]
        if copies and all(d in gone and (sid or "")[:16] in gone[d] for d, sid in copies):
            out.append(p["name"])
    return out


def plan_point_status(body: dict, now: str, pruned: bool = False, shred_review: tuple[bool, str] | None = None):
    """A RecoveryPoint's status: the generic Ready (is the spec valid) plus its phase.

    Returns ``(patch or None, EventPlan or None)``; ``pruned`` marks the point Pruned for
    good (every copy was forgotten by a prune). The phase is otherwise kept (verify, shred
    and restore set Damaged or Shredded), Available when unset. ``shred_review``: for a deleted
    point whose keys are to be shredded, ``(approved, message)`` (who approved, or what the shred
    waits for: :mod:`lifeline.planning.shred_approval`), shown as the condition ``ShredApproved``.
    """
    decision = readiness.plan(BY_KIND["RecoveryPoint"], body, now)
    old = body.get("status") or {}
    phase = "Pruned" if pruned else (old.get("phase") or "Available")
    patch = dict(decision.patch or {})
    if old.get("phase") != phase:
        patch["phase"] = phase
    if shred_review is not None:
        approved, message = shred_review
        current = patch.get("conditions") or old.get("conditions") or []
        merged = conditions.merge(current, conditions.make(
            "ShredApproved", approved, "Approved" if approved else "AwaitingApproval", message,
            (body.get("metadata") or {}).get("generation")), now)
        if merged != (old.get("conditions") or []):
            patch["conditions"] = merged
    event = decision.event
    if pruned and old.get("phase") != "Pruned":
        event = EventPlan("Normal", "Pruned", "retention forgot every copy of this recovery point")
    return (patch or None), event
