"""What a continuous PostgreSQL policy's backup Job runs: ``python -m lifeline.agent.base_backup_job``.

``pg_basebackup`` has already run, in the database's own image, as the pod's init container, and
left a plain-format copy in ``/basebackup/data`` (the agent image has no PostgreSQL client). This
module stores that copy at every destination exactly as ``lifeline agent base-backup`` would: an
ordinary directory backup tagged ``base-backup`` and ``wal-start=<first segment it needs>`` (read
from the copy's ``backup_label``), so ``restore-pitr`` finds it. Everything else, the per-destination
fan-out, the compact summary in the termination message the operator turns into a RecoveryPoint,
the exit codes, is :mod:`lifeline.agent.jobs`'s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from lifeline.messages import PLAN_ENV, BackupPlan, BackupSummary, UnreadableMessage, termination

from . import jobs
from .wal_pitr import BASE_TAG, START_TAG, wal_start_of


def plan_for_directory(plan: BackupPlan) -> BackupPlan:
    """The job plan of a base backup (``source.baseBackup``) as a tagged directory backup."""
    source = plan.source
    if not source.base_backup:
        raise SystemExit(jobs.refuse_plan(f"this plan's {source.kind} source is not a base backup (source.baseBackup)"))
    label = Path(source.path) / "backup_label"
    try:
        start = wal_start_of(label.read_text())
    except OSError as exc:
        raise ValueError(f"pg_basebackup left no {label} ({exc.strerror or exc}): did the init container run?") \
            from None
    if start is None:
        raise ValueError(f"{label} has no START WAL LOCATION: not a pg_basebackup copy")
    tags = [t for t in plan.tags if t != BASE_TAG and not t.startswith(START_TAG)]
    return plan.model_copy(update={"source": source.model_copy(update={"base_backup": None}),
                                   "tags": tags + [BASE_TAG, START_TAG + start]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifeline.agent.base_backup_job",
                                     description="Store a pg_basebackup copy as a base backup (the operator's Job).")
    parser.add_argument("operation", choices=["backup"], nargs="?", default="backup")
    parser.add_argument("--plan", default=os.environ.get(PLAN_ENV))
    parser.add_argument("--termination-log",
                        default=os.environ.get("LIFELINE_TERMINATION_LOG") or termination.DEFAULT_TERMINATION_LOG)
    args = parser.parse_args(argv)
    try:
        plan = jobs.load_plan(args.plan, BackupPlan)
    except UnreadableMessage as exc:
        return jobs.refuse_plan(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-job-"))
    try:
        task = jobs.Task(plan_for_directory(plan), jobs.key_ref_of(plan, workdir), dict(os.environ))
        rc, summary = jobs.run_backup(task)
    except (OSError, ValueError) as exc:
        message = jobs.os_error(exc) if isinstance(exc, OSError) else str(exc)
        rc, summary = 1, BackupSummary(requested_type=plan.type, error=message)
        jobs.log(f"error: {message}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(termination.write(args.termination_log, summary), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
