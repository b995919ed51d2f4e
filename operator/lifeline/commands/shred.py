"""`lifeline shred request|approve|status POINT`: reviewed destruction of a RecoveryPoint's keys.

A RecoveryPoint of a ``deletionPolicy: Shred`` policy that is deleted keeps its keys until one person
asked for the shred and a second person holding the ``lifeline-shred-reviewer`` role approved it
(:mod:`lifeline.planning.shred_approval`). ``request`` and ``approve`` do exactly what ``kubectl annotate
recoverypoint POINT dr.lifeline.io/shred-request="reason"`` (``dr.lifeline.io/shred-approve="comment"``)
does, with the caller's own credentials: the admission webhook takes the identity from the API server,
checks it and seals the records -- or refuses, and the refusal is printed as it came. ``request
--delete`` then deletes the point: its finalizer holds it, keys alive, until the approval. ``status``
prints the webhook's records, the operator's ``ShredApproved`` condition and what is still missing.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from lifeline.api import BACKUP_POLICY as POLICY, RECOVERY_POINT as INFO
from lifeline.kube import KubeError
from lifeline.planning import conditions, shred_approval as rules
from lifeline.planning import recoverypoint_shred as shred

from .backup import _command_group, _kube, _namespace
from .fetch import get_named


def register(sub) -> None:
    inner, named = _command_group(
        sub, "shred", INFO.kind, help="ask for, approve or inspect the crypto-shred of a RecoveryPoint",
        description="Under deletionPolicy: Shred a deleted RecoveryPoint keeps its keys until one person asked "
                    f"for the shred and a second person holding the {rules.REVIEWER_ROLE} role approved it.")
    q = inner.add_parser("request", parents=[named], help="ask for the shred of a point, with a reason (as yourself)",
                         description="Record your request to destroy the point's keys (the admission webhook records "
                                     "who you are). Only for points of a deletionPolicy: Shred policy.")
    q.add_argument("--reason", "-m", required=True, type=_text, help="why its keys must go (recorded and audited)")
    q.add_argument("--delete", action="store_true",
                   help="then delete the point: its finalizer holds it, keys alive, until a second person approves")
    q.set_defaults(func=_run(_request))
    q = inner.add_parser("approve", parents=[named], help="approve a shred someone else asked for",
                         description=f"Approve, as the second person, a shred someone else asked for: needs the "
                                     f"'{rules.VERB}' verb on recoverypoints (the ClusterRole {rules.REVIEWER_ROLE}).")
    q.add_argument("--comment", "-m", default="", help="recorded with your approval (and in the audit trail)")
    q.set_defaults(func=_run(_approve))
    q = inner.add_parser("status", parents=[named], help="show who asked, why, who approved and what is missing",
                         description="The request and approvals the admission webhook recorded on the point, the "
                                     "operator's ShredApproved condition (it checks their seal) and what is next.")
    q.set_defaults(func=_run(_status))


def _text(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("say why (it is recorded and audited)")
    return value


def _run(command):
    return lambda args: asyncio.run(command(args))


def _failed(where: str, exc: KubeError, before: str = "") -> int:
    print(f"lifeline shred {where}: {before}{exc}", file=sys.stderr)
    return 2 if exc.status == 404 else 1


async def _request(args) -> int:
    namespace = _namespace(args)
    kube = _kube(args)
    try:
        try:
            body = await kube.get(INFO, namespace, args.name)
            refusal = await _not_shredded(kube, body)
            if refusal:
                print(f"lifeline shred request: {refusal}; nothing was written", file=sys.stderr)
                return 1
            body = await kube.patch(INFO, namespace, args.name,
                                    {"metadata": {"annotations": {rules.ANN_REQUEST: args.reason}}})
        except KubeError as exc:
            return _failed("request", exc)
        ann = body["metadata"].get("annotations") or {}
        print(f"shred of {namespace}/{args.name} requested by {ann.get(rules.ANN_REQUESTED_BY, '?')}: "
              f"{ann.get(rules.ANN_REASON, args.reason)}")
        if args.delete:
            try:
                await kube.delete(INFO, namespace, args.name)
                body = await kube.get(INFO, namespace, args.name, missing_ok=True)
            except KubeError as exc:
                return _failed("request", exc, "the request is recorded, but the point was not deleted: ")
            if body is None:
                print(f"lifeline shred request: {namespace}/{args.name} is gone: it was deleted without waiting "
                      "for its shred", file=sys.stderr)
                return 1
            print(f"deleted {namespace}/{args.name}: its finalizer holds it, keys alive, until approved")
        print(await _describe(kube, body))
        return 0
    finally:
        kube.close()


async def _not_shredded(kube, body: dict) -> str | None:
    """Why a shred request makes no sense for this point (None: its deletion waits for a reviewed shred)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    if shred.FINALIZER in (meta.get("finalizers") or []):
        return None
    what, name = f"RecoveryPoint {meta.get('namespace')}/{meta['name']}", spec.get("policyName")
    try:
        policy = await kube.get(POLICY, meta.get("namespace"), name, missing_ok=True) if name else None
    except KubeError as exc:
        return f"{what} does not carry the shred finalizer {shred.FINALIZER}, and its policy cannot be read: {exc}"
    if shred.wants_shred(policy):
        return (f"{what} does not carry the shred finalizer {shred.FINALIZER} yet, though its BackupPolicy {name} "
                "says deletionPolicy: Shred: the operator adds it (is it running?); try again in a moment")
    why = (f"its BackupPolicy {name} has deletionPolicy: {(policy.get('spec') or {}).get('deletionPolicy', 'Retain')}"
           if policy else f"its BackupPolicy {name or '(none)'} is gone and it does not carry the shred finalizer")
    return (f"{what} is not crypto-shredded on deletion ({why}): shred requests are for points of a "
            "deletionPolicy: Shred policy")


