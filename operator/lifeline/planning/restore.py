"""Restore: the approval rules and the phase machine, as pure functions.

A production Restore runs only after ``spec.requiredApprovals`` (at least two)
distinct people approved it, none of them the requester, and as many and from whichever groups
the admin's approval policy asks (:mod:`lifeline.planning.approval_policy`). Who is who comes only
from the API server's admission requests: the mutating webhook
(:mod:`lifeline.webhooks.approvals`) writes the requester and every decision into
annotations that no request may edit directly (:data:`PROTECTED`), and seals them
(:data:`ANN_SEAL`, an HMAC over the Restore's identity, spec and records with a key only the
operator holds), and this module reads them back and counts them only when the seal holds: a
record written while the webhook was absent (or by someone who got past it) counts for nothing.
An objects Restore's records include the kinds its requester was checked for at creation
(:data:`ANN_CHECKED_KINDS`, :func:`lifeline.planning.objects_writer.writable`), under the same seal.
Nothing a user types into the spec or the status counts, and ``status.phase`` is never trusted on
its own: approval is recomputed from the sealed records on every reconcile.

Phases::

    PendingApproval --(enough approvals)--> Approved --(Job created)--> Running
          |                                                           |      |
          +--(any rejection)--> Rejected                  Succeeded <-+      +-> Failed

Rejected, Succeeded and Failed are final: a Restore is not retried in place
(create a new one, which needs new approvals).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field

from lifeline.api import RESTORE as INFO
from lifeline.api.validation import problems_in_spec
from lifeline.objects import EventPlan
from lifeline.labels import (ANN_APPROVE, ANN_CHECKED_KINDS, ANN_REJECT, ANN_REQUESTED_BY, ANN_REQUESTED_BY_TEAMS,
                             LABEL_RESTORE_STATE)
from lifeline.labels import ANN_APPROVALS as ANN_DECISIONS, ANN_APPROVALS_SEAL as ANN_SEAL

from . import approval_policy, conditions


# Written by the webhook alone; any request that edits them directly is refused.
PROTECTED = (ANN_REQUESTED_BY, ANN_REQUESTED_BY_TEAMS, ANN_CHECKED_KINDS, ANN_DECISIONS, ANN_SEAL)
# Requests a person writes (consumed by the webhook: it removes them and records a decision).
REQUESTS = (ANN_APPROVE, ANN_REJECT)

# The custom RBAC verb the ClusterRole lifeline-restore-approver grants on restores.
APPROVE_VERB = "approve"
APPROVER_ROLE = "lifeline-restore-approver"

PENDING, APPROVED, RUNNING = "PendingApproval", "Approved", "Running"
SUCCEEDED, FAILED, REJECTED = "Succeeded", "Failed", "Rejected"
PHASES = (PENDING, APPROVED, RUNNING, SUCCEEDED, FAILED, REJECTED)
FINAL = (SUCCEEDED, FAILED, REJECTED)
MAX_COMMENT = 256


# ---- the approval records ------------------------------------------------------------------------


def seal(key: bytes, body: dict, requester: str | None, decisions_text: str | None,
         checked_kinds: str | None = None) -> str:
    """The webhook's seal over what it records: which Restore (namespace, name, spec) and the records.

    ``checked_kinds``: an objects Restore's :data:`ANN_CHECKED_KINDS` (the kinds its requester was
    checked for, ``""`` for none); sealed only when recorded, so a Restore without it keeps its seal,
    and removing or adding the record breaks the seal (a list of six items is never one of five).
    """
    meta = body.get("metadata") or {}
    fields = [meta.get("namespace", ""), meta.get("name", ""), body.get("spec") or {}, requester or "",
              decisions_text or ""]
    if checked_kinds is not None:
        fields.append(str(checked_kinds))
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def seal_holds(key: bytes | None, body: dict, requester: str | None, records_text: str | None, given,
               checked_kinds: str | None = None) -> bool:
    """Is ``given`` the webhook's seal (:func:`seal`) over ``body``, ``requester``, ``records_text`` and
    ``checked_kinds``?"""
    if key is None or not isinstance(given, str):
        return False
    return hmac.compare_digest(given, seal(key, body, requester, records_text, checked_kinds))


def requester_teams(annotations: dict | None) -> tuple[str, ...]:
    """The requester's teams the webhook recorded (those an approval policy keeps apart)."""
    return tuple(t for t in ((annotations or {}).get(ANN_REQUESTED_BY_TEAMS) or "").split(",") if t)


