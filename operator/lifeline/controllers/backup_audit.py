"""The audit records the backup controllers write: a backup's outcome, and a policy or point deleted.

In one place so that every record of a kind has the same shape whoever writes it (the Job
recorder, the watch of deletions; the snapshot pipeline's early failures use the same actor).
"""
from __future__ import annotations

from lifeline.messages import BackupSummary
from lifeline.observability import audit

ACTOR = "lifeline-operator"


def audit_backup(job: dict, body: dict, outcome: str, point: str | None, summary: BackupSummary | None, when,
                 why: str = "") -> None:
    """A finished backup Job: where it was stored and where not, and the RecoveryPoint it became."""
    details = {"job": job["name"], "type": job.get("type"), "trigger": job.get("trigger"),
               "recoveryPoint": point,
               "storedAt": [c.destination for c in summary.copies] if summary is not None else [],
               "failedAt": [f.destination for f in summary.failures] if summary is not None else []}
    if why:
        details["message"] = why[:500]
    if job.get("triggerJob"):
        details["volumeSnapshot"] = job["triggerJob"]
    audit.record("backup", actor=ACTOR, outcome=outcome,
                 subject={"kind": "BackupPolicy", "namespace": job["namespace"], "name": job["policy"],
                          "uid": body["metadata"].get("uid", "")},
                 details=details, when=when)


def audit_deletion(body, when) -> None:
    """A policy or a point is gone (seen by the watch: who deleted it is in the API server's audit log)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    kind = body.get("kind") or "BackupPolicy"
    if kind == "BackupPolicy":
        policy = spec.get("deletionPolicy", "Retain")
        details = {"deletionPolicy": policy,
                   "recoveryPoints": "deleted with the policy (owner references)" if policy == "Delete"
                   else "retained", "repositoryData": "retained (see docs/backup.md, deletionPolicy)"}
    else:
        details = {"policy": spec.get("policyName"), "type": spec.get("type"),
                   "phase": (body.get("status") or {}).get("phase"),
                   "copies": [c.get("destination") for c in spec.get("copies") or []]}
    audit.record("deletion", actor=ACTOR, outcome="succeeded",
                 subject={"kind": kind, "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                          "uid": meta.get("uid", "")},
                 details=details, when=when)