async def _approve(args) -> int:
    namespace = _namespace(args)
    kube = _kube(args)
    try:
        try:
            body = await kube.patch(INFO, namespace, args.name,
                                    {"metadata": {"annotations": {rules.ANN_APPROVE: args.comment}}})
        except KubeError as exc:
            return _failed("approve", exc)
        records = rules.approvals(body["metadata"].get("annotations"))
        print(f"approval recorded on {namespace}/{args.name} as {records[-1]['user'] if records else '?'}")
        print(await _describe(kube, body))
        return 0
    finally:
        kube.close()


async def _status(args) -> int:
    body, code = await get_named(_kube(args), INFO, _namespace(args), args.name, "lifeline shred status")
    if body is None:
        return code
    kube = _kube(args)  # get_named closed its own; this one lists the point's key epoch
    try:
        print(await _describe(kube, body))
    finally:
        kube.close()
    return 0


async def _describe(kube, body: dict) -> str:
    """The point's shred records as the webhook wrote them, the operator's ShredApproved and what is next."""
    meta, status = body["metadata"], body.get("status") or {}
    ann = meta.get("annotations") or {}
    namespace, name = meta.get("namespace"), meta["name"]
    held = shred.FINALIZER in (meta.get("finalizers") or [])
    deleted = f", deleted at {meta['deletionTimestamp']}" if meta.get("deletionTimestamp") else ""
    requester = ann.get(rules.ANN_REQUESTED_BY)
    records = rules.approvals(ann)
    lines = [f"RecoveryPoint {namespace}/{name}: {status.get('phase') or 'not reconciled yet'}{deleted}",
             f"  policy:         {(body.get('spec') or {}).get('policyName')}"
             f"{'   (deletionPolicy: Shred)' if held else '   (not crypto-shredded on deletion)'}",
             f"  requested by:   {requester} -- {ann.get(rules.ANN_REASON, '')}" if requester
             else "  requested by:   nobody yet",
             f"  approved by:    {'' if records else 'nobody yet'}".rstrip()]
    for a in records:
        comment = f" ({a['comment']})" if a.get("comment") else ""
        lines.append(f"    {a['user']} at {a.get('time')}{comment}")
    cond = conditions.find(status.get("conditions"), "ShredApproved")
    if cond:
        lines.append(f"  ShredApproved:  {cond.get('status')} ({cond.get('reason')}): {cond.get('message')}")
    lines.append(f"  next:           {await _next(kube, body, held, requester, records, cond)}")
    return "\n".join(lines)


async def _next(kube, body: dict, held: bool, requester: str | None, records: list[dict], cond: dict | None) -> str:
    meta = body["metadata"]
    where = f"{meta['name']} -n {meta.get('namespace')}"
    if not held:
        return "nothing to review: deleting it does not destroy its keys"
    if not requester:
        return f"someone asks: lifeline shred request {where} --reason \"why\" [--delete]"
    if not any(a["user"] != requester for a in records):
        return (f"a second person (not {requester}) holding the {rules.REVIEWER_ROLE} role approves: "
                f"lifeline shred approve {where}")
    if not meta.get("deletionTimestamp"):
        return f"delete it (kubectl -n {meta.get('namespace')} delete recoverypoint {meta['name']}): its keys go then"
    if (cond or {}).get("status") != "True":
        return ("nothing from people once the operator takes the approval in (it checks the webhook's seal, "
                "then ShredApproved turns True)")
    try:
        blocked = shred.blockers(body, await kube.list(INFO, meta.get("namespace")))
    except KubeError:
        blocked = []  # may not list points: the operator's Event ShredWaiting names them
    if blocked:
        return f"nothing from people; its keys go once {', '.join(blocked)} (same key epoch) are deleted too"
    return "nothing from people: the operator destroys its keys (Events: Shredding, Shredded)"
