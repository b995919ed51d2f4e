"""`lifeline report`: the DR compliance report as one HTML file an auditor can read."""
from __future__ import annotations

import os
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the DR compliance report (HTML)",
                              description="Per policy: tier, RPO, backups, encryption and keys, off-site copies; "
                                          "drills and failovers against their RTO; the audit chain's verification.")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or in-cluster)")
    p.add_argument("--context", default=None)
    p.add_argument("-n", "--namespace", default=None, help="only this namespace (default: all)")
    p.add_argument("--audit-url", default=os.environ.get("LIFELINE_AUDIT_URL"),
                   help="the audit log to verify and read key rotations from (env LIFELINE_AUDIT_URL)")
    p.add_argument("-o", "--output", default="report.html", help="where to write the HTML (default report.html; - for stdout)")
    p.set_defaults(func=run)


def run(args) -> int:
    import asyncio

    from lifeline.kube import Kube, KubeError
    from lifeline.observability.report import collect_objects, render_for

    try:
        kube = Kube.connect(args.kubeconfig, args.context)
    except Exception as exc:  # the kubernetes loader raises many kinds
        print(f"lifeline report: error: cannot connect to the cluster: {exc}", file=sys.stderr)
        return 2
    try:
        objects = asyncio.run(collect_objects(kube, args.namespace))
    except KubeError as exc:
        print(f"lifeline report: error: {exc}", file=sys.stderr)
        return 1
    finally:
        kube.close()
    html = render_for(objects, args.audit_url)
    if args.output == "-":
        sys.stdout.write(html)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(html)
        print(f"wrote {args.output}")
    return 0
