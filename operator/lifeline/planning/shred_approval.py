"""Reviewed destruction: a crypto-shred needs the word of a second person, as pure rules.

Destroying a recovery point's keys cannot be undone, so a hospital asks for a designated person's
authorization and a second review. A RecoveryPoint of a ``deletionPolicy: Shred`` policy that is
deleted is held by its finalizer (:mod:`lifeline.controllers.shred`) until

1. someone asks for the shred: ``kubectl annotate recoverypoint P dr.lifeline.io/shred-request="why"``
   (or ``lifeline shred request P``), before or after deleting it, and
2. another person holding the ``shred`` verb on recoverypoints (the ClusterRole
   ``lifeline-shred-reviewer``) approves: ``dr.lifeline.io/shred-approve="comment"``.

As with Restore approvals (:mod:`lifeline.planning.restore`), the mutating webhook
(:mod:`lifeline.webhooks.shred_approvals`) turns those annotations into records nobody may write
directly, with identities from the admission request, and seals them with the webhook's key; the
shred starts only when the seal holds. There is no emergency path around it: an admin who must
destroy keys at once approves as the second person, and both names are audited.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from lifeline.labels import ANN_SHRED_APPROVALS as ANN_APPROVALS, ANN_SHRED_APPROVE as ANN_APPROVE
from lifeline.labels import ANN_SHRED_REASON as ANN_REASON, ANN_SHRED_REQUEST as ANN_REQUEST
from lifeline.labels import ANN_SHRED_REQUESTED_BY as ANN_REQUESTED_BY, ANN_SHRED_SEAL as ANN_SEAL

from . import restore

PROTECTED = (ANN_REQUESTED_BY, ANN_REASON, ANN_APPROVALS, ANN_SEAL)
REQUESTS = (ANN_REQUEST, ANN_APPROVE)
VERB = "shred"
REVIEWER_ROLE = "lifeline-shred-reviewer"
MAX_TEXT = 256


@dataclass(frozen=True)
class Ask:
    """What an admission request asks of the shred records."""

    kind: str | None  # "request" | "approve" | None
    text: str = ""
    forged: tuple[str, ...] = ()


def read_ask(old_annotations: dict | None, new_annotations: dict | None) -> Ask:
    new = new_annotations or {}
    forged = restore.changed(old_annotations, new, PROTECTED)
    if ANN_APPROVE in new:
        return Ask("approve", str(new[ANN_APPROVE])[:MAX_TEXT], forged)
    if ANN_REQUEST in new:
        return Ask("request", str(new[ANN_REQUEST])[:MAX_TEXT], forged)
    return Ask(None, "", forged)


def approvals(annotations: dict | None) -> list[dict]:
    raw = (annotations or {}).get(ANN_APPROVALS)
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [a for a in found if isinstance(a, dict) and a.get("user")] if isinstance(found, list) else []


def _sealed_text(annotations: dict) -> str:
    return json.dumps([annotations.get(ANN_REASON) or "", annotations.get(ANN_APPROVALS) or ""], separators=(",", ":"))


def seal(key: bytes, body: dict, requester: str | None, annotations: dict) -> str:
    """The webhook's seal over the point (namespace, name, spec), its requester, reason and approvals."""
    return restore.seal(key, body, requester, _sealed_text(annotations))


def refusal(ask: Ask, *, user: str, requester: str | None, records: list[dict], may_review: bool) -> str | None:
    """Why the webhook must refuse this request or approval (None: record it)."""
    if ask.kind == "request":
        if requester and requester != user:
            return f"{requester} already asked for this shred; approve it or leave it"
        return None
    if not requester:
        return ("nobody asked for this shred yet: first `lifeline shred request NAME --reason \"why\"` (or `kubectl "
                f"annotate recoverypoint NAME {ANN_REQUEST}=\"why\"`), then a second person approves")
    if user.startswith(restore.SERVICE_ACCOUNT_PREFIX):
        return f"{user} is a ServiceAccount: destroying keys is approved by people"
    if user == requester:
        return (f"{user} asked for this shred and cannot approve it: a second person holding the {REVIEWER_ROLE} "
                "role must")
    if not may_review:
        return (f"{user} may not approve shreds here: that needs the RBAC verb '{VERB}' on recoverypoints.dr.lifeline.io, "
                f"granted by a RoleBinding to the ClusterRole {REVIEWER_ROLE}")
    if any(a["user"] == user for a in records):
        return f"{user} already approved this shred"
    return None


def approved_by(body: dict, key: bytes | None) -> tuple[str, str] | None:
    """``(requester, approver)`` when a sealed request and a second person's sealed approval are on ``body``."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    requester = annotations.get(ANN_REQUESTED_BY)
    if not requester or not restore.seal_holds(key, body, requester, _sealed_text(annotations),
                                               annotations.get(ANN_SEAL)):
        return None
    others = [a["user"] for a in approvals(annotations) if a["user"] != requester]
    return (requester, others[0]) if others else None


def waiting(body: dict) -> str:
    """What a held shred waits for, for a person (the Event and the point's condition say it)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    name = (body.get("metadata") or {}).get("name", "NAME")
    requester = annotations.get(ANN_REQUESTED_BY)
    if not requester:
        return (f"its keys are destroyed only when someone asks (lifeline shred request {name} --reason \"why\", "
                f"or the annotation {ANN_REQUEST}=\"why\") and a second person with the {REVIEWER_ROLE} role "
                f"approves (lifeline shred approve {name}, or {ANN_APPROVE}=\"comment\")")
    return (f"{requester} asked to destroy its keys; a second person with the {REVIEWER_ROLE} role must approve: "
            f"lifeline shred approve {name} (or kubectl annotate recoverypoint {name} {ANN_APPROVE}=\"comment\")")
