"""Helpers about Kubernetes objects that the planners share: one place for each.

Pure functions on plain dicts, as the API serves objects: who owns a child, and the merge patch that
turns what is stored into what should be; and the Event a planner asks to post about an object.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lifeline import GROUP, VERSION

CRONJOB_NAME_MAX = 52  # the CronJob controller appends an 11-character suffix to Job names


@dataclass(frozen=True)
class EventPlan:
    """A Kubernetes Event to post about the object planned for."""

    type: str  # Normal | Warning
    reason: str
    message: str


def owner_reference(body: dict, *, controller: bool = True) -> dict:
    """An owner reference to ``body`` (a Lifeline object), so the garbage collector takes the child with it.

    No blockOwnerDeletion: setting it needs update rights on the owner's finalizers."""
    meta = body.get("metadata") or {}
    return {"apiVersion": body.get("apiVersion") or f"{GROUP}/{VERSION}", "kind": body.get("kind") or "BackupPolicy",
            "name": meta["name"], "uid": meta.get("uid", ""), "controller": controller}


def merge_patch(old, new):
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: objects merge, keys that went
    become null, anything else is replaced whole."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = {k: None for k in old if k not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            out[key] = merge_patch(old.get(key), value)
    return out


def short_hash(text: str, n: int = 6) -> str:
    """A few hex digits of a name's SHA-256: what keeps a shortened name unique."""
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def child_name(policy: str, suffix: str, limit: int = CRONJOB_NAME_MAX) -> str:
    """``<policy>-<suffix>``, truncated with a hash of the policy name when too long."""
    name = f"{policy}-{suffix}"
    if len(name) <= limit:
        return name
    h = short_hash(policy)
    keep = limit - len(suffix) - len(h) - 2
    return f"{policy[:keep].rstrip('-.')}-{h}-{suffix}"


def label_value(name: str) -> str:
    """A name as a label value (at most 63 characters)."""
    if len(name) <= 63:
        return name
    return f"{name[:56].rstrip('-.')}-{short_hash(name)}"
