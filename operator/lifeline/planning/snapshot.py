"""volumeSnapshot sources: the trigger pod, the VolumeSnapshot, the PVC made from it, the data mover. Pure.

How a CSI snapshot backup runs (the mechanism, and why):

1. The policy's CronJobs stay the schedule (``kubectl get cronjobs`` shows when each ran): their
   Job's pod is a tiny **trigger** that exits at once. A CronJob cannot create a VolumeSnapshot
   itself, and an operator-side timer would hide the schedule and miss runs across restarts;
   the CronJob controller already keeps time, deadlines and history.
2. The operator sees the finished trigger Job and runs the pipeline, each step named after the
   trigger Job so it is idempotent and resumes after an operator restart: pre-hooks →
   ``VolumeSnapshot <trigger>`` (crash-consistent) → post-hooks once the snapshot is cut →
   wait for ``readyToUse`` (``source.volumeSnapshot.readyTimeout``) → ``PVC <trigger>-data``
   with the snapshot as its ``dataSource`` → the **data-mover** Job ``<trigger>-mover``, an
   ordinary backup Job whose ``/source`` is that PVC mounted read-only, recorded as a
   RecoveryPoint like any other backup.
3. Once the mover is recorded, the temporary PVC is deleted, and the snapshot too unless
   ``keepSnapshots`` > 0 (then the newest N successful ones stay). The trigger Job is annotated
   with the pipeline's outcome; a failure before the mover (snapshot class missing, snapshot
   error, timeout, a failing pre-hook) is recorded there and shown as the policy's last backup.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from lifeline.api.common import parse_duration
from lifeline.labels import ANN_DEFAULT_SNAPSHOT_CLASS, ANN_TRIGGER_JOB, ANN_VOLUME_SNAPSHOT

from . import backup

SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
COMPONENT_DATA = "snapshot-data"
# Reasons a pipeline fails before its data mover runs (SourceAvailable shows the snapshot ones).
SNAPSHOT_REASONS = ("VolumeSnapshotClassNotFound", "SnapshotFailed", "SnapshotTimeout", "SourcePVCNotFound")


# ---- names -------------------------------------------------------------------------------


def snapshot_name(trigger_job: str) -> str:
    return trigger_job


def data_claim_name(trigger_job: str) -> str:
    return backup.child_name(trigger_job, "data", 253)


def mover_name(trigger_job: str) -> str:
    return backup.child_name(trigger_job, "mover", backup.JOB_NAME_MAX)


def _meta(policy_body: dict, name: str, component: str, type_: str | None, trigger_job: str) -> dict:
    meta = policy_body["metadata"]
    return {
        "name": name,
        "namespace": meta.get("namespace", ""),
        "labels": backup.labels(meta["name"], component, type_),
        "annotations": {backup.ANN_POLICY: meta["name"], ANN_TRIGGER_JOB: trigger_job},
        "ownerReferences": [backup.owner_reference(policy_body)],
    }


# ---- the objects ---------------------------------------------------------------------------


def volume_snapshot(policy_body: dict, trigger: dict) -> dict:
    """The VolumeSnapshot of the policy's PVC that a trigger Job asks for."""
    spec = backup.parse_spec(policy_body)
    src = spec.source.volume_snapshot
    body = {"source": {"persistentVolumeClaimName": src.claim_name}}
    if src.volume_snapshot_class_name:
        body["volumeSnapshotClassName"] = src.volume_snapshot_class_name
    return {"apiVersion": SNAPSHOT_API, "kind": "VolumeSnapshot",
            "metadata": _meta(policy_body, snapshot_name(trigger["name"]), "snapshot", trigger.get("type"),
                              trigger["name"]),
            "spec": body}


