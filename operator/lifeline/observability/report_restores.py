"""Per-restore records for the report: who asked, who approved, what point, when, the outcome.

"An audit report is generated automatically" for every critical restore: each Restore is one record
in the report, and `lifeline report --restore NS/NAME` prints that record alone, as a page to sign
and file.
"""
from __future__ import annotations


def restore_facts(restore: dict) -> dict:
    meta, spec, status = restore.get("metadata") or {}, restore.get("spec") or {}, restore.get("status") or {}
    target = spec.get("target") or {}
    where = (f"PVC {target['pvc'].get('claimName')}" if target.get("pvc") else
             "a command" if target.get("command") else "?")
    return {
        "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
        "requested": meta.get("creationTimestamp"), "requested_by": status.get("requestedBy"),
        "reason": spec.get("reason"), "point": spec.get("recoveryPoint"),
        "target": f"{where} in {target.get('namespace') or meta.get('namespace', '')}",
        "strategy": spec.get("strategy") or "NewClaim", "policy": status.get("approvalPolicy") or "default",
        "approvals": [{"user": a.get("user"), "decision": a.get("decision"), "time": a.get("time"),
                       "groups": a.get("groups") or [], "comment": a.get("comment")}
                      for a in status.get("approvals") or []],
        "phase": status.get("phase") or "PendingApproval", "message": status.get("message"),
        "started": status.get("startTime"), "completed": status.get("completionTime"),
        "bytes": status.get("bytesRestored"), "job": status.get("jobName"),
    }


def find(restores: list[dict], ref: str) -> dict | None:
    """The Restore named ``NS/NAME`` (or ``NAME`` when only one namespace has it)."""
    namespace, _, name = ref.rpartition("/")
    found = [r for r in restores if (r.get("metadata") or {}).get("name") == name
             and (not namespace or (r.get("metadata") or {}).get("namespace") == namespace)]
    return found[0] if len(found) == 1 else None
