"""`lifeline report`: the DR compliance report as one HTML file an auditor can read (or a PDF)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

from lifeline.cli_stderr import arg_type, guard
from lifeline.errors import UsageError
from lifeline.kube import Kube, KubeError
from lifeline.observability import report_html, report_restores
from lifeline.observability.report import collect_access, collect_objects, render_for
from lifeline.repository.backend import S3Options, open_backend

CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "chrome")
OBJECT_STORES = ("s3", "s3a", "azure")


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
    out.add_argument("--output-url", default=None, metavar="URL", type=arg_type(object_store_url),
                     help="write report-YYYY-MM-DD.html under this object-store prefix, e.g. "
                          "s3://bucket/audit/reports (credentials and endpoint as for --audit-url: AWS_*); "
                          "one whole-object put a day, so no other day's report is touched")
    p.add_argument("--pdf", nargs="?", const="", default=None, metavar="FILE",
                   help="also print the page as PDF (A4) to FILE, or without FILE beside the HTML "
                        "(report-YYYY-MM-DD.pdf with --output-dir and --output-url), through headless Chromium "
                        "(LIFELINE_CHROMIUM, or chromium on PATH)")
    p.add_argument("--restore", default=None, metavar="NS/NAME",
                   help="only this Restore's audit record: who asked, who approved, what point, when, the outcome")
    p.set_defaults(func=run)


def object_store_url(text: str) -> str:
    """``text`` when it names an object-store prefix (what ``--output-url`` takes)."""
    if urllib.parse.urlparse(text).scheme not in OBJECT_STORES:
        raise UsageError(f"{text!r} is not an object-store URL: give s3://bucket/prefix or "
                         "azure://container/prefix (for a directory, use --output-dir)")
    return text


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


@guard(lambda args: "lifeline report")
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
    name = f"report-{now:%Y-%m-%d}.html"
    if args.output_url:
        return publish(args.output_url, name, html, args.pdf)
    if args.output_dir:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        target = Path(args.output_dir) / name
    else:
        target = Path(args.output or "report.html")
    target.write_text(html, encoding="utf-8")
    print(f"wrote {target}")
    if args.pdf is None:
        return 0
    pdf = Path(args.pdf or target.with_suffix(".pdf"))
    if not printed(target, pdf):
        return 1
    print(f"wrote {pdf}")
    return 0


def printed(page: Path, pdf: Path) -> bool:
    """Whether ``page`` printed to ``pdf``; when not, the problem is said on stderr."""
    problem = print_pdf(page, pdf)
    if problem:
        print(f"lifeline report: error: {problem}", file=sys.stderr)
    return problem is None


def publish(url: str, name: str, html: str, pdf: str | None) -> int:
    """``name`` (and its PDF, with a bare ``--pdf``) under the object-store prefix ``url``, each in one
    whole-object put: a reader sees the whole page or none, and each day's name is that day's object alone."""
    store = open_backend(url, S3Options())
    try:
        store.put(name, html.encode("utf-8"))
        print(f"wrote {store.url}/{name}")
        if pdf is None:
            return 0
        with tempfile.TemporaryDirectory(prefix="lifeline-report-") as scratch:
            page = Path(scratch) / name
            page.write_text(html, encoding="utf-8")
            target = Path(pdf or page.with_suffix(".pdf"))
            if not printed(page, target):
                return 1
            if pdf:  # --pdf FILE: a file here, as asked
                print(f"wrote {target}")
                return 0
            store.put(target.name, target.read_bytes())
            print(f"wrote {store.url}/{target.name}")
        return 0
    finally:
        store.close()
