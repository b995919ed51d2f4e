"""`lifeline operator`: run the control plane (inside the cluster or against a kubeconfig)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys

import kopf

from lifeline.observability.health import ExposureError, check_exposure
from lifeline.planning.approval_policy import PolicyError
from lifeline.planning.notices import TargetError


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
    p.add_argument("--metrics-auth", choices=("kubernetes", "none"),
                   default=os.environ.get("LIFELINE_METRICS_AUTH") or "kubernetes",
                   help="who may read /metrics and /report: kubernetes (default) asks the API server about "
                        "the caller's bearer token (TokenReview, SubjectAccessReview); none serves them on "
                        "loopback only (with --health-host 127.0.0.1)")
    p.add_argument("--peering", default=os.environ.get("LIFELINE_PEERING") or None,
                   help="kopf peering name: only the highest-priority replica acts (default: standalone)")
    p.add_argument("--priority", type=int, default=_env_int("LIFELINE_PRIORITY"),
                   help="kopf peering priority; default with --peering: derived from $POD_NAME (or the host "
                        "name) so replicas never tie — kopf freezes every replica when two share a priority")
    p.add_argument("--audit-url", default=os.environ.get("LIFELINE_AUDIT_URL") or None,
                   help="hash-chained audit log kept with the backups: file:///path/audit or s3://bucket/audit "
                        "(env LIFELINE_AUDIT_URL; S3 credentials from AWS_*); also read by /report")
    p.add_argument("--webhook-port", type=int, default=int(os.environ.get("LIFELINE_WEBHOOK_PORT") or 0),
                   help="serve the admission webhooks (/validate, /restore-approvals) over HTTPS on this port "
                        "(default 0: off; the chart uses 8443)")
    p.add_argument("--webhook-cert-dir", default=os.environ.get("LIFELINE_WEBHOOK_CERT_DIR") or None,
                   help="directory with tls.crt and tls.key for the webhooks (default: a self-signed dev certificate)")
    p.add_argument("--webhook-client-ca", default=os.environ.get("LIFELINE_WEBHOOK_CLIENT_CA") or None,
                   help="CA file of the certificate the API server presents to webhooks (its admission "
                        "configuration): callers without a certificate from it are refused at the handshake")
    p.add_argument("--log-format", choices=("plain", "full", "json"), default=os.environ.get("LIFELINE_LOG_FORMAT", "plain"))
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=run)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def peering_priority(explicit: int | None, peering: str | None, replica: str) -> int:
    """The replica's peering priority: the given one, else a stable number from its name.

    kopf pauses every operator that sees a peer of the same priority, so two
    replicas of one Deployment left at the default 0 would both stand still.
    A hash of the pod name differs per replica and stays put across restarts
    of the same pod; the highest one acts, the others wait as standbys.
    """
    if explicit is not None:
        return explicit
    if not peering:
        return 0
    digest = hashlib.sha256(replica.encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % 1_000_000_000


def namespaces_from(args) -> list[str]:
    if args.all_namespaces:
        return []
    if args.namespaces:
        return args.namespaces
    env = os.environ.get("LIFELINE_NAMESPACES", "")
    return [n.strip() for n in env.split(",") if n.strip()]


def run(args) -> int:
    from lifeline.runtime import Options, make_context, run as run_operator  # lazy: kopf handlers, prometheus: only to run

    fmt = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[args.log_format]
    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=fmt)
    options = Options(
        namespaces=namespaces_from(args),
        kubeconfig=args.kubeconfig,
        context=args.context,
        health_host=args.health_host,
        health_port=args.health_port,
        metrics_auth=args.metrics_auth,
        peering=args.peering,
        priority=peering_priority(args.priority, args.peering,
                                  os.environ.get("POD_NAME") or socket.gethostname()),
        audit_url=args.audit_url,
        webhook_port=args.webhook_port,
        webhook_cert_dir=args.webhook_cert_dir,
        webhook_client_ca=args.webhook_client_ca,
    )
    try:
        check_exposure(options.health_host, options.metrics_auth == "kubernetes")
        ctx = make_context(options)  # reads the admin's approval policies and notification targets once
    except (ExposureError, PolicyError, TargetError) as exc:
        print(f"lifeline operator: {exc}", file=sys.stderr)
        return 2
    asyncio.run(run_operator(ctx))
    return 0
