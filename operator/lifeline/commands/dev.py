"""`lifeline dev up` (alias `lifeline demo`): the control plane on this machine, real state printed.

Starts everything under one state directory (:class:`lifeline.devstack.stack.DevStack`: OpenBao,
the HIS PostgreSQL, the audit log, a real Kubernetes control plane with the process kubelet, and
Lifeline installed into it by helm, all on loopback), applies the manifests in ``examples/`` (and one broken policy, to show what a
mistake looks like) and the hospital scenario in ``examples/hospital/``, prints them the way
``kubectl get`` would, runs the scenes (backup, drill, failover), writes the HTML report and
prints a summary of measured figures. Ctrl-C or the end stops every server and child process.
"""
from __future__ import annotations

import asyncio
import copy
import json
import sys
import time
from pathlib import Path

from lifeline.api import BY_KIND, KINDS
from lifeline.audit import open_store, verify
from lifeline.kube import Kube, KubeError
from lifeline.observability.report import write_report_async
from lifeline.planning import conditions
from lifeline.printing import table

NAMESPACE = "hospital"


def _options(p) -> None:
    p.add_argument("--dir", type=Path, default=Path(".demo"), help="where logs, kubeconfig and state go (default .demo)")
    p.add_argument("--examples", type=Path, default=Path("examples"), help="manifests to apply (default examples/)")
    p.add_argument("--hospital", type=Path, default=None,
                   help="the hospital scenario's manifests (default <examples>/hospital)")
    p.add_argument("--keep", action="store_true", help="keep running (Ctrl-C to stop) so you can use kubectl")
    p.add_argument("--without", action="append", choices=("vault", "postgres"), default=[],
                   help="leave a real part out and use its fallback (local keys / no HIS database); repeatable")
    p.set_defaults(func=run)


def register(sub) -> None:
    dev = sub.add_parser("dev", help="the whole control plane on this machine (no cluster, no Docker)")
    verbs = dev.add_subparsers(dest="dev_command", required=True)
    _options(verbs.add_parser("up", help="start everything on loopback, run the DR scenes, print measured figures"))
    _options(sub.add_parser("demo", help="same as `lifeline dev up`"))


def run(args) -> int:
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130


def _say(text: str = "") -> None:
    print(text, flush=True)


def _scenes():
    """The areas the demo walks through, in the order of the DR loop."""
    from lifeline.devstack.scenes import backup, drill, failover  # lazy: the dev stack is slow to import

    return (("backup", backup), ("drill", drill), ("failover", failover))


def _summary(figures: dict, seconds: float) -> None:
    """One line per area with the figures the scenes measured."""
    _say("\n=== summary " + "=" * 62)
    backup = figures.get("backup") or {}
    if backup:
        points = backup.get("recoveryPoints") or []
        _say(f"backup     {len(points)} recovery points "
             f"({', '.join(p['spec']['type'] for p in points)}), "
             f"{sum(p['spec']['sizeBytes'] for p in points)} bytes protected, ok={backup.get('ok')}")
        for run in backup.get("runs") or []:
            _say(f"  {run['policy']:14} {run['type']:12} {run['seconds']:.2f}s {run['bytes']} bytes "
                 f"to {'+'.join(run['destinations'])}  key {run['key']}")
    drill = figures.get("drill") or {}
    if drill:
        _say(f"drill      restore {drill.get('restoreSeconds')}s + verify {drill.get('verifySeconds')}s = total "
             f"{drill.get('totalSeconds')}s against an RTO of {drill.get('rtoSeconds')}s, "
             f"rtoMet={drill.get('rtoMet')}, outcome={drill.get('outcome')}, ok={drill.get('ok')}")
        if not drill.get("ok"):
            _say(f"  {drill.get('reason')}: {drill.get('message')}")
    failover = figures.get("failover") or {}
    if failover:
        shown = {k: v for k, v in failover.items() if isinstance(v, (int, float, str, bool))}
        _say("failover   " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in shown.items()))
    report = figures.get("report") or {}
    if report:
        _say(f"report     {report['path']} ({report['bytes']} bytes); the daily report CronJob, run once: "
             f"{report.get('daily')}")
        _say(f"audit      chain ok={report['audit_ok']}: {report['audit_summary']}")
    _say(f"demo took  {seconds:.1f}s")


