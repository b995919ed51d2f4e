"""`lifeline operator`: run the control plane (inside the cluster or against a kubeconfig)."""
from __future__ import annotations

import asyncio
import os

import kopf


def register(sub) -> None:
    p = sub.add_parser("operator", help="run the Lifeline operator")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", dest="namespaces", action="append", default=None, metavar="NS",
        help="watch this namespace (repeatable; globs allowed); default: $LIFELINE_NAMESPACES or all",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file; in a pod the service account is used")
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--health-port", type=int, default=int(os.environ.get("LIFELINE_HEALTH_PORT", "8080")),
                   help="port of /healthz, /readyz and /metrics (default 8080)")
    p.add_argument("--health-host", default="0.0.0.0")
    p.add_argument("--peering", default=os.environ.get("LIFELINE_PEERING") or None,
                   help="kopf peering name: only the highest-priority replica acts (default: standalone)")
    p.add_argument("--priority", type=int, default=int(os.environ.get("LIFELINE_PRIORITY", "0")))
    p.add_argument("--log-format", choices=("plain", "full", "json"), default=os.environ.get("LIFELINE_LOG_FORMAT", "plain"))
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=run)


def namespaces_from(args) -> list[str]:
    if args.all_namespaces:
        return []
    if args.namespaces:
        return args.namespaces
    env = os.environ.get("LIFELINE_NAMESPACES", "")
    return [n.strip() for n in env.split(",") if n.strip()]


def run(args) -> int:
    from lifeline.runtime import Options, make_context, run as run_operator

    fmt = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[args.log_format]
    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=fmt)
    options = Options(
        namespaces=namespaces_from(args),
        kubeconfig=args.kubeconfig,
        context=args.context,
        health_host=args.health_host,
        health_port=args.health_port,
        peering=args.peering,
        priority=args.priority,
    )
    asyncio.run(run_operator(make_context(options)))
    return 0
