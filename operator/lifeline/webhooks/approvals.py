"""``/restore-approvals``: who asked for a restore, and who approved or rejected it.

The identity is the admission request's ``userInfo`` -- what the API server
authenticated -- never a field a user fills in. On CREATE the requester is recorded
in ``dr.lifeline.io/requested-by``. On UPDATE a ``dr.lifeline.io/approve`` or
``dr.lifeline.io/reject`` annotation (as ``kubectl annotate`` or ``lifeline restore
approve`` write it) is consumed: the webhook checks with a SubjectAccessReview that the
user may ``approve`` this restore, refuses the requester and a second decision by the
same person, removes the request annotation and appends the decision to
``dr.lifeline.io/approvals``. Both records are the webhook's alone: any request that
changes them directly is refused, whoever sends it.

On CREATE of an objects Restore into this cluster it also records the kinds the point's policy
selects then (``dr.lifeline.io/checked-kinds``; none when the point or policy cannot be found): the
validating webhook, which the API server calls after this one, checks the requester for exactly
those (:mod:`.restore_authors`), and the controller gives the writer no kind outside them
(:func:`lifeline.planning.objects_writer.writable`). The seal covers that record with the
requester's. A decision carries the record forward under the new seal only when the stored seal
holds: a record written past the webhook (or under a rotated key) becomes "none checked", so a kind
list nobody checked is never sealed.

Refused attempts are audited here (the controller audits recorded decisions when it
copies them into ``status.approvals``); dry runs are checked but not audited. Only a caller
that proved to be the API server (a client certificate the server verified:
``--webhook-client-ca``) is audited: anyone who reaches the port can send a review naming any
user, and the audit trail must not carry what they made up. Without it, refusals are logged.
"""
from __future__ import annotations

import logging

import kopf

from lifeline.api import RESTORE as INFO
from lifeline.clock import rfc3339
from lifeline.kube import KubeError
from lifeline.observability import audit
from lifeline.planning import approval_policy, objects_writer, restore as rules

from .restore_authors import checks_kinds, selected
from .seal_key import seal_key

log = logging.getLogger(__name__)

HANDLER_ID = "restore-approvals"


def _forged_message(keys: tuple[str, ...]) -> str:
    return (f"{', '.join(keys)} {'is' if len(keys) == 1 else 'are'} written by Lifeline's admission webhook "
            f"only: approve with `kubectl annotate restore NAME {rules.ANN_APPROVE}=\"comment\"` "
            f"or `lifeline restore approve NAME`")


def refuse(message: str, *, user: str, body: dict, dryrun: bool, verified: bool, action: str = "approval",
           kind: str = "Restore") -> None:
    """Refuse the admission request (403), audited when the caller is the verified API server."""
    meta = body.get("metadata") or {}
    if not dryrun and not verified:
        log.warning("%s by %s refused on %s %s/%s (not audited: the caller is not verified as the API "
                    "server; set --webhook-client-ca): %s", action, user, kind, meta.get("namespace", ""),
                    meta.get("name", ""), message)
    elif not dryrun:
        audit.record(action, actor=user, outcome="refused",
                     subject={"kind": kind, "namespace": meta.get("namespace", ""), "name": meta.get("name", "")},
                     details={"reason": message})
    raise kopf.AdmissionError(message, code=403)


async def user_may(kube, userinfo: dict, **attributes) -> bool:
    """May the admission request's user (``userInfo``, as the API server authenticated it) do this?"""
    return await kube.access_review(user=userinfo.get("username", ""), groups=list(userinfo.get("groups") or []),
                                    uid=userinfo.get("uid"), extra=userinfo.get("extra"), **attributes)


def _annotations(patch) -> dict:
    return patch.setdefault("metadata", {}).setdefault("annotations", {})