def _broken_policy(examples: list[dict]) -> dict:
    """A copy of the first example policy with two mistakes the API server's schema refuses."""
    base = next(d for d in examples if d["kind"] == "BackupPolicy")
    bad = copy.deepcopy(base)
    bad["metadata"] = {"name": "lab-results-typo"}
    bad["spec"]["tier"] = "AA"
    bad["spec"]["schedule"]["incremental"] = "every 15 minutes"
    return bad


def _unready_policy(examples: list[dict]) -> dict:
    """A valid policy naming a claim that does not exist: the operator says so in its status."""
    base = next(d for d in examples if d["kind"] == "BackupPolicy")
    bad = copy.deepcopy(base)
    bad["metadata"] = {"name": "lab-results-no-claim"}
    bad["spec"]["source"] = {"pvc": {"claimName": "lab-results-data"}}
    return bad


def _settled(cluster, body: dict):
    from lifeline.devstack import live  # lazy: the dev stack is slow to import

    obj = live.stored(cluster, body["kind"], NAMESPACE, body["metadata"]["name"])
    if obj and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation"):
        return obj
    return None


def _operator_writes(stack, since: int) -> tuple[int, int]:
    """Status writes and Events the operator made since audit line ``since`` (the API server's audit log)."""
    writes = stack.cluster.writes(stack.release.service_account, since=since)
    status = sum(1 for w in writes if w["objectRef"].get("subresource") == "status")
    events = sum(1 for w in writes if w["objectRef"].get("resource") == "events" and w["verb"] == "create")
    return status, events


