"""`lifeline drill run NAME` and `lifeline drill report NAME`: rehearse a restore now, read the record.

``drill run`` sets the ``dr.lifeline.io/run-now`` annotation to a new value (what
``kubectl annotate restoredrill NAME dr.lifeline.io/run-now=...`` does); the operator starts a
run for it (after the current one, if one is running) and marks it ``trigger: run-now:<value>``,
which is how this command knows the run it asked for. It then follows that run with a progress
line (phase, elapsed; while the restore Job runs, its progress bar from the Job's log:
:mod:`lifeline.commands.follow`) and exits 0 when it succeeded, 1 when it failed (with the reason)
or could not start; ``--no-wait`` returns once asked.

``drill report`` prints ``status.history`` (newest first): start, point, restore and verify
seconds, total against the RTO, the point's age against the RPO, bytes and the outcome;
``-o json`` prints the same records as JSON for scripts and auditors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from datetime import datetime, timezone

from lifeline.api import RESTORE_DRILL as INFO
from lifeline.kube import KubeError
from lifeline.labels import ANN_RUN_NOW
from lifeline.planning import conditions, drill_sandbox
from lifeline.printing import describe_drill_run, drill_table

from .backup import _command_group, _kube, _namespace
from .fetch import get_named
from .follow import Display, JobLog

# Ready=False reasons that may clear by themselves (an API hiccup): keep waiting through them.
TRANSIENT = ("ApplyFailed", "LookupFailed")


def register(sub) -> None:
    inner, named = _command_group(
        sub, "drill", INFO.kind, help="run a restore drill now, or print a drill's history",
        description="Rehearse a restore (RestoreDrill) now and follow it, or print the measured history of a drill.")
    run = inner.add_parser("run", parents=[named], help="start a run of a RestoreDrill now and follow it")
    run.add_argument("--no-wait", action="store_true", help="return once the run is asked for")
    run.add_argument("--timeout", type=float, default=3600, metavar="SECONDS",
                     help="give up following after this long (default 3600; the run goes on)")
    run.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS)
    run.set_defaults(func=run_now)
    report = inner.add_parser("report", parents=[named], help="print a RestoreDrill's run history")
    report.add_argument("-o", "--output", choices=("table", "json"), default="table")
    report.set_defaults(func=run_report)


# ---- drill run ------------------------------------------------------------------------------------------

def run_now(args) -> int:
    return asyncio.run(_run(args))


def _mine(status: dict, value: str) -> dict | None:
    """The run started for our request (in lastRun, or already in the history), else None."""
    trigger = f"run-now:{value}"
    for run in [status.get("lastRun") or {}, *(status.get("history") or [])]:
        if run.get("trigger") == trigger:
            return run
    return None


def _blocked(body: dict, value: str) -> str | None:
    """Why the operator cannot start the run (Ready=False for a reason a person must fix), else None."""
    status = body.get("status") or {}
    if status.get("lastRequest") == value:
        return None
    ready = conditions.find(status.get("conditions"), "Ready") or {}
    if ready.get("status") == "False" and ready.get("reason") not in TRANSIENT \
            and status.get("observedGeneration") == body["metadata"].get("generation"):
        return f"{ready.get('reason')}: {ready.get('message')}"
    return None


async def _run(args) -> int:
    namespace = _namespace(args)
    value = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    kube = _kube(args)
    try:
        try:
            await kube.patch(INFO, namespace, args.name, {"metadata": {"annotations": {ANN_RUN_NOW: value}}})
        except KubeError as exc:
            print(f"lifeline drill run: {exc}", file=sys.stderr)
            return 2 if exc.status == 404 else 1
        print(f"asked for a run of RestoreDrill {namespace}/{args.name} ({ANN_RUN_NOW}={value})", flush=True)
        if args.no_wait:
            print(f"follow it: lifeline drill report {args.name} -n {namespace}")
            return 0
        started = time.monotonic()
        progress = Display()  # the progress line: rewritten in place on a terminal, one line per change otherwise
        restore_log = JobLog(kube, progress, "lifeline drill run")
        try:
            return await _follow(args, kube, namespace, value, started, progress, restore_log)
        finally:
            await restore_log.stop()
            progress.end()
    finally:
        kube.close()


async def _follow(args, kube, namespace: str, value: str, started: float, progress: Display,
                  restore_log: JobLog) -> int:
    """Poll the drill until the run asked for ends; while its restore Job runs, draw the Job's progress."""
    while time.monotonic() - started < args.timeout:
        try:
            body = await kube.get(INFO, namespace, args.name)
        except KubeError as exc:
            progress.end()
            print(f"lifeline drill run: {exc}", file=sys.stderr)
            return 1
        status = body.get("status") or {}
        run = _mine(status, value)
        elapsed = time.monotonic() - started
        restoring = run is not None and run.get("outcome") == "Running" and run.get("phase") == "Restoring"
        if restoring and run.get("sandbox"):
            restore_log.follow(run["sandbox"], [drill_sandbox.RESTORE_JOB])
        elif restore_log.target is not None:
            await restore_log.finish()  # the restore ended: its last figures before the next phase
        if run is None:
            why = _blocked(body, value)
            if why:
                progress.end()
                print(f"the drill cannot run: {why}", file=sys.stderr)
                return 1
            busy = (status.get("lastRun") or {}).get("outcome") == "Running"
            progress.status(f"waiting for the operator{' (a run is in progress)' if busy else ''}"
                            f"   elapsed {elapsed:.1f}s", ("waiting", busy))
        elif run.get("outcome") == "Running":
            phase = run.get("phase") or "Starting"
            progress.status(f"run {run['name']}: {phase} {run.get('recoveryPoint', '')} in sandbox "
                            f"{run.get('sandbox', '-')}   elapsed {elapsed:.1f}s", ("run", phase))
        else:
            progress.end()
            print(f"run {run['name']}: {describe_drill_run(run)}")
            if run.get("message"):
                print(f"  {run['message']}")
            if run["outcome"] == "Succeeded":
                return 0
            print(f"lifeline drill run: the drill failed: {run.get('reason')}: {run.get('message')}",
                  file=sys.stderr)
            return 1
        await asyncio.sleep(args.poll)
    progress.end()
    print(f"lifeline drill run: not finished after {args.timeout:g}s; the run goes on "
          f"(lifeline drill report {args.name} -n {namespace})", file=sys.stderr)
    return 1


# ---- drill report ---------------------------------------------------------------------------------------

def run_report(args) -> int:
    return asyncio.run(_report(args))


async def _report(args) -> int:
    namespace = _namespace(args)
    body, code = await get_named(_kube(args), INFO, namespace, args.name, "lifeline drill report")
    if body is None:
        return code
    spec, status = body.get("spec") or {}, body.get("status") or {}
    history = status.get("history") or []
    if args.output == "json":
        print(json.dumps({"namespace": namespace, "name": args.name, "policy": spec.get("policyName"),
                          "nextRunTime": status.get("nextRunTime"), "history": history}, indent=2, sort_keys=True))
        return 0
    print(f"RestoreDrill {namespace}/{args.name} of policy {spec.get('policyName')}: {len(history)} runs recorded"
          + (f", next run {status['nextRunTime']}" if status.get("nextRunTime") else ""))
    running = status.get("lastRun") or {}
    if running.get("outcome") == "Running":
        print(f"running now: {running.get('name')} ({running.get('phase')}) in sandbox {running.get('sandbox')}")
    if history:
        print(drill_table(history))
        for r in history:
            if r.get("outcome") == "Failed":
                print(f"{r.get('name')}: {r.get('reason')}: {r.get('message')}")
    return 0
