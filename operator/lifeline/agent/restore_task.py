"""What a restore Job runs: ``python -m lifeline.agent.restore_task restore``.

The operator renders the task into ``LIFELINE_JOB_PLAN`` (:mod:`lifeline.planning.restore_job`).
Here, in order: the stored manifest of the point is hashed and compared with the checksum the
RecoveryPoint recorded at backup time (a replaced or damaged manifest stops the restore before
a byte is written); then the point is restored, to a directory or as one byte stream into the
FIFO a ``load`` container reads (every chunk is authenticated and re-hashed on the way, so a
corrupted chunk fails the restore); for a stream, the load command's exit status decides.

The summary written to the termination message (:class:`~lifeline.messages.RestoreSummary`, at
most 4 KiB) carries the measurements the operator records: ``checksumSeconds`` and
``restoreSeconds`` measured here with a monotonic clock, bytes and files restored, and on failure
a ``reason`` (one CamelCase word) and an ``error`` sentence. Exit codes: 0 restored and checked,
1 failed (the summary says why), 78 (:data:`~lifeline.messages.EXIT_BAD_PLAN`) the plan is unusable.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from lifeline.errors import LifelineError
from lifeline.keys.choice import provider_for
from lifeline.messages import (DEFAULT_TERMINATION_LOG, PLAN_ENV, DestinationPlan, RestorePlan, RestoreSummary,
                               RestoreTargetPlan, UnreadableMessage, termination)
from lifeline.messages.summaries import ObjectFailed
from lifeline.messages.destination import destination_env
from lifeline.repository.errors import DamagedData, KeyMismatch, LockConflict, ObjectNotFound, PointNotFound
from lifeline.repository.repo import Repository

from .jobs import key_ref_of, load_plan, log, open_destination, os_error, read_exit_code, refuse_plan
from .objects_put_back import put_back
from .objects_sandbox import fence
from .progress import Progress
from .restore import Restorer

LOAD_WAIT = 6 * 3600.0  # the Job's deadline ends a load that never finishes; this only bounds the wait


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Failed(Exception):
    def __init__(self, reason: str, error: str):
        super().__init__(error)
        self.reason, self.error = reason, error


def _reason(exc: Exception) -> str:
    for cls, reason in ((DamagedData, "DamagedData"), (KeyMismatch, "KeyUnavailable"),
                        (PointNotFound, "PointNotFound"), (LockConflict, "RepositoryLocked")):
        if isinstance(exc, cls):
            return reason
    return "RestoreFailed"


def _open(dest: DestinationPlan, env: dict):
    return Repository.open(open_destination(dest, env))


def _provider(key_ref: str, repo):
    return provider_for(repo, key_ref)


def _check_manifest(repo, plan: RestorePlan) -> str:
    """The stored manifest's checksum; Failed when it is not the one recorded at backup time."""
    try:
        actual = repo.point_checksum(plan.snapshot_id)
    except ObjectNotFound:
        raise Failed("PointNotFound", f"the manifest of point {plan.snapshot_id} is gone from "
                                      f"{repo.url}; was it pruned or shredded?") from None
    expected = plan.manifest_checksum
    if expected and actual != expected:
        raise Failed("ChecksumMismatch", f"the manifest of point {plan.snapshot_id} has checksum {actual}, "
                                         f"but {expected} was recorded at backup time: it was changed or damaged")
    return actual


# Lines that may quote rows (PostgreSQL's DETAIL/CONTEXT, a failed statement): never in a status.
_QUOTING = ("detail:", "context:", "command was:", "hint:", "line ")


