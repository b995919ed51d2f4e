"""`lifeline demo`: the control plane on this machine, no cluster, real state printed.

Starts the honest API emulator on loopback, runs the real operator against it,
applies the manifests in ``examples/`` (and one broken policy, to show what a
mistake looks like), waits until the operator has observed every object, and
prints them the way ``kubectl get`` would, from the status the operator wrote.
It grows with every controller that lands.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
import time
from pathlib import Path

import yaml

from lifeline.api import BY_KIND, KINDS
from lifeline.planning import conditions

NAMESPACE = "hospital"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the control plane locally against an API emulator and show its work")
    p.add_argument("--dir", type=Path, default=Path(".demo"), help="where logs, kubeconfig and state go (default .demo)")
    p.add_argument("--examples", type=Path, default=Path("examples"), help="manifests to apply (default examples/)")
    p.add_argument("--keep", action="store_true", help="keep running (Ctrl-C to stop) so you can use kubectl")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        return asyncio.run(_demo(args))
    except KeyboardInterrupt:
        return 130


def _say(text: str = "") -> None:
    print(text, flush=True)


def _scenes():
    """The areas the demo walks through, in the order of the DR loop."""
    from lifeline.devstack.scenes import backup, failover

    return (("backup", backup), ("failover", failover))


def _summary(figures: dict, seconds: float) -> None:
    """One line per area with the figures the scenes measured."""
    _say("\n=== summary " + "=" * 62)
    backup = figures.get("backup") or {}
    if backup:
        points = backup.get("recoveryPoints") or []
        _say(f"backup     {len(points)} recovery points "
             f"({', '.join(p['spec']['type'] for p in points)}), "
             f"{sum(p['spec']['sizeBytes'] for p in points)} bytes protected, ok={backup.get('ok')}")
    failover = figures.get("failover") or {}
    if failover:
        shown = {k: v for k, v in failover.items() if isinstance(v, (int, float, str, bool))}
        _say("failover   " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in shown.items()))
    _say(f"demo took  {seconds:.1f}s")


def _broken_policy(examples: list[dict]) -> dict:
    """A copy of the first example policy with two mistakes a person makes."""
    base = next(d for d in examples if d["kind"] == "BackupPolicy")
    bad = copy.deepcopy(base)
    bad["metadata"] = {"name": "lab-results-typo"}
    bad["spec"]["tier"] = "AA"
    bad["spec"]["schedule"]["incremental"] = "every 15 minutes"
    return bad


def _settled(emulator, body: dict):
    info = BY_KIND[body["kind"]]
    obj = emulator.stored(info.resource, NAMESPACE, body["metadata"]["name"])
    if obj and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation"):
        return obj
    return None


async def _demo(args) -> int:
    from lifeline.devstack.emulator import make_emulator, serve, write_kubeconfig
    from lifeline.devstack.operator_thread import running_operator
    from lifeline.kube import Kube
    from lifeline.printing import table

    state = args.dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / "operator.log"
    handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

    paths = sorted(args.examples.glob("*.yaml"))
    if not paths:
        print(f"no manifests in {args.examples}/", file=sys.stderr)
        return 2
    examples = [d for p in paths for d in yaml.safe_load_all(p.read_text()) if d]
    started = time.monotonic()

    emulator = make_emulator()
    emulator.seed("v1/namespaces", {"metadata": {"name": NAMESPACE}})
    async with serve(emulator) as url:
        kubeconfig = write_kubeconfig(url, state / "kubeconfig", namespace=NAMESPACE)
        _say(f"API emulator      {url}   (kubeconfig: {kubeconfig})")
        async with running_operator(kubeconfig, emulator) as ctx:
            _say(f"operator          running; probes and metrics on http://127.0.0.1:{ctx.health_port}/metrics")
            kube = Kube.connect(kubeconfig)
            docs = examples + [_broken_policy(examples)]
            for doc in docs:
                await kube.create(BY_KIND[doc["kind"]], NAMESPACE, doc)
            _say(f"applied           {len(examples)} manifests from {args.examples}/ and 1 broken policy "
                 f"into namespace {NAMESPACE}")
            for doc in docs:
                await emulator.wait_for(lambda: _settled(emulator, doc), timeout=30)
            # the broken policy's Warning Event follows its status write
            await emulator.wait_for(lambda: emulator.count_writes("events", method="POST") >= 1, timeout=30)
            _say(f"operator          observed all {len(docs)} objects in {time.monotonic() - started:.2f}s "
                 f"({emulator.count_writes(subresource='status')} status writes, "
                 f"{emulator.count_writes('events', method='POST')} events)")

            objects = {info.kind: await kube.list(info, NAMESPACE) for info in KINDS}
            for info in KINDS:
                if objects[info.kind]:
                    _say(f"\n$ kubectl get {info.plural}")
                    _say(table(info, objects[info.kind], now=ctx.clock.now(), namespaced=False))
            problems = [
                (o, conditions.find((o.get("status") or {}).get("conditions"), "Ready"))
                for items in objects.values() for o in items
            ]
            for obj, ready in problems:
                if ready and ready["status"] != "True":
                    _say(f"\n{obj['kind']}/{obj['metadata']['name']} is not Ready ({ready['reason']}):")
                    for part in ready["message"].split("; "):
                        _say(f"  - {part}")

            figures = {}
            for title, scene in _scenes():
                _say(f"\n=== {title} " + "=" * (70 - len(title)))
                figures[title] = await scene.run(emulator, kubeconfig, state, _say)

            objects = {info.kind: await kube.list(info, NAMESPACE) for info in KINDS}
            dump = state / "objects.json"
            dump.write_text(json.dumps(objects, indent=2, sort_keys=True))
            _summary(figures, time.monotonic() - started)
            _say(f"\noutput in {state}/: objects.json (every object as stored), operator.log, kubeconfig, "
                 "and each scene's files")
            if args.keep:
                _say(f"\nkeeping it running; try:  kubectl --kubeconfig {kubeconfig} get lifeline")
                _say("Ctrl-C to stop.")
                await asyncio.Event().wait()
            kube.close()
    return 0
