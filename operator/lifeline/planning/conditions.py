"""Conditions in the standard shape, set the way Kubernetes controllers set them."""
from __future__ import annotations

from lifeline.api.common import Condition

MAX_MESSAGE = 4000
READY, STALLED, RECONCILING = "Ready", "Stalled", "Reconciling"
# Ready=False reasons the controller gets past by itself on its next attempt (an API call that
# failed, a lookup not made yet, a cluster that does not answer now): the object is still being
# reconciled, not stuck.
TRANSIENT_REASONS = frozenset({"ApplyFailed", "LookupFailed", "Progressing", "Reconciling", "ClusterUnreachable"})


def make(type_: str, status: bool | None, reason: str, message: str, generation: int | None) -> dict:
    """A condition as the API stores it (without the transition time, which :func:`merge` sets)."""
    text = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
    cond = Condition(
        type=type_,
        status={True: "True", False: "False", None: "Unknown"}[status],
        reason=reason,
        message=text,
        observed_generation=generation,
    )
    return cond.wire()


def merge(current: list[dict] | None, new: dict, now: str) -> list[dict]:
    """``current`` with ``new`` in place of the condition of its type.

    lastTransitionTime moves only when the status flips, as kstatus and
    ``kubectl wait`` expect; other conditions keep their place and content.
    A ``Ready`` condition brings its kstatus companions along (:func:`companions`), so
    every controller that sets Ready speaks kstatus (Flux) without knowing it.
    """
    merged = _merge_one(current, new, now)
    if new.get("type") == READY:
        for companion in companions(new, merged):
            merged = _merge_one(merged, companion, now)
    return merged


def companions(ready: dict, current: list[dict] | None) -> list[dict]:
    """``Stalled`` and ``Reconciling`` as kstatus reads them, derived from a Ready condition.

    kstatus (what Flux's health checks use) calls an object Failed while ``Stalled`` is True
    and InProgress while ``Reconciling`` is True; Ready=False alone means nothing to it.
    Ready False for a reason a person must fix (an invalid spec, a missing key) is Stalled;
    Ready False for a transient reason, or Unknown, is Reconciling. A companion is added only
    when it must say True; one that exists already is turned False once Ready recovers, so
    a valid object's conditions stay exactly what its controller wrote.
    """
    status, reason = ready.get("status"), ready.get("reason") or READY
    stalled = status == "False" and reason not in TRANSIENT_REASONS
    reconciling = status == "Unknown" or (status == "False" and reason in TRANSIENT_REASONS)
    out = []
    for type_, on in ((STALLED, stalled), (RECONCILING, reconciling)):
        if on:
            out.append(dict(ready, type=type_, status="True"))
        elif find(current, type_) is not None:
            out.append(dict(ready, type=type_, status="False",
                            reason="Ready" if status == "True" else reason,
                            message="the object is Ready" if status == "True" else ready.get("message", "")))
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in out]


def _merge_one(current: list[dict] | None, new: dict, now: str) -> list[dict]:
    current = list(current or [])
    old = next((c for c in current if c.get("type") == new["type"]), None)
    stamped = dict(new)
    if old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
        stamped["lastTransitionTime"] = old["lastTransitionTime"]
    else:
        stamped["lastTransitionTime"] = now
    if old is None:
        return current + [stamped]
    return [stamped if c is old else c for c in current]


def find(conditions: list[dict] | None, type_: str) -> dict | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