def data_claim(policy_body: dict, trigger: dict, snapshot: dict, source_pvc: dict | None) -> dict:
    """The temporary PVC made from the snapshot (same storage class and size as the source)."""
    src_spec = (source_pvc or {}).get("spec") or {}
    size = ((snapshot.get("status") or {}).get("restoreSize")
            or ((src_spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi")
    spec: dict = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(size)}},
        "dataSource": {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": snapshot["metadata"]["name"]},
    }
    if src_spec.get("storageClassName"):
        spec["storageClassName"] = src_spec["storageClassName"]
    meta = _meta(policy_body, data_claim_name(trigger["name"]), COMPONENT_DATA, trigger.get("type"), trigger["name"])
    meta["annotations"][ANN_VOLUME_SNAPSHOT] = snapshot["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}


def mover_job(policy_body: dict, facts: backup.Facts, trigger: dict, claim: str) -> dict:
    """The data-mover Job: an ordinary backup Job whose /source is the PVC made from the snapshot."""
    spec = backup.parse_spec(policy_body)
    type_ = trigger.get("type") or "full"
    extra = {backup.LABEL_TRIGGER: "on-demand"} if trigger.get("trigger") == "OnDemand" else {}
    expr = getattr(spec.schedule, type_, None)
    template = backup.job_template(policy_body, spec, facts, "backup", type_,
                                   backup.interval_seconds(expr) if expr else None, extra_labels=extra,
                                   source_claim=claim)
    meta = _meta(policy_body, mover_name(trigger["name"]), "backup", type_, trigger["name"])
    meta["labels"] = template["metadata"]["labels"]
    meta["annotations"].update(template["metadata"]["annotations"])
    meta["annotations"][ANN_VOLUME_SNAPSHOT] = snapshot_name(trigger["name"])
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
           "spec": {**template["spec"], "ttlSecondsAfterFinished": 7 * 86400}}
    return json.loads(json.dumps(job))  # no sub-object shared with the policy's parsed spec


# ---- where a snapshot is -----------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotState:
    """``phase``: Missing, Pending (not cut yet), Cut (taken, not ready), Ready, Failed, TimedOut."""

    phase: str
    message: str = ""

    @property
    def cut(self) -> bool:
        return self.phase in ("Cut", "Ready")


def snapshot_state(snapshot: dict | None, since: datetime, now: datetime, timeout: str) -> SnapshotState:
    """Where a VolumeSnapshot stands, from its status (``since``: when the trigger finished)."""
    if snapshot is None:
        return SnapshotState("Missing")
    status = snapshot.get("status") or {}
    name = snapshot["metadata"]["name"]
    error = status.get("error") or {}
    if error.get("message"):
        return SnapshotState("Failed", f"VolumeSnapshot {name} failed: {error['message']}")
    if status.get("readyToUse"):
        return SnapshotState("Ready")
    limit = parse_duration(timeout)
    if (now - since).total_seconds() > limit:
        return SnapshotState("TimedOut", f"VolumeSnapshot {name} was not readyToUse within {timeout} "
                                         f"(source.volumeSnapshot.readyTimeout); look at the CSI driver's "
                                         f"snapshotter and `kubectl describe volumesnapshot {name}`")
    return SnapshotState("Cut" if status.get("creationTime") else "Pending")


def snapshots_to_delete(snapshots: list[dict], keep: int, running: set[str]) -> list[str]:
    """Names of the policy's snapshots beyond the newest ``keep``; those of ``running`` pipelines stay."""
    done = [s for s in snapshots if s["metadata"]["name"] not in running]
    done.sort(key=lambda s: (s["metadata"].get("creationTimestamp") or "", s["metadata"]["name"]), reverse=True)
    return [s["metadata"]["name"] for s in done[keep:]]


def default_class(classes: list[dict]) -> str | None:
    """The VolumeSnapshotClass annotated as the default (None when there is none)."""
    for c in sorted(classes, key=lambda c: c["metadata"]["name"]):
        if (c["metadata"].get("annotations") or {}).get(ANN_DEFAULT_SNAPSHOT_CLASS) == "true":
            return c["metadata"]["name"]
    return None
