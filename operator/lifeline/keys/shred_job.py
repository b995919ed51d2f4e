"""What a RecoveryPoint's shred Job runs: ``python -m lifeline.keys.shred_job``.

The operator renders the task into ``LIFELINE_JOB_PLAN`` (see
:mod:`lifeline.planning.recoverypoint_shred`): the point's copies (destination and
snapshot id), the destinations' repositories, the key reference, and who/why for the
tombstone. For every copy this runs ``lifeline keys shred --point <snapshot> --yes`` —
the very command a person runs — with that destination's own S3 credentials, and
writes one compact JSON summary to the termination message, which the operator reads
before it lets the RecoveryPoint go.

A copy whose point is already gone because its epoch was shredded earlier (a retry, or
a sibling point of the same epoch) counts as done. Exit codes: 0 every copy shredded,
1 at least one failed, 2 the plan is unusable.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from lifeline.agent.jobs import DEFAULT_TERMINATION_LOG, Destination, _tail, _write_termination, compact

ALREADY = "no longer exists"  # PointShredded's wording: the tombstone names the epoch's shred


def _log(message: str) -> None:
    print(f"lifeline shred job: {message}", file=sys.stderr, flush=True)


def _argv(dest: Destination, snapshot: str, plan: dict) -> list[str]:
    argv = [sys.executable, "-m", "lifeline.keys", "shred", "--repo", dest.repository, "--point", snapshot,
            "--yes", "--json", "--actor", plan.get("actor") or "lifeline-operator",
            "--reason", plan.get("reason") or "", "--lock-wait", str(plan.get("lockWait", 120))]
    return argv  # no --key: destroying a wrapped key needs no key, and the actor is given


def shred_copy(plan: dict, dest: Destination, snapshot: str) -> dict:
    env = dest.env(dict(os.environ))
    proc = subprocess.run(_argv(dest, snapshot, plan), env=env, capture_output=True, text=True)
    if proc.stderr:
        sys.stderr.write("".join(f"[{dest.name}] {ln}\n" for ln in proc.stderr.splitlines()))
    if proc.returncode == 0:
        result = json.loads(proc.stdout)
        return {"d": dest.name, "epoch": result["epoch"], "at": result["shredded_at"], "actor": result["actor"],
                "points": result["points_shredded"]}
    if ALREADY in proc.stderr:
        return {"d": dest.name, "already": True, "error": _tail(proc.stderr)}
    return {"d": dest.name, "rc": proc.returncode, "failed": True,
            "error": _tail(proc.stderr) or f"keys shred exited with status {proc.returncode}"}


def run(plan: dict) -> tuple[int, dict]:
    dests = {d["name"]: Destination.from_plan(d) for d in plan.get("destinations") or []}
    ok, failed = [], []
    for copy in plan.get("copies") or []:
        dest = dests.get(copy["destination"])
        if dest is None:
            failed.append({"d": copy["destination"], "error": "the policy no longer names this destination"})
            continue
        out = shred_copy(plan, dest, copy["snapshotId"])
        (failed if out.pop("failed", False) else ok).append(out)
    summary = {"v": 1, "op": "shred", "point": plan.get("recoveryPoint"), "ok": ok, "failed": failed}
    return (1 if failed or not ok else 0), summary


def main(argv: list[str] | None = None) -> int:
    text = os.environ.get("LIFELINE_JOB_PLAN") or ""
    try:
        plan = json.loads(text)
    except ValueError:
        plan = None
    if not isinstance(plan, dict) or plan.get("v") != 1 or plan.get("operation") != "shred":
        _log("error: LIFELINE_JOB_PLAN is not a version 1 shred plan")
        return 2
    rc, summary = run(plan)
    text = compact(summary)
    _write_termination(os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG, text)
    print(text, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