async def _demo(args) -> int:
    from lifeline.devstack.scenes import backup as backup_scene  # lazy: the dev stack is slow to import
    from lifeline.devstack.stack import DevStack  # lazy: the dev stack is slow to import

    state = args.dir.resolve()
    if not any(args.examples.glob("*.yaml")):
        print(f"no manifests in {args.examples}/", file=sys.stderr)
        return 2
    started = time.monotonic()

    stack = DevStack(state, args.examples, _say, hospital=args.hospital or args.examples / "hospital",
                     extra_key_refs=[backup_scene.VAULT_KEY_REF], without=frozenset(args.without))
    async with stack:
        from datetime import datetime, timezone

        from lifeline.devstack import live  # lazy: the dev stack is slow to import

        cluster, kubeconfig = stack.cluster, stack.kubeconfig
        examples = stack.manifests  # every document of <examples>/*.yaml, read once by the stack
        kube = Kube.connect(kubeconfig)
        try:
            hospital = stack.applicable_hospital()
            try:
                await kube.create(BY_KIND["BackupPolicy"], NAMESPACE, _broken_policy(examples))
                _say("refused?          the API server took a policy with tier AA: its schema is not installed")
            except KubeError as exc:
                _say(f"refused           a policy with two typos, by the API server's schema: {str(exc)[:300]}")
            docs = examples + [_unready_policy(examples)] + hospital
            mark = cluster.audit_position()
            applied = time.monotonic()
            for doc in docs:
                await kube.create(BY_KIND[doc["kind"]], NAMESPACE, doc)
            _say(f"applied           {len(examples)} manifests from {args.examples}/, 1 policy naming a missing "
                 f"claim and {len(hospital)} from the hospital scenario into namespace {NAMESPACE}")
            for doc in docs:
                await live.until(lambda d=doc: _settled(cluster, d), 60, f"{doc['kind']} {doc['metadata']['name']}")
            # the broken policy's Warning Event follows its status write
            await live.until(lambda: _operator_writes(stack, mark)[1] >= 1, 30, "the operator's first Event")
            status_writes, events = _operator_writes(stack, mark)
            _say(f"operator          observed all {len(docs)} objects in {time.monotonic() - applied:.2f}s "
                 f"({status_writes} status writes, {events} events, counted in the API server's audit log)")

            objects = {info.kind: await kube.list(info, NAMESPACE) for info in KINDS}
            for info in KINDS:
                if objects[info.kind]:
                    _say(f"\n$ kubectl get {info.plural}")
                    _say(table(info, objects[info.kind], now=datetime.now(timezone.utc), namespaced=False))
            problems = [
                (o, conditions.find((o.get("status") or {}).get("conditions"), "Ready"))
                for items in objects.values() for o in items
            ]
            unready = live.stored(cluster, "BackupPolicy", NAMESPACE, "lab-results-no-claim") or {}
            source = conditions.find((unready.get("status") or {}).get("conditions"), "SourceAvailable")
            if source:
                _say(f"\nBackupPolicy/lab-results-no-claim: SourceAvailable={source['status']} ({source['reason']}): "
                     f"{source['message']}")
            for obj, ready in problems:
                if ready and ready["status"] != "True":
                    _say(f"\n{obj['kind']}/{obj['metadata']['name']} is not Ready ({ready['reason']}):")
                    for part in ready["message"].split("; "):
                        _say(f"  - {part}")

            figures = {}
            for title, scene in _scenes():
                _say(f"\n=== {title} " + "=" * (70 - len(title)))
                figures[title] = await scene.run(stack, _say)

            objects = {info.kind: await kube.list(info, NAMESPACE) for info in KINDS}
            dump = state / "objects.json"
            dump.write_text(json.dumps(objects, indent=2, sort_keys=True))
            figures["report"] = await _report(kube, state, stack.audit_url)
            figures["report"]["daily"] = await _daily_report(stack, state)
            _summary(figures, time.monotonic() - started)
            _say(f"\noutput in {state}/: objects.json (every object as stored), kubeconfig, report.html, "
                 "audit/, cluster/logs/ (every component's log and the API server's audit log), each scene's files")
            if args.keep:
                _say(f"\nkubeconfig        {kubeconfig}  (users: lifeline-admin, alice, bob, carol, dave)")
                _say(f"try               export KUBECONFIG={kubeconfig}")
                _say("                  kubectl version; kubectl get nodes; kubectl get backuppolicies")
                _say("                  lifeline backup now pacs-studies --wait 120")
                _say("                  kubectl --user alice auth can-i patch restores; kubectl auth can-i patch restores --as dave")
                _say("keeping it running; Ctrl-C to stop.")
                await _wait_for_stop()
        finally:
            kube.close()
    _say("stopped           every server and child process (state kept in " + str(state) + ")")
    return 0


async def _wait_for_stop() -> None:
    """Until Ctrl-C or SIGTERM: both leave through the stack's clean stop."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _daily_report(stack, state: Path) -> str:
    """Run the chart's daily report CronJob once now (as `kubectl create job --from=cronjob/...`): the
    report it writes lands beside the audit log, on the audit claim."""
    from lifeline.devstack import live  # lazy: the dev stack is slow to import

    name, phase, _ = await live.run_cronjob(stack.cluster, stack.release.namespace, f"{stack.release.name}-report",
                                            timeout=180)
    written = sorted((state / "audit" / "reports").glob("report-*.html"))
    if phase != "Succeeded" or not written:
        return f"the report CronJob's Job {name} ended {phase}: {live.job_log(stack.cluster, stack.release.namespace, name, container='report')}"
    return str(written[-1])


async def _report(kube, state: Path, audit_url: str) -> dict:
    """The HTML report and the audit chain's verification, both from what is stored."""
    path = await write_report_async(kube, state / "report.html", audit_url)
    result = await asyncio.to_thread(lambda: verify(open_store(audit_url, create=False)))
    return {"path": str(path), "bytes": path.stat().st_size, "audit_ok": result.ok,
            "audit_records": result.records, "audit_summary": result.summary()}
