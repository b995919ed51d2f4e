"""``/shred-approvals``: who asked to destroy a recovery point's keys, and who approved it.

Mutating, on RecoveryPoint UPDATE (the rules are :mod:`lifeline.planning.shred_approval`). A
``dr.lifeline.io/shred-request`` annotation records the requester (the admission request's user)
and the reason; a ``dr.lifeline.io/shred-approve`` annotation from another person who may
``shred`` recoverypoints there (a SubjectAccessReview) is appended to the approvals. The request
annotations are consumed, the records sealed with the webhook's key, and any request that changes
the records directly is refused. Refusals are audited as the Restore approvals' are
(:func:`lifeline.webhooks.approvals.refuse`).
"""
from __future__ import annotations

import logging

import kopf

from lifeline.api import RECOVERY_POINT as INFO
from lifeline.clock import rfc3339
from lifeline.kube import KubeError
from lifeline.planning import restore as restore_rules
from lifeline.planning import shred_approval as rules

from .approvals import refuse, user_may
from .seal_key import seal_key

log = logging.getLogger(__name__)

HANDLER_ID = "shred-approvals"


def _forged(keys: tuple[str, ...]) -> str:
    return (f"{', '.join(keys)} {'is' if len(keys) == 1 else 'are'} written by Lifeline's admission webhook only: "
            f"ask with {rules.ANN_REQUEST}=\"why\", approve with {rules.ANN_APPROVE}=\"comment\"")


class ShredApprovals:
    def __init__(self, ctx):
        self.ctx = ctx

    async def may_review(self, userinfo: dict, namespace: str, name: str) -> bool:
        return await user_may(self.ctx.kube, userinfo, namespace=namespace, verb=rules.VERB, group=INFO.group,
                              resource=INFO.plural, name=name)

    async def review(self, body: dict, old: dict | None, userinfo: dict, patch, dryrun: bool, verified: bool) -> None:
        user = userinfo.get("username") or ""
        meta = body.get("metadata") or {}
        new_ann = meta.get("annotations") or {}
        old_ann = ((old or {}).get("metadata") or {}).get("annotations") or {}
        ask = rules.read_ask(old_ann, new_ann)
        said = dict(user=user, body=body, dryrun=dryrun, verified=verified, kind="RecoveryPoint")
        if ask.forged:
            refuse(_forged(ask.forged), action="key-shred", **said)
        if ask.kind is None:
            return
        requester = new_ann.get(rules.ANN_REQUESTED_BY)
        records = rules.approvals(new_ann)
        allowed = False
        if ask.kind == "approve":
            try:
                allowed = await self.may_review(userinfo, meta.get("namespace", ""), meta.get("name", ""))
            except KubeError as exc:
                raise kopf.AdmissionError(f"could not check whether {user} may approve shreds (SubjectAccessReview "
                                          f"failed: {exc}); try again", code=503) from None
        why = rules.refusal(ask, user=user, requester=requester, records=records, may_review=allowed)
        if why:
            refuse(why, action="key-shred" if ask.kind == "request" else "approval", **said)
        annotations = patch.setdefault("metadata", {}).setdefault("annotations", {})
        written = dict(new_ann)
        if ask.kind == "request":
            requester = user
            annotations[rules.ANN_REQUESTED_BY] = written[rules.ANN_REQUESTED_BY] = user
            annotations[rules.ANN_REASON] = written[rules.ANN_REASON] = ask.text
        else:
            record = {"user": user, "time": rfc3339(self.ctx.clock.now())}
            if ask.text:
                record["comment"] = ask.text
            annotations[rules.ANN_APPROVALS] = written[rules.ANN_APPROVALS] = restore_rules.encode(records + [record])
        annotations[rules.ANN_SEAL] = rules.seal(seal_key(self.ctx.options), body, requester, written)
        for key in rules.REQUESTS:
            if key in new_ann:
                annotations[key] = None  # consumed


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    reviews = ShredApprovals(ctx)

    @kopf.on.mutate(INFO.group, INFO.version, INFO.plural, id=HANDLER_ID, registry=registry, operations=["UPDATE"])
    async def shred_approvals(body, old, userinfo, patch, dryrun, subresource, sslpeer, **_):
        if subresource:
            return
        await reviews.review(dict(body), dict(old) if old is not None else None, dict(userinfo or {}), patch,
                             bool(dryrun), verified=bool(sslpeer))