class Approvals:
    def __init__(self, ctx):
        self.ctx = ctx
        # the approver's groups worth keeping with a decision: those an approval policy asks for
        self.named_groups = approval_policy.named_groups(ctx.approval_policies)
        # the requester's groups worth keeping with a request: the teams a policy keeps apart
        self.team_groups = approval_policy.team_groups(ctx.approval_policies)

    async def may_decide(self, userinfo: dict, namespace: str, name: str, target: str | None = None) -> bool:
        """The approve verb on this Restore, and (for a target in another namespace) on restores there:
        an approver of one namespace cannot send data into another."""
        for where in dict.fromkeys([namespace, target or namespace]):
            allowed = await user_may(self.ctx.kube, userinfo, namespace=where, verb=rules.APPROVE_VERB,
                                     group=INFO.group, resource=INFO.plural, name=name if where == namespace else None)
            if not allowed:
                return False
        return True

    async def _selected(self, body: dict, user: str):
        """The kinds the Restore's point's policy selects now (:func:`.restore_authors.selected`)."""
        meta = body.get("metadata") or {}
        try:
            return await selected(self.ctx.kube, meta.get("namespace", ""),
                                  (body.get("spec") or {}).get("recoveryPoint") or "")
        except KubeError as exc:
            log.warning("reading the selection of Restore %s/%s failed: %s", meta.get("namespace", ""),
                        meta.get("name", ""), exc)
            raise kopf.AdmissionError(f"could not read what the point's policy selects, to check {user} for it "
                                      f"({exc}); try again", code=503) from None

    async def review(self, body: dict, old: dict | None, operation: str, userinfo: dict, patch, dryrun: bool,
                     verified: bool = False) -> None:
        """``verified``: the caller showed a client certificate the server checked (the API server)."""
        user = userinfo.get("username") or ""
        meta = body.get("metadata") or {}
        new_ann = meta.get("annotations") or {}
        old_ann = ((old or {}).get("metadata") or {}).get("annotations") or {} if operation == "UPDATE" else None
        request = rules.read_request(old_ann, new_ann)
        if request.forged:
            refuse(_forged_message(request.forged), user=user, body=body, dryrun=dryrun, verified=verified)
        if operation == "CREATE":
            if request.decision:
                refuse("a Restore cannot carry an approval when it is created: the requester cannot approve; "
                        f"remove {rules.ANN_APPROVE}/{rules.ANN_REJECT}", user=user, body=body, dryrun=dryrun,
                        verified=verified)
            annotations = _annotations(patch)
            annotations[rules.ANN_REQUESTED_BY] = user
            teams = sorted(self.team_groups.intersection(userinfo.get("groups") or ()))
            if teams:  # what the API server said of the requester, for policies that keep teams apart
                annotations[rules.ANN_REQUESTED_BY_TEAMS] = ",".join(teams)
            if checks_kinds(body):  # what the validating webhook checks, and all the writer may ever get
                annotations[rules.ANN_CHECKED_KINDS] = objects_writer.record(await self._selected(body, user))
            annotations[rules.ANN_SEAL] = rules.seal(seal_key(self.ctx.options), body,
                                                     rules.sealed_requester(annotations), None,
                                                     annotations.get(rules.ANN_CHECKED_KINDS))
            return
        if not request.decision:
            return
        action = "approval" if request.decision == "Approved" else "rejection"
        requester = new_ann.get(rules.ANN_REQUESTED_BY)
        if not requester:
            refuse(f"this Restore has no recorded requester ({rules.ANN_REQUESTED_BY}): it was created while the "
                    "admission webhook was not running; delete it and create it again", user=user, body=body,
                    dryrun=dryrun, verified=verified, action=action)
        records = rules.decisions(new_ann)
        try:
            target_spec = (body.get("spec") or {}).get("target") or {}
            # a namespace of another cluster (objects through a kubeconfig) is not this cluster's to ask about
            elsewhere = bool((target_spec.get("objects") or {}).get("kubeconfigSecret"))
            target = None if elsewhere else target_spec.get("namespace")
            allowed = await self.may_decide(userinfo, meta.get("namespace", ""), meta.get("name", ""), target)
        except KubeError as exc:
            log.warning("SubjectAccessReview for %s failed: %s", user, exc)
            raise kopf.AdmissionError(f"could not check whether {user} may decide on restores "
                                      f"(SubjectAccessReview failed: {exc}); try again", code=503) from None
        phase = (body.get("status") or {}).get("phase")
        why = rules.refusal(request, user=user, requester=requester, records=records, phase=phase,
                            may_decide=allowed)
        if why:
            refuse(why, user=user, body=body, dryrun=dryrun, verified=verified, action=action)
        record = {"user": user, "time": rfc3339(self.ctx.clock.now()), "decision": request.decision}
        if request.comment:
            record["comment"] = request.comment
        groups = sorted(self.named_groups.intersection(userinfo.get("groups") or ()))
        if groups:
            record["groups"] = groups  # sealed with the rest: what the API server said, not the user
        annotations = _annotations(patch)
        annotations[rules.ANN_DECISIONS] = rules.encode(records + [record])
        sealing = seal_key(self.ctx.options)
        kinds = new_ann.get(rules.ANN_CHECKED_KINDS)
        if kinds and not rules.sealed(old or {}, sealing):  # not a record this webhook sealed: nothing was checked
            kinds = annotations[rules.ANN_CHECKED_KINDS] = ""
        annotations[rules.ANN_SEAL] = rules.seal(sealing, body, rules.sealed_requester(new_ann),
                                                 annotations[rules.ANN_DECISIONS], kinds)
        for key in rules.REQUESTS:
            if key in new_ann:
                annotations[key] = None  # consumed: the next `kubectl annotate` needs no --overwrite


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    approvals = Approvals(ctx)

    @kopf.on.mutate(INFO.group, INFO.version, INFO.plural, id=HANDLER_ID, registry=registry,
                    operations=["CREATE", "UPDATE"])
    async def restore_approvals(body, old, operation, userinfo, patch, dryrun, subresource, sslpeer, **_):
        if subresource:
            return
        # kopf hands over getpeercert(): empty unless the server verified a client certificate
        await approvals.review(dict(body), dict(old) if old is not None else None, operation, dict(userinfo or {}),
                               patch, bool(dryrun), verified=bool(sslpeer))
