"""`lifeline report`: the DR compliance report as one HTML file an auditor can read (or a PDF)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from lifeline.kube import Kube, KubeError
from lifeline.observability import report_html, report_restores
from lifeline.observability.report import collect_access, collect_objects, render_for

CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write the DR compliance report (HTML, or PDF)",
                              description="At a glance: each policy's objectives met or missed. Per policy: tier, "
                                          "RPO (with a chart of the RPO achieved), backups, encryption and keys, "
                                          "off-site copies; drills and failovers against their RTO; who holds which "
                                          "Lifeline right; every Restore's record; the audit chain's verification.")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or in-cluster)")
    p.add_argument("--context", default=None)
    p.add_argument("-n", "--namespace", default=None, help="only this namespace (default: all)")
    p.add_argument("--audit-url", default=os.environ.get("LIFELINE_AUDIT_URL"),
                   help="the audit log to verify and read key rotations from (env LIFELINE_AUDIT_URL)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", default=None,
                     help="where to write the HTML (default report.html; - for stdout)")
    out.add_argument("--output-dir", default=None,
                     help="write report-YYYY-MM-DD.html there (the daily CronJob writes beside the audit log)")
    p.add_argument("--pdf", default=None, metavar="FILE",
                   help="also print the page to FILE as PDF (A4), through headless Chromium "
                        "(LIFELINE_CHROMIUM, or chromium on PATH)")
    p.add_argument("--restore", default=None, metavar="NS/NAME",
                   help="only this Restore's audit record: who asked, who approved, what point, when, the outcome")
    p.set_defaults(func=run)


def chromium() -> str | None:
    given = os.environ.get("LIFELINE_CHROMIUM")
    return given if given else next((found for name in CHROMIUMS if (found := shutil.which(name))), None)


def print_pdf(html_path: Path, pdf_path: Path) -> str | None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium; the problem, or None."""
    browser = chromium()
    if browser is None:
        return "no Chromium found: install chromium or set LIFELINE_CHROMIUM to its path"
    with_profile = Path(pdf_path).with_suffix(".chromium-profile")
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", f"--user-data-dir={with_profile}",
                           "--no-pdf-header-footer", f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)
    shutil.rmtree(with_profile, ignore_errors=True)
    if proc.returncode != 0 or not Path(pdf_path).is_file():
        return f"Chromium could not print the PDF: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return None


def run(args) -> int:
    import asyncio

    try:
        kube = Kube.connect(args.kubeconfig, args.context)
    except Exception as exc:  # the kubernetes loader raises many kinds
        print(f"lifeline report: error: cannot connect to the cluster: {exc}", file=sys.stderr)
        return 2

    async def gather():
        return await collect_objects(kube, args.namespace), await collect_access(kube)
    try:
        objects, access = asyncio.run(gather())
    except KubeError as exc:
        print(f"lifeline report: error: {exc}", file=sys.stderr)
        return 1
    finally:
        kube.close()
    now = datetime.now(timezone.utc)
    if args.restore:
        found = report_restores.find(objects.get("Restore") or [], args.restore)
        if found is None:
            print(f"lifeline report: error: no single Restore {args.restore!r} (give NS/NAME)", file=sys.stderr)
            return 1
        html = report_html.restore_page(report_restores.restore_facts(found), now)
    else:
        html = render_for(objects, args.audit_url, now, access)
    if args.output == "-":
        sys.stdout.write(html)
        return 0
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        target = Path(args.output_dir) / f"report-{now:%Y-%m-%d}.html"
    else:
        target = Path(args.output or "report.html")
    target.write_text(html, encoding="utf-8")
    print(f"wrote {target}")
    if args.pdf:
        problem = print_pdf(target, Path(args.pdf))
        if problem:
            print(f"lifeline report: error: {problem}", file=sys.stderr)
            return 1
        print(f"wrote {args.pdf}")
    return 0
