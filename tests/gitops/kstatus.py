"""kstatus's rules (sigs.k8s.io/cli-utils/pkg/kstatus, what Flux's health checks run), in Python.

For a custom resource kstatus decides, in this order:

1. ``metadata.deletionTimestamp`` set: **Terminating**;
2. ``status.observedGeneration`` present and different from ``metadata.generation``:
   **InProgress** (the controller has not seen the latest spec);
3. a ``Reconciling`` condition with status True: **InProgress**; a ``Stalled`` condition
   with status True: **Failed** (the "abnormal-true" conditions);
4. otherwise **Current**.

kstatus itself ignores ``Ready``. Flux's convention (fluxcd/pkg runtime/conditions) ties
the three together: Ready=False must come with Stalled or Reconciling True, or kstatus
would call a broken object Current. :func:`problems` checks that convention.
"""
from __future__ import annotations

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


def _conditions(obj: dict) -> list[dict]:
    return list(((obj.get("status") or {}).get("conditions")) or [])


def compute(obj: dict) -> tuple[str, str]:
    """(status, message) as kstatus computes them for ``obj``."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return TERMINATING, "Resource scheduled for deletion"
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return IN_PROGRESS, f"{obj.get('kind')} generation is {generation}, but latest observed generation is {observed}"
    for cond in _conditions(obj):
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return IN_PROGRESS, cond.get("message", "")
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return FAILED, cond.get("message", "")
    return CURRENT, "Resource is current"


def problems(obj: dict) -> list[str]:
    """Where ``obj``'s status breaks the kstatus/Flux conventions (an empty list when it keeps them)."""
    out = []
    status = obj.get("status") or {}
    by_type = {c.get("type"): c for c in _conditions(obj)}
    ready = by_type.get("Ready")
    if status and "observedGeneration" not in status:
        out.append("status has no observedGeneration")
    if ready is None:
        out.append("no Ready condition")
        return out
    if ready.get("observedGeneration") not in (None, status.get("observedGeneration")):
        out.append(f"Ready is about generation {ready.get('observedGeneration')}, status about "
                   f"{status.get('observedGeneration')}")
    stalled = by_type.get("Stalled", {}).get("status") == "True"
    reconciling = by_type.get("Reconciling", {}).get("status") == "True"
    if ready.get("status") == "True" and (stalled or reconciling):
        out.append("Ready is True while Stalled or Reconciling is True")
    if ready.get("status") != "True" and not (stalled or reconciling):
        out.append(f"Ready is {ready.get('status')} ({ready.get('reason')}) with neither Stalled nor Reconciling "
                   "True: kstatus would call it Current")
    if stalled and reconciling:
        out.append("Stalled and Reconciling are both True")
    return out
