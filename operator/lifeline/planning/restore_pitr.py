"""The point-in-time restore container: ``lifeline agent restore-pitr`` inside a restore Job. Pure.

Who chooses what (explicitly): the *agent* chooses the base backup. The Job passes only the
target time (RFC 3339 or ``latest``), the repository of the chosen copy and the key;
``restore-pitr`` lists the base backups in that repository, restores the newest one that
finished before the target into the target directory, and (``--prefetch-wal``, the default
here) fetches and authenticates every WAL segment recovery needs into
``<directory>/lifeline-wal/``, checking for holes as it goes, then writes the recovery settings
(``restore_command = 'cp lifeline-wal/%f %p'``, ``recovery_target_time``, ``recovery.signal``).
The restored claim is then self-contained: the database pod that starts on it replays with no
agent, no key and no network. The RecoveryPoint a Restore names only says which policy
(destinations, key) and which copy to read. Replay itself happens when PostgreSQL starts on the
directory (the workload, or a drill's verify pod), not in this Job: the agent image has no
PostgreSQL. ``prefetch=False`` keeps the older shape (``restore_command`` calling ``lifeline
agent wal-fetch`` with the key), for a database pod that has the agent and the key.

The container runs :mod:`lifeline.agent.pitr_task`: ``restore-pitr --json`` (a key mounted from a
Secret is passed as ``--key-file``, which the agent copies to a private 0600 file itself), and its
outcome becomes the restore summary (:class:`~lifeline.messages.RestoreSummary`) in the
termination message the Restore controller reads. Exit 3 (a hole in the WAL before the target) is
a failed restore with reason ``WALGap``: the directory then recovers only to the last good
segment, and the message names the missing range.
"""
from __future__ import annotations

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.messages import PLAN_ENV, RestorePlan

from . import backup
from .backup import PlanError

FETCH_PREFIX = "lifeline agent"  # without prefetch: how the restored database's restore_command calls the agent
PREFETCH = "--prefetch-wal"
COMMAND = ("python", "-m", "lifeline.agent.pitr_task")


def require_continuous(spec: BackupPolicySpec, policy: str) -> None:
    """A target time means WAL replay: only a continuous PostgreSQL source has WAL to replay."""
    src = spec.source.continuous
    if src is None or src.postgres is None:
        raise PlanError("Ready", "NotContinuous",
                        f"targetTime needs a policy with a continuous PostgreSQL source, and BackupPolicy {policy} "
                        "has none: restore one of its recovery points without targetTime, or name a point of a "
                        "continuous policy")


def command() -> list[str]:
    return list(COMMAND)


def args(plan: RestorePlan, target_time: str, *, no_archive: bool = False, prefetch: bool = True) -> list[str]:
    """restore-pitr's arguments: target, repository, key, then the directory."""
    key = plan.key
    out = ["--target-time", target_time, "--repo", plan.destinations[0].repository]
    out += ["--key-file", key.file] if key.file else ["--key", key.ref]
    # only this policy's base backups (the base-backup Job names its source namespace/policy)
    out += ["--source", f"{plan.namespace}/{plan.policy}"]
    out += [PREFETCH] if prefetch else ["--fetch-command", FETCH_PREFIX]
    if no_archive:
        out.append("--no-archive")
    return out + [plan.target.path]


def env(base: list[dict], spec: BackupPolicySpec, copy: dict) -> list[dict]:
    """The restore container's environment for restore-pitr: no task plan, and the copy's S3
    settings under index 0 (restore-pitr is given exactly one repository)."""
    index = next(i for i, d in enumerate(spec.destinations) if d.name == copy["destination"])
    old, new = backup.s3_env_prefix(index), backup.s3_env_prefix(0)
    out = []
    for e in base:
        if e["name"] == PLAN_ENV:
            continue
        out.append({**e, "name": new + e["name"][len(old):]} if e["name"].startswith(old) else e)
    s3 = spec.destinations[index].s3
    if s3 is not None:
        out.append({"name": new + "REGION", "value": s3.region})
        if s3.endpoint:
            out.append({"name": new + "ENDPOINT", "value": s3.endpoint})
    return out