def sealed_requester(annotations: dict | None) -> str | None:
    """What the seal says of the requester: the name, and the teams when any were recorded."""
    annotations = annotations or {}
    teams = requester_teams(annotations)
    requester = annotations.get(ANN_REQUESTED_BY)
    return f"{requester}\n{','.join(teams)}" if requester and teams else requester


def sealed(body: dict, key: bytes | None) -> bool:
    """Were the requester, the kinds checked (an objects Restore) and the decisions on ``body`` written by
    the webhook holding ``key``?"""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return seal_holds(key, body, sealed_requester(annotations), annotations.get(ANN_DECISIONS),
                      annotations.get(ANN_SEAL), annotations.get(ANN_CHECKED_KINDS))


def changed(old: dict | None, new: dict | None, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Which of ``keys`` (records only the webhook writes) a request changes: a forgery to refuse."""
    old, new = old or {}, new or {}
    return tuple(k for k in keys if old.get(k) != new.get(k))


def decisions(annotations: dict | None) -> list[dict]:
    """The decisions the webhook recorded, oldest first (an unreadable record counts as none)."""
    raw = (annotations or {}).get(ANN_DECISIONS)
    if not raw:
        return []
    try:
        found = json.loads(raw)
    except ValueError:
        return []
    return [d for d in found if isinstance(d, dict) and d.get("user") and d.get("decision") in ("Approved", "Rejected")] \
        if isinstance(found, list) else []


def encode(records: list[dict]) -> str:
    return json.dumps(records, separators=(",", ":"), sort_keys=True)


def counted(records: list[dict], requester: str | None) -> list[dict]:
    """The decisions that count: one per person (their first), never the requester's."""
    seen: set[str] = set()
    out = []
    for d in records:
        if d["user"] == requester or d["user"] in seen:
            continue
        seen.add(d["user"])
        out.append(d)
    return out


@dataclass(frozen=True)
class Request:
    """What an admission request asks of the approval records."""

    decision: str | None  # "Approved" | "Rejected" | None (no approve/reject annotation)
    comment: str = ""
    forged: tuple[str, ...] = ()  # protected annotations the request tried to change


def read_request(old_annotations: dict | None, new_annotations: dict | None) -> Request:
    """Which decision a CREATE (old None) or UPDATE asks for, and which protected keys it touches."""
    new = new_annotations or {}
    forged = changed(old_annotations, new, PROTECTED)
    if ANN_REJECT in new:
        return Request("Rejected", str(new[ANN_REJECT])[:MAX_COMMENT], forged)
    if ANN_APPROVE in new:
        return Request("Approved", str(new[ANN_APPROVE])[:MAX_COMMENT], forged)
    return Request(None, "", forged)


SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def refusal(request: Request, *, user: str, requester: str | None, records: list[dict], phase: str | None,
            may_decide: bool) -> str | None:
    """Why the webhook must refuse this decision, or None when it may be recorded.

    ``may_decide``: the SubjectAccessReview's answer to "may ``user`` approve this restore?".
    """
    verb = "approve" if request.decision == "Approved" else "reject"
    if phase in FINAL or phase == RUNNING:
        return f"this Restore is {phase}: it can no longer be {verb}d"
    if user.startswith(SERVICE_ACCOUNT_PREFIX) and request.decision == "Approved":
        return (f"{user} is a ServiceAccount: approvals are people's (a ServiceAccount's token can be used by "
                "anyone who can run a Pod as it, so it would be a second approver nobody can name)")
    if request.decision == "Approved" and user == requester:
        return (f"{user} requested this restore and cannot approve it: two other people holding the "
                f"{APPROVER_ROLE} role must approve it")
    if not may_decide and not (request.decision == "Rejected" and user == requester):
        return (f"{user} may not {verb} restores here: {verb}al needs the RBAC verb '{APPROVE_VERB}' on "
                f"restores.dr.lifeline.io, granted by a RoleBinding to the ClusterRole {APPROVER_ROLE}")
    if any(d["user"] == user for d in records):
        return (f"{user} already decided on this restore; a second decision by the same person does not "
                "count: ask another approver")
    return None


# ---- the phase machine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFacts:
    """What the restore Job says: phase Pending|Running|Succeeded|Failed, the agent's message."""

    name: str
    phase: str
    message: str = ""
    start: str | None = None
    end: str | None = None
    bytes_restored: int | None = None
    objects: dict | None = None  # an objects restore: status.objects (counts, failures, claims with data)


@dataclass(frozen=True)
class Note(EventPlan):
    """An Event to post, and maybe an audit record to write, once the status write succeeded."""

    audit: tuple[str, str, str] | None = None  # (action, actor, outcome)


@dataclass
class Plan:
    status: dict  # the status as it should be
    notes: list[Note] = field(default_factory=list)
    create_job: bool = False
    switch_claim: bool = False  # NewClaim: mark the verified claim ready (the switch)
    mark_failed: bool = False  # label the target claim dr.lifeline.io/restore-state=failed

    @property
    def phase(self) -> str:
        return self.status["phase"]


def _approvals_status(records: list[dict], requester: str | None) -> list[dict]:
    return [{k: v for k, v in (("user", d["user"]), ("time", d.get("time")), ("decision", d["decision"]),
                               ("comment", d.get("comment") or None), ("groups", d.get("groups") or None))
             if v is not None}
            for d in counted(records, requester)]


def plan(body: dict, job: JobFacts | None, now: str, *, switched: bool = False,
         blocked: tuple[str, str] | None = None, records_sealed: bool = False,
         policy: approval_policy.ApprovalPolicy = approval_policy.DEFAULT) -> Plan:
    """The status a Restore should have now, and what to do to get on.

    ``job`` is the restore Job (None until created); ``switched`` says the NewClaim switch
    (see :mod:`lifeline.planning.restore_run`) was applied; ``blocked`` is ``(reason, message)``
    when an approved restore cannot start (its RecoveryPoint or policy is gone, no copy is readable);
    ``records_sealed`` is :func:`sealed` of the body: without it no approval or rejection counts;
    ``policy`` is the admin's approval policy for this Restore (:mod:`~lifeline.planning.approval_policy`).
    """
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    old = dict(body.get("status") or {})
    generation = meta.get("generation")
    annotations = meta.get("annotations") or {}
    has_records = bool(annotations.get(ANN_REQUESTED_BY) or annotations.get(ANN_DECISIONS)) \
        or annotations.get(ANN_CHECKED_KINDS) is not None
    unsealed = has_records and not records_sealed
    requester = None if unsealed else annotations.get(ANN_REQUESTED_BY) or old.get("requestedBy")
    records = [] if unsealed else decisions(annotations)
    valid = counted(records, requester)
    tally = approval_policy.tally(policy, [d for d in valid if d["decision"] == "Approved"],
                                  int(spec.get("requiredApprovals") or approval_policy.MIN_APPROVALS),
                                  () if unsealed else requester_teams(annotations))
    required = tally.required
    phase = old.get("phase")
    _, problems = problems_in_spec(INFO, spec)

    status = {k: v for k, v in old.items()}
    status["observedGeneration"] = generation
    if requester:
        status["requestedBy"] = requester
    status["approvals"] = _approvals_status(records, requester)
    status["approvalPolicy"] = policy.name
    status["missingGroups"] = list(tally.missing_groups)
    notes: list[Note] = []
    out = Plan(status, notes)
    cond = list(old.get("conditions") or [])

    def set_cond(type_: str, value: bool | None, reason: str, message: str) -> None:
        nonlocal cond
        cond = conditions.merge(cond, conditions.make(type_, value, reason, message, generation), now)

    if problems:
        message = "; ".join(str(p) for p in problems)
        set_cond("Ready", False, "InvalidSpec", message + " (delete this Restore and create a corrected one)")
    else:
        set_cond("Ready", True, "SpecValid", "Restore spec is valid")

    approved_by = list(tally.approvers)
    rejected = [d for d in valid if d["decision"] == "Rejected"]
    if phase is None:
        notes.append(Note("Normal", "RestoreRequested",
                          f"restore of {spec.get('recoveryPoint')} requested by {requester or 'unknown'}: "
                          f"{spec.get('reason', '')}; waiting for {required} approvals"
                          + (f", one from each of {', '.join(policy.from_groups)}" if policy.from_groups else ""),
                          ("restore", requester or "unknown", "requested")))
    # Newly recorded decisions (audited once, when they first appear in status).
    before = {(a.get("user"), a.get("decision")) for a in old.get("approvals") or []}
    for d in valid:
        if (d["user"], d["decision"]) in before:
            continue
        action = "approval" if d["decision"] == "Approved" else "rejection"
        comment = f": {d['comment']}" if d.get("comment") else ""
        if d["user"] in tally.same_team:
            teams = ", ".join(approval_policy.same_team(policy, d.get("groups") or (), requester_teams(annotations)))
            notes.append(Note("Warning", "ApprovalNotCounted",
                              f"approval by {d['user']} does not count: the same team ({teams}) as the requester "
                              f"{requester} (approval policy {policy.name} keeps teams apart)",
                              ("approval", d["user"], "not-counted")))
            continue
        notes.append(Note("Normal" if action == "approval" else "Warning",
                          "Approved" if action == "approval" else "Rejected",
                          f"{action} by {d['user']}{comment}", (action, d["user"], "succeeded")))

    if phase in FINAL:
        pass
    elif problems:
        phase = FAILED
        status.update(reason="InvalidSpec", message="; ".join(str(p) for p in problems))
        notes.append(Note("Warning", "InvalidSpec", status["message"], ("restore", "lifeline-operator", "refused")))
    elif rejected and phase in (None, PENDING, APPROVED):
        phase = REJECTED
        who = ", ".join(d["user"] for d in rejected)
        status.update(reason="Rejected", message=f"rejected by {who}" + (
            f": {rejected[0]['comment']}" if rejected[0].get("comment") else ""))
    elif phase in (None, PENDING, APPROVED):  # Approved is recomputed too: a status is not evidence
        if tally.met:
            phase = APPROVED
            status.update(reason="Approved", message=f"approved by {', '.join(approved_by)}")
        elif unsealed:
            phase = PENDING
            status.update(reason="ApprovalsNotSealed", message=(
                "the requester and approval records on this Restore were not written by Lifeline's admission "
                "webhook (no valid seal), so none of them count: was it created or approved while the webhook "
                "was not running? Delete it and create it again with the webhook in place"))
        else:
            phase = PENDING
            status.update(reason="WaitingForApprovals",
                          message=f"{tally.summary()}; the requester ({requester or 'unknown'}) cannot approve")
    if phase == APPROVED:
        if job is None and blocked is not None:
            phase = FAILED
            status.update(reason=blocked[0], message=blocked[1])
            status["completionTime"] = now
            notes.append(Note("Warning", blocked[0], blocked[1], ("restore", requester or "unknown", "failed")))
        elif job is None:
            out.create_job = True
        else:
            phase = RUNNING
            status.update(reason="Restoring", message=f"Job {job.name} restores {spec.get('recoveryPoint')}")
            status.setdefault("startTime", job.start or now)
            status["jobName"] = job.name
            notes.append(Note("Normal", "RestoreStarted", status["message"],
                              ("restore", requester or "unknown", "started")))
    if phase == RUNNING and job is not None and job.phase in ("Succeeded", "Failed"):
        if job.objects is not None:
            status["objects"] = job.objects
        if job.phase == "Failed":
            phase = FAILED
            status.update(reason="RestoreFailed", message=_failure_message(job, spec))
            status["completionTime"] = job.end or now
            notes.append(Note("Warning", "RestoreFailed", status["message"],
                              ("restore", requester or "unknown", "failed")))
            out.mark_failed = "not empty" not in (job.message or "") and bool((spec.get("target") or {}).get("pvc"))
        elif (spec.get("strategy") or "NewClaim") == "NewClaim" and not switched:
            out.switch_claim = True
        else:
            phase = SUCCEEDED
            if job.bytes_restored is not None:
                status["bytesRestored"] = job.bytes_restored
            status["completionTime"] = job.end or now
            target = (spec.get("target") or {}).get("pvc") or {}
            switch = (f"; claim {target.get('claimName')} marked ready "
                      f"(label {LABEL_RESTORE_STATE}=verified)") if switched and target else ""
            status.update(reason="Restored", message=f"{spec.get('recoveryPoint')} restored by Job {job.name}"
                                                     f"{switch}{_objects_said(job.objects)}")
            notes.append(Note("Normal", "RestoreSucceeded", status["message"],
                              ("restore", requester or "unknown", "succeeded")))
    status["phase"] = phase
    if phase in (APPROVED, RUNNING, SUCCEEDED) or approved_by:
        set_cond("Approved", tally.met, "Approved" if tally.met else "WaitingForApprovals", tally.summary())
    if phase == REJECTED:
        set_cond("Approved", False, "Rejected", status["message"])
    if phase in (SUCCEEDED, FAILED):
        set_cond("Complete", phase == SUCCEEDED, status["reason"], status["message"])
    status["conditions"] = cond
    return out


def _objects_said(objects: dict | None) -> str:
    """``: 12 created, 3 skipped; claims with their data: his-data`` for an objects restore."""
    if not objects:
        return ""
    counts = ", ".join(f"{n} {what}" for what, n in sorted((objects.get("counts") or {}).items()))
    claims = objects.get("claimsWithData") or []
    return f": {counts or 'no objects'}" + (f"; claims with their data: {', '.join(claims)}" if claims else "")


def _failure_message(job: JobFacts, spec: dict) -> str:
    text = (job.message or "").strip() or "the restore Job failed without a message"
    hint = ""
    if (spec.get("target") or {}).get("objects"):
        hint = (" — nothing that was there was deleted; objects written before the failure stay (status.objects "
                "and the Job's log name each one); fix the cause and create a new Restore (existing: Skip "
                "leaves what is back)")
    elif "not empty" in text and not spec.get("overwrite"):
        hint = " — nothing was written; to replace the data there, create a new Restore with overwrite: true"
    elif (spec.get("target") or {}).get("command"):
        hint = (" — the database may hold a partial restore: empty it (or restore into a fresh one) "
                "before restoring again")
    elif "not empty" not in text:
        hint = (f" — the target may hold a partial restore: it is marked {LABEL_RESTORE_STATE}=failed; "
                "create a new Restore (overwrite: true) to restore again")
    return f"Job {job.name}: {text[:1500]}{hint}"


def unchanged(body: dict, status: dict) -> bool:
    """Whether writing ``status`` would change nothing (a resync writes nothing)."""
    return (body.get("status") or {}) == status
