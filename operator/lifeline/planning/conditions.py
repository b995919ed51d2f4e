"""Conditions in the standard shape, set the way Kubernetes controllers set them."""
from __future__ import annotations

from lifeline.api.common import Condition

MAX_MESSAGE = 4000


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
    """
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
