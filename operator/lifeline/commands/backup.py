"""`lifeline backup now|adopt NAME` and `lifeline backup status`: ask for a backup or for the points a
lost namespace had, see where each policy stands.

``backup now`` sets the ``dr.lifeline.io/backup-now`` annotation to a new value (as
``kubectl annotate`` would); the operator starts one Job for it and records the value in
``status.backupNowHandled``. ``--wait`` follows it to the end.

``backup status`` prints every policy's last backup, data age against its RPO and its
recovery points; it exits 1 when a policy misses its RPO (for scripts and cron checks).
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from datetime import datetime, timezone

from lifeline.api import BACKUP_POLICY as POLICY
from lifeline.api.common import format_duration
from lifeline.kube import JOBS, Kube, KubeError
from lifeline.labels import ANN_ADOPT_POINTS, ANN_RECORDED
from lifeline.planning import backup, catalogue, conditions, snapshot

from .follow import Display, JobLog


def register(sub) -> None:
    inner, named = _command_group(
        sub, "backup", POLICY.kind, help="start a backup now, or show the backup status of policies",
        description="Ask the operator for an on-demand backup, or show where each policy stands.")
    now = inner.add_parser("now", parents=[named], help="run one backup of a policy now")
    now.add_argument("--type", choices=backup.TYPES, default="incremental",
                     help="backup type (default incremental; the agent takes a full when there is no parent)")
    now.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                     help="wait up to this long for the backup to finish (default: do not wait)")
    now.set_defaults(func=run_now)

    adopt = inner.add_parser(
        "adopt", parents=[named], help="make RecoveryPoints again from what the policy's destinations hold",
        description="After a namespace or a cluster was lost and the policy applied again: the operator runs one "
                    "Job that lists the policy's points in each destination (each opened with the key) and makes "
                    "the RecoveryPoints it does not have. Nothing in the destinations changes.")
    adopt.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                       help="wait up to this long for the points (default: do not wait)")
    adopt.set_defaults(func=run_adopt)

    status = inner.add_parser("status", parents=[_common()], help="show the backup status of policies")
    status.add_argument("name", nargs="?", help="one policy (default: all in the namespace)")
    status.set_defaults(func=run_status)


def _command_group(sub, name: str, kind: str, **texts) -> tuple:
    """``lifeline NAME COMMAND``: the sub-parsers of its commands, and the parent parser of those about one
    ``kind`` object: the cluster options and the object's name."""
    inner = sub.add_parser(name, **texts).add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    named = argparse.ArgumentParser(add_help=False, parents=[_common()])
    named.add_argument("name", help=f"the {kind}")
    return inner, named


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig context's)")
    common.add_argument("--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG)")
    common.add_argument("--context", default=None, help="kubeconfig context")
    return common


