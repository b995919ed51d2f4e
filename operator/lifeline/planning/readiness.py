"""Decide a resource's Ready condition from whether its spec is valid.

Ready carries kstatus's companions (``Stalled`` True on an invalid spec; see
:func:`lifeline.planning.conditions.companions`), so Flux health checks read a broken
object as Failed rather than Current, and ``observedGeneration`` marks a spec not yet seen.

Pure: body in, the status patch to write (or nothing) and the Event to post
(or nothing) out. The controller only acts on the answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from lifeline.api import KindInfo
from lifeline.api.validation import problems_in_spec
from lifeline.objects import EventPlan

from . import conditions

READY = "Ready"


@dataclass(frozen=True)
class StatusPlan:
    patch: dict | None  # merge patch for the status subresource; None means write nothing
    event: EventPlan | None
    valid: bool


def plan(info: KindInfo, body: dict, now: str) -> StatusPlan:
    """What the status should say about the spec at its current generation."""
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    status = body.get("status") or {}
    _, problems = problems_in_spec(info, body.get("spec"))

    if problems:
        message = "; ".join(str(p) for p in problems)
        wanted = conditions.make(READY, False, "InvalidSpec", message, generation)
    else:
        wanted = conditions.make(READY, True, "SpecValid", f"{info.kind} spec is valid", generation)

    old = conditions.find(status.get("conditions"), READY)
    new_conditions = conditions.merge(status.get("conditions"), wanted, now)
    # Unchanged also covers Ready's kstatus companions (Stalled, Reconciling: see conditions.merge),
    # so a status written before they existed gains them on the next event.
    unchanged = (status.get("observedGeneration") == generation and old is not None and _same(old, wanted)
                 and new_conditions == list(status.get("conditions") or []))
    if unchanged:
        return StatusPlan(patch=None, event=None, valid=not problems)

    event = None
    if problems and (old is None or old.get("message") != wanted["message"]):
        event = EventPlan("Warning", "InvalidSpec", wanted["message"])
    elif not problems and old is not None and old.get("status") == "False":
        event = EventPlan("Normal", "SpecValid", f"{info.kind} spec is valid again")
    patch = {"observedGeneration": generation, "conditions": new_conditions}
    return StatusPlan(patch=patch, event=event, valid=not problems)


def _same(old: dict, wanted: dict) -> bool:
    keys = ("status", "reason", "message", "observedGeneration")
    return all(old.get(k) == wanted.get(k) for k in keys)
