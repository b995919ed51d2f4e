"""`lifeline restore approve|reject NAME` and `lifeline restore status NAME`.

``approve``/``reject`` do exactly what ``kubectl annotate restore NAME
dr.lifeline.io/approve="comment"`` does, with the caller's own credentials: the
admission webhook takes the identity from the API server, checks the approver role
and records the decision -- or refuses, and the refusal is printed as it came.
``status`` prints the phase, the requester, every recorded decision and what is next; with
``--wait`` it then follows the Restore to its end, drawing the restore Job's progress from its log
while it runs (:mod:`lifeline.commands.follow`), and prints the status it ended with.
"""
from __future__ import annotations

import asyncio
import sys
import time

from lifeline.api import RESTORE as INFO
from lifeline.kube import KubeError
from lifeline.planning import restore as rules
from lifeline.planning import restore_run

from .backup import _command_group, _kube, _namespace
from .fetch import get_named
from .follow import Display, JobLog


def register(sub) -> None:
    inner, named = _command_group(
        sub, "restore", INFO.kind, help="approve, reject or inspect a production Restore",
        description="Two people holding the lifeline-restore-approver role must approve a Restore before it runs; "
                    "the requester cannot be one of them.")
    for verb, helptext in (("approve", "approve a Restore (as yourself: your kubeconfig's identity)"),
                           ("reject", "reject a Restore: it ends Rejected and never runs")):
        q = inner.add_parser(verb, parents=[named], help=helptext)
        q.add_argument("--comment", "-m", default="", help="recorded with your decision (and in the audit trail)")
        q.set_defaults(func=run_decide, decision=verb)
    q = inner.add_parser("status", parents=[named], help="show a Restore's phase and approvals")
    q.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="then follow the Restore until it ends, up to this long, with the restore Job's progress "
                        "while it runs (default: do not wait)")
    q.set_defaults(func=run_status)


def run_decide(args) -> int:
    return asyncio.run(_decide(args))


async def _decide(args) -> int:
    namespace = _namespace(args)
    key = rules.ANN_APPROVE if args.decision == "approve" else rules.ANN_REJECT
    kube = _kube(args)
    try:
        await kube.patch(INFO, namespace, args.name, {"metadata": {"annotations": {key: args.comment}}})
        body = await kube.get(INFO, namespace, args.name)
    except KubeError as exc:
        print(f"lifeline restore {args.decision}: {exc}", file=sys.stderr)
        return 2 if exc.status == 404 else 1
    finally:
        kube.close()
    mine = rules.decisions((body.get("metadata") or {}).get("annotations"))
    print(f"{args.decision} recorded on {namespace}/{args.name} as {mine[-1]['user'] if mine else '?'}")
    print(_describe(body))
    return 0


def run_status(args) -> int:
    return asyncio.run(_status(args))


async def _status(args) -> int:
    if args.wait:
        return await _wait(args)
    body, code = await get_named(_kube(args), INFO, _namespace(args), args.name, "lifeline restore status")
    if body is None:
        return code
    print(_describe(body))
    return 1 if (body.get("status") or {}).get("phase") in (rules.FAILED, rules.REJECTED) else 0


async def _wait(args) -> int:
    """``status --wait``: the status now; then, until the Restore ends, its phase, and while its Job runs the
    Job's progress bar; then the status it ended with. Exit 0 Succeeded, 1 Failed, Rejected or not ended."""
    namespace, where = _namespace(args), "lifeline restore status"
    kube = _kube(args)
    display = Display()
    job_log = JobLog(kube, display, where)
    deadline = time.monotonic() + args.wait
    first = True
    try:
        while True:
            try:
                body = await kube.get(INFO, namespace, args.name)
            except KubeError as exc:
                display.end()
                print(f"{where}: {exc}", file=sys.stderr)
                return 2 if first and exc.status == 404 else 1
            status = body.get("status") or {}
            phase = status.get("phase")
            if phase in rules.FINAL:
                await job_log.finish()  # the Job's last figures, then the outcome
            if phase in rules.FINAL or first:
                display.end()
                print(_describe(body), flush=True)
                if phase in rules.FINAL:
                    return 1 if phase in (rules.FAILED, rules.REJECTED) else 0
            first = False
            if phase == rules.RUNNING:
                job = status.get("jobName") or restore_run.job_name(args.name)
                job_log.follow(restore_run.job_namespace(body), [job])
            else:
                display.status(f"Restore {namespace}/{args.name}: {phase or 'not reconciled yet'}", phase)
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(1)
    finally:
        await job_log.stop()
        display.end()
        kube.close()
    print(f"{where}: not finished after {args.wait:g}s; the Restore goes on", file=sys.stderr)
    return 1


def _describe(body: dict) -> str:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    requester = (meta.get("annotations") or {}).get(rules.ANN_REQUESTED_BY) or status.get("requestedBy") or "?"
    lines = [f"Restore {meta.get('namespace')}/{meta['name']}: {status.get('phase') or 'not reconciled yet'}",
             f"  recovery point: {spec.get('recoveryPoint')}   strategy: {spec.get('strategy', 'NewClaim')}   "
             f"overwrite: {str(spec.get('overwrite', False)).lower()}",
             f"  requested by:   {requester} -- {spec.get('reason', '')}",
             f"  approvals:      {len([a for a in status.get('approvals') or [] if a.get('decision') == 'Approved'])}"
             f" of {spec.get('requiredApprovals', 2)}"]
    for a in status.get("approvals") or []:
        comment = f" ({a['comment']})" if a.get("comment") else ""
        lines.append(f"    {a.get('decision'):<9} {a.get('user')} at {a.get('time')}{comment}")
    if status.get("message"):
        lines.append(f"  {status.get('reason', '')}: {status['message']}")
    lines += _objects_lines(status.get("objects"))
    return "\n".join(lines)


def _objects_lines(objects: dict | None) -> list[str]:
    """An objects restore's outcome: counts, the claims given their data, each failed object and why."""
    if not objects:
        return []
    counts = ", ".join(f"{n} {what}" for what, n in sorted((objects.get("counts") or {}).items())) or "none"
    lines = [f"  objects:        {counts}"]
    if objects.get("claimsWithData"):
        lines.append(f"  claims with their data: {', '.join(objects['claimsWithData'])}")
    failures = objects.get("failures") or []
    if failures:
        width = max(len(f.get("kind", "")) for f in failures)
        lines.append("  failed (the restore Job's log lists every object):")
        lines += [f"    {f.get('kind', ''):<{width}}  {f.get('name', '')}: {f.get('message', '')}" for f in failures]
    return lines