def _namespace(args) -> str:
    if args.namespace:
        return args.namespace
    try:
        import kubernetes

        contexts, active = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
        if args.context:
            active = next((c for c in contexts if c["name"] == args.context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except Exception:  # noqa: BLE001 - no kubeconfig: the Kube connection below says so
        return "default"


def _kube(args):
    return Kube.connect(args.kubeconfig, args.context)


def run_now(args) -> int:
    return asyncio.run(_now(args))


def _finished(obj: dict, job: str) -> dict | None:
    last = (obj.get("status") or {}).get("lastBackup") or {}
    if last.get("job") == job and last.get("outcome") in ("Succeeded", "Failed"):
        return last
    return None


def _request_value() -> str:
    """A new value for a request annotation: the time, and a little randomness for two in one second."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


async def _ask(kube, namespace: str, name: str, annotations: dict, command: str) -> int | None:
    """Put a request on the policy (as ``kubectl annotate`` would); the exit code when that failed."""
    try:
        await kube.patch(POLICY, namespace, name, {"metadata": {"annotations": annotations}})
    except KubeError as exc:
        print(f"lifeline backup {command}: {exc}", file=sys.stderr)
        return 1 if exc.status != 404 else 2
    return None


async def _now(args) -> int:
    namespace = _namespace(args)
    value = _request_value()
    annotations = {backup.ANN_BACKUP_NOW: value, backup.ANN_BACKUP_NOW_TYPE: args.type}
    kube = _kube(args)
    try:
        if (refused := await _ask(kube, namespace, args.name, annotations, "now")) is not None:
            return refused
        job = backup.on_demand_name(args.name, value)
        print(f"asked for a {args.type} backup of {namespace}/{args.name} ({backup.ANN_BACKUP_NOW}={value}); "
              f"its Job will be {job}")
        if not args.wait:
            print(f"follow it: kubectl -n {namespace} get jobs,recoverypoints -l {backup.LABEL_POLICY}="
                  f"{backup.label_value(args.name)}")
            return 0
        deadline = time.monotonic() + args.wait
        display = Display()  # the agent's progress, from the Job's log (a snapshot's: its data mover's)
        progress = JobLog(kube, display, "lifeline backup now")
        progress.follow(namespace, [job, snapshot.mover_name(job)])
        try:
            while time.monotonic() < deadline:
                obj = await kube.get(POLICY, namespace, args.name)
                last = _finished(obj, job)
                if last:
                    await progress.finish()
                    display.end()
                    point = f", RecoveryPoint {last['recoveryPoint']}" if last.get("recoveryPoint") else ""
                    print(f"{last['outcome'].lower()}{point}: {last.get('message', '')}")
                    return 0 if last["outcome"] == "Succeeded" else 1
                await asyncio.sleep(1)
        finally:
            await progress.stop()
            display.end()
        print(f"lifeline backup now: not finished after {args.wait:g}s; the Job goes on", file=sys.stderr)
        return 1
    finally:
        kube.close()


def run_adopt(args) -> int:
    return asyncio.run(_adopt(args))


async def _adopt(args) -> int:
    namespace = _namespace(args)
    value = _request_value()
    kube = _kube(args)
    try:
        if (refused := await _ask(kube, namespace, args.name, {ANN_ADOPT_POINTS: value}, "adopt")) is not None:
            return refused
        job = catalogue.job_name(args.name, value)
        print(f"asked to adopt the points of {namespace}/{args.name} ({ANN_ADOPT_POINTS}={value}); its Job will be {job}")
        if not args.wait:
            print(f"follow it: kubectl -n {namespace} get events --field-selector involvedObject.name={args.name}")
            return 0
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            found = await kube.get(JOBS, namespace, job, missing_ok=True)
            said = ((found or {}).get("metadata", {}).get("annotations") or {}).get(ANN_RECORDED)
            if said:
                print(said)
                return 0 if said.startswith("adopted") else 1
            await asyncio.sleep(1)
        print(f"lifeline backup adopt: not finished after {args.wait:g}s; the Job goes on", file=sys.stderr)
        return 1
    finally:
        kube.close()


def run_status(args) -> int:
    return asyncio.run(_status(args))


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    return format_duration(seconds)


async def _status(args) -> int:
    namespace = _namespace(args)
    kube = _kube(args)
    try:
        try:
            items = await kube.list(POLICY, namespace)
        except KubeError as exc:
            print(f"lifeline backup status: {exc}", file=sys.stderr)
            return 1
    finally:
        kube.close()
    if args.name:
        items = [o for o in items if o["metadata"]["name"] == args.name]
        if not items:
            print(f"lifeline backup status: no BackupPolicy {namespace}/{args.name}", file=sys.stderr)
            return 2
    rows = [("NAME", "TIER", "LAST BACKUP", "OUTCOME", "DATA AGE", "RPO", "POINTS", "READY", "RPO MET")]
    problems = []
    for obj in sorted(items, key=lambda o: o["metadata"]["name"]):
        st = obj.get("status") or {}
        last = st.get("lastBackup") or {}
        ready = conditions.find(st.get("conditions"), "Ready") or {}
        met = conditions.find(st.get("conditions"), "RPOMet") or {}
        rows.append((obj["metadata"]["name"], obj["spec"].get("tier", ""),
                     f"{last.get('type', '-')} {last.get('startTime', '')}".strip(), last.get("outcome", "-"),
                     _age(st.get("currentRPOSeconds")), _age(st.get("rpoTargetSeconds")),
                     str(st.get("recoveryPoints", 0)), ready.get("status", "-"), met.get("status", "-")))
        if met.get("status") == "False":
            problems.append(f"{obj['metadata']['name']}: {met.get('reason')}: {met.get('message')}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for line in problems:
        print(line)
    return 1 if problems else 0

