"""What a RecoveryPoint's shred Job runs: ``python -m lifeline.keys.shred_job``.

The operator renders the task into ``LIFELINE_JOB_PLAN`` (a :class:`~lifeline.messages.ShredPlan`,
see :mod:`lifeline.planning.recoverypoint_shred`): the point's copies (destination and
snapshot id), the destinations' repositories, the key reference, and who/why for the
tombstone. For every copy this runs ``lifeline keys shred --point <snapshot> --yes`` —
the very command a person runs — with that destination's own S3 credentials, and
writes one compact summary (:class:`~lifeline.messages.ShredSummary`) to the termination
message, which the operator reads before it lets the RecoveryPoint go.

On an immutable destination (docs/immutability.md) a shred is a tombstone sealed with the epoch's
key, so there the command gets ``--key`` (a ``secret://`` key's mounted file copied to a 0600 file
first, as the backup Jobs do); elsewhere it needs none.

A copy whose point is already gone because its epoch was shredded earlier (a retry, or
a sibling point of the same epoch) counts as done. Exit codes: 0 every copy shredded,
1 at least one failed, 78 (:data:`~lifeline.messages.EXIT_BAD_PLAN`) the plan is unusable.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lifeline.messages import (DEFAULT_TERMINATION_LOG, EXIT_BAD_PLAN, PLAN_ENV, CopyShredded, DestinationFailed,
                               DestinationPlan, ShredPlan, ShredSummary, UnreadableMessage, read_plan, termination)
from lifeline.messages.destination import destination_env, stderr_tail

ALREADY = "no longer exists"  # PointShredded's wording: the tombstone names the epoch's shred


def _log(message: str) -> None:
    print(f"lifeline shred job: {message}", file=sys.stderr, flush=True)


def _argv(dest: DestinationPlan, snapshot: str, plan: ShredPlan, key_ref: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "lifeline.keys", "shred", "--repo", dest.repository, "--point", snapshot,
            "--yes", "--json", "--actor", plan.actor or "lifeline-operator",
            "--reason", plan.reason, "--lock-wait", str(plan.lock_wait)]
    if dest.immutable is not None and key_ref:
        argv += ["--key", key_ref]  # the tombstone is sealed with the epoch's key
    return argv  # else no --key: destroying a wrapped key needs no key, and the actor is given


def key_ref_of(plan: ShredPlan, workdir: Path) -> str | None:
    """The key for an immutable destination's shred: a mounted Secret's file copied to a 0600 file (None
    when it is not there: the shred then says it needs the key), else the reference itself (Vault)."""
    source = plan.key.file
    if not source:
        return plan.key.ref
    target = workdir / "key"
    try:
        with open(source, "rb") as src:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out)
    except OSError as exc:
        _log(f"the key file {source} cannot be read ({exc.strerror or exc}): immutable destinations cannot be "
             "shredded without it")
        return None
    return f"file://{target}"


def shred_copy(plan: ShredPlan, dest: DestinationPlan, snapshot: str,
               key_ref: str | None = None) -> CopyShredded | DestinationFailed:
    env = destination_env(dest, dict(os.environ))
    proc = subprocess.run(_argv(dest, snapshot, plan, key_ref), env=env, capture_output=True, text=True)
    if proc.stderr:
        sys.stderr.write("".join(f"[{dest.name}] {ln}\n" for ln in proc.stderr.splitlines()))
    if proc.returncode == 0:
        result = json.loads(proc.stdout)
        return CopyShredded(destination=dest.name, epoch=result["epoch"], shredded_at=result["shredded_at"],
                            actor=result["actor"], points=result["points_shredded"])
    if ALREADY in proc.stderr:
        return CopyShredded(destination=dest.name, already=True, error=stderr_tail(proc.stderr))
    return DestinationFailed(destination=dest.name, exit_code=proc.returncode,
                             error=stderr_tail(proc.stderr) or f"keys shred exited with status {proc.returncode}")


def run(plan: ShredPlan) -> tuple[int, ShredSummary]:
    dests = {d.name: d for d in plan.destinations}
    summary = ShredSummary(point=plan.recovery_point)
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-shred-"))
    try:
        key_ref = key_ref_of(plan, workdir) if any(d.immutable is not None for d in plan.destinations) else None
        for copy in plan.copies:
            dest = dests.get(copy.destination)
            if dest is None:
                summary.failures.append(DestinationFailed(destination=copy.destination,
                                                          error="the policy no longer names this destination"))
                continue
            out = shred_copy(plan, dest, copy.snapshot_id, key_ref)
            (summary.failures if isinstance(out, DestinationFailed) else summary.shredded).append(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return (1 if summary.failures or not summary.shredded else 0), summary


def main(argv: list[str] | None = None) -> int:
    try:
        plan = read_plan(os.environ.get(PLAN_ENV), ShredPlan)
    except UnreadableMessage as exc:
        _log(f"error: {exc}; nothing was shredded")
        return EXIT_BAD_PLAN
    rc, summary = run(plan)
    path = os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG
    print(termination.write(path, summary), flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