def load_error(path: str | None, limit: int = 300) -> str:
    """The load command's last error line from its stderr file, without lines that may quote data."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.lower().startswith(_QUOTING)]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()] or lines
    return errors[-1][:limit] if errors else ""


def _to_fifo(restorer, target: RestoreTargetPlan) -> dict:
    """Write the point's one stream into the FIFO; then wait for the load command's status."""
    fifo = target.path
    summary = None
    error: Exception | None = None
    # Opening a FIFO for writing waits for the load container to open it for reading.
    with open(fifo, "wb", buffering=0) as out:
        try:
            summary = restorer.to_stream(out)
        except Exception as exc:  # noqa: BLE001 - reported below, after the loader saw EOF
            error = exc
    status = read_exit_code(target.exit_code, LOAD_WAIT)
    if error is not None:
        raise error
    if status != 0:
        why = (f"the load command exited with status {status}" if status is not None
               else "the load command's exit status never appeared (did the load container start?)")
        reason = load_error(target.errors)
        raise Failed("LoadFailed", f"{why}: {reason}" if reason else why)
    return summary


def _objects(target: RestoreTargetPlan, out: RestoreSummary) -> None:
    """Put the restored tree's objects back; their outcome into ``out``; Failed when any object failed.
    Into a drill's sandbox, what must not come back there is taken out first (:func:`fence`)."""
    left_out = fence(Path(target.path), target.leave_out or (), bool(target.sandbox)) \
        if target.leave_out or target.sandbox else []
    done = put_back(target)
    out.objects, out.claims_with_data = done.counts(), done.claims_with_data or None
    if left_out:
        out.objects["left out"] = len(left_out)
    failed = [o for o in done.outcomes if o.outcome == "failed"]
    out.object_failures = [ObjectFailed(kind=o.kind, name=o.where, error=o.message[:300]) for o in failed] or None
    shutil.rmtree(target.path, ignore_errors=True)  # the Secrets in clear: gone before the summary is written
    if failed:
        first = failed[0]
        raise Failed("ObjectsFailed", f"{len(failed)} of {len(done.outcomes)} objects failed; first {first.kind} "
                                      f"{first.where}: {first.message}")


def run_restore(plan: RestorePlan, key_ref: str, env: dict) -> RestoreSummary:
    dest = plan.destinations[0]
    denv = destination_env(dest, env)
    out = RestoreSummary(ok=False, point=plan.point, snapshot_id=plan.snapshot_id, destination=dest.name,
                         start=_now())
    try:
        t0 = time.monotonic()
        try:
            repo = _open(dest, denv)
            out.checksum = _check_manifest(repo, plan)
        except LifelineError as exc:
            raise Failed(_reason(exc), str(exc)) from None
        out.checksum_seconds = round(time.monotonic() - t0, 3)
        t1 = time.monotonic()
        try:
            # progress lines in the Job's log: `lifeline drill run` and `restore status --wait` draw a bar
            restorer = Restorer(repo, _provider(key_ref, repo), plan.snapshot_id,
                                progress=Progress("restore", enabled=False, lines=sys.stderr))
            target = plan.target
            with restorer.progress:
                if target.kind == "pvc":
                    result = restorer.to_directory(target.path, overwrite=target.overwrite)
                elif target.kind == "objects":
                    result = restorer.to_directory(target.path)
                else:
                    result = _to_fifo(restorer, target)
            if target.kind == "objects":
                _objects(target, out)
        except LifelineError as exc:
            raise Failed(_reason(exc), str(exc)) from None
        out.restore_seconds = round(time.monotonic() - t1, 3)
        out.ok, out.bytes_restored, out.files = True, int(result.get("bytes") or 0), int(result.get("files") or 0)
    except Failed as exc:
        out.reason, out.error = exc.reason, exc.error[:600]
    except OSError as exc:
        out.reason, out.error = "RestoreFailed", os_error(exc)[:600]
    out.end = _now()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifeline.agent.restore_task",
                                     description="Run one restore Job's plan (rendered by the operator).")
    sub = parser.add_subparsers(dest="operation", required=True)
    p = sub.add_parser("restore")
    p.add_argument("--plan", default=os.environ.get(PLAN_ENV),
                   help=f"the plan as JSON, or @file (default: ${PLAN_ENV})")
    p.add_argument("--termination-log", default=os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG)
    args = parser.parse_args(argv)
    try:
        plan = load_plan(args.plan, RestorePlan)
    except UnreadableMessage as exc:
        return refuse_plan(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-restore-"))
    try:
        summary = run_restore(plan, key_ref_of(plan, workdir), dict(os.environ))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"restore of {plan.point}: " + (f"ok, {summary.bytes_restored} bytes in {summary.restore_seconds}s"
                                         if summary.ok else f"FAILED ({summary.reason}): {summary.error}"))
    print(termination.write(args.termination_log, summary), flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
