"""`lifeline failover approve|back|switch|status NAME`: talk to a FailoverPlan.

Requests travel as one annotation on the plan, ``dr.lifeline.io/request``, holding
``{"verb", "id", ...}``; the operator acts on each id once and answers in
``status.lastRequest`` (Accepted or Rejected, with why), which this command waits
for. Annotations leave the spec -- and so the generation and GitOps diffs -- alone.

- ``approve``: start the failover a Manual plan (or a capped Automatic one) recommends;
  ``--accept-unfenced`` also lets it promote the standby when the old primary cannot be
  reached to fence it.
- ``back``: fail back to the primary, as a planned switchover with the same fencing.
- ``switch``: planned switchover to the other site (maintenance).
- ``status``: phase, active site, checks, conditions and history.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import datetime, timezone

from lifeline.api import FAILOVER_PLAN as INFO
from lifeline.kube import KubeError
from lifeline.labels import ANN_FAILOVER_REQUEST as REQUEST_ANNOTATION

from .backup import _common, _kube, _namespace
from .fetch import get_named


def register(sub) -> None:
    p = sub.add_parser("failover", help="approve, fail back, switch or inspect a FailoverPlan")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    helps = {
        "approve": "start the failover the plan recommends (Manual mode, or the cap was reached)",
        "back": "fail back to the primary site (planned, fenced switchover)",
        "switch": "planned switchover to the other site, for maintenance",
        "status": "show phase, active site, checks, conditions and history",
    }
    common = _common()
    for verb, text in helps.items():
        v = verbs.add_parser(verb, parents=[common], help=text, description=text)
        v.add_argument("name", metavar="NAME", help="the FailoverPlan")
        if verb == "status":
            v.add_argument("-o", "--output", choices=("text", "json"), default="text")
            v.set_defaults(func=status)
        else:
            v.add_argument("--timeout", type=float, default=30.0,
                           help="seconds to wait for the operator's answer (0: do not wait)")
            if verb == "approve":
                v.add_argument("--accept-unfenced", action="store_true",
                               help="promote the standby even if the old primary cannot be reached to fence it")
            v.set_defaults(func=request)


def request(args) -> int:
    return asyncio.run(_request(args))


def status(args) -> int:
    return asyncio.run(_status(args))


async def _request(args) -> int:
    namespace = _namespace(args)
    ident = uuid.uuid4().hex[:12]
    payload = {"verb": args.verb, "id": ident,
               "requestedAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if getattr(args, "accept_unfenced", False):
        payload["acceptUnfenced"] = True
    kube = _kube(args)
    try:
        try:
            await kube.patch(INFO, namespace, args.name,
                             {"metadata": {"annotations": {REQUEST_ANNOTATION: json.dumps(payload, sort_keys=True)}}})
        except KubeError as exc:
            print(f"failover {args.verb} {namespace}/{args.name}: {exc}", file=sys.stderr)
            return 1
        print(f"requested {args.verb} for FailoverPlan {namespace}/{args.name} (request {ident})")
        if args.timeout <= 0:
            return 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            obj = await kube.get(INFO, namespace, args.name)
            answer = (obj.get("status") or {}).get("lastRequest") or {}
            if answer.get("id") == ident:
                print(f"{answer.get('outcome')}: {answer.get('message', '')}")
                return 0 if answer.get("outcome") == "Accepted" else 1
            await asyncio.sleep(0.2)
        print(f"the operator has not answered request {ident} within {args.timeout:.0f}s; is it running and "
              f"watching namespace {namespace}?", file=sys.stderr)
        return 2
    finally:
        kube.close()


async def _status(args) -> int:
    namespace = _namespace(args)
    obj, code = await get_named(_kube(args), INFO, namespace, args.name,
                                f"failover status {namespace}/{args.name}", not_found_exit=1)
    if obj is None:
        return code
    if args.output == "json":
        print(json.dumps(obj.get("status") or {}, indent=2, sort_keys=True))
        return 0
    print(render_status(obj))
    return 0


def render_status(obj: dict) -> str:
    """A person's view of a FailoverPlan's status."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    meta = obj.get("metadata") or {}
    lines = [f"FailoverPlan {meta.get('namespace')}/{meta.get('name')}"]
    lines.append(f"  phase:       {st.get('phase', '<not observed yet>')}   active site: {st.get('activeSite', '-')}"
                 f"   mode: {spec.get('mode', 'Automatic')}")
    sw = st.get("switchover")
    if sw:
        lines.append(f"  switchover:  {sw['kind']} {sw['source']} -> {sw['target']}, step {sw['step']}"
                     f" (since {sw.get('startedTime')})" + (f": {sw['message']}" if sw.get("message") else ""))
    if st.get("fencePending"):
        lines.append(f"  fencing:     site {st['fencePending']} could not be reached; it will be fenced as soon "
                     f"as its API answers")
    if st.get("firstFailureTime"):
        lines.append(f"  failing since {st['firstFailureTime']}")
    conds = st.get("conditions") or []
    if conds:
        lines.append("  conditions:")
        for c in conds:
            lines.append(f"    {c['type']:<20} {c['status']:<7} {c['reason']:<24} {c.get('message', '')}")
    checks = st.get("checks") or []
    if checks:
        lines.append("  checks:")
        lines.append(f"    {'SITE':<12} {'CHECK':<22} {'HEALTHY':<8} {'FAILS':<6} {'REASON':<18} MESSAGE")
        for c in checks:
            healthy = {True: "yes", False: "no"}.get(c.get("healthy"), "-")
            lines.append(f"    {c['site']:<12} {c['name']:<22} {healthy:<8} {c.get('consecutiveFailures', 0):<6} "
                         f"{c.get('reason', '-'):<18} {c.get('message', '')}")
    history = st.get("history") or []
    if history:
        lines.append("  history:")
        for h in history:
            rto = f"  RTO {h['achievedRTOSeconds']:.1f}s" if h.get("achievedRTOSeconds") is not None else ""
            took = f"  took {h['switchoverSeconds']:.1f}s" if h.get("switchoverSeconds") is not None else ""
            lines.append(f"    {h['time']}  {h['phase']:<12} active {h['activeSite']:<10} {h['reason']}{rto}{took}")
    req = st.get("lastRequest")
    if req:
        lines.append(f"  last request: {req['verb']} ({req['id']}) {req['outcome']}: {req.get('message', '')}")
    return "\n".join(lines)
