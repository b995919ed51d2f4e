"""What the operator writes on a finished backup, prune, maintenance or snapshot-trigger Job: its record. Pure.

Once a Job is recorded (:mod:`lifeline.controllers.backup_runs`, or a snapshot pipeline), its
outcome goes into the annotation ``dr.lifeline.io/result`` so that the policy's status can be
planned from the Jobs alone, after an operator restart too. Not a message of the agent's: the
operator's own note to itself, kept next to the agent's summary it was made from. Its keys stay the
short ones already written on Jobs in clusters (``o``, ``rp``, ...); the attribute names say what
they mean, and :meth:`JobRecord.of` is the one place they are read.
"""
from __future__ import annotations

import json

from pydantic import Field, ValidationError

from lifeline.messages.wire import Wire


class JobRecord(Wire):
    outcome: str | None = Field(None, alias="o")  # Succeeded | Failed (always written)
    operation: str | None = Field(None, alias="op")  # backup | prune | trigger | maintenance
    report: str = Field("", alias="msg")  # how the Job's containers ended
    start: str | None = None
    end: str | None = None
    type: str | None = None  # the backup's type as stored (a full where a destination had no parent yet)
    stored_at: list[str] = Field([], alias="ok")  # destinations that took the backup
    failures: dict[str, str] = Field({}, alias="failed")  # destination -> why it failed there
    exit_codes: dict[str, int | None] = Field({}, alias="rc")  # destination -> the agent's exit code (4: key refused)
    error: str | None = None  # why the Job failed when it was not one destination's fault
    recovery_point: str | None = Field(None, alias="rp")
    reason: str | None = None  # a snapshot pipeline's failure reason (SnapshotFailed, PreHookFailed, ...)
    mover: str | None = None  # a snapshot trigger: its data-mover Job
    moved: dict | None = None  # a snapshot trigger: the mover's Job fact, kept once the mover is deleted
    # maintenance: destination -> [bytes before, bytes after, packs rewritten, packs deleted]
    repacked: dict[str, list[int]] | None = Field(None, alias="repack")

    @classmethod
    def of(cls, job: dict | None) -> "JobRecord | None":
        """The record of a Job fact (:func:`lifeline.planning.backup_points.job_fact`); None if not recorded."""
        value = (job or {}).get("result")
        if not value:
            return None
        try:
            return value if isinstance(value, cls) else cls.model_validate(value)
        except ValidationError:
            return None  # written by hand, or damaged: the Job counts as not recorded with a result

    def to_annotation(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"), sort_keys=True)
