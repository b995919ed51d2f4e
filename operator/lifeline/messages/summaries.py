"""What a Job's agent tells the operator: the summary in its termination message.

Each Job kind has one (``op`` says which): a backup's result per destination, a prune's report,
a restore's result and measurements, a shred's result per copy. The operator reads them with
:func:`lifeline.messages.termination.read_summary` and nowhere else.

The wire keys are the short ones the agents have always written (``d`` for destination, ``t`` for
type, ...): a termination message holds at most 4 KiB, one entry per destination must fit many
times over, and a Job started by the previous release (its agent image) may finish after this
operator started. The attribute names say what each key means; docs/operator.md has the table.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from .wire import VERSION, Wire


class _Summary(Wire):
    version: Literal[1] = Field(VERSION, alias="v")
    truncated: bool | None = None  # the agent cut lists to fit the message (see termination.render)


class DestinationFailed(Wire):
    """A destination (or a shred's copy) where the work failed, and why."""

    destination: str = Field(alias="d")
    exit_code: int | None = Field(None, alias="rc")  # the agent command's exit code (4: the key was refused)
    error: str = ""


class FingerprintResult(Wire):
    """spec.fingerprint's result: the trimmed output (a count or a checksum), or why there is none."""

    output: str | None = Field(None, alias="out")
    error: str | None = None


class CopyStored(Wire):
    """One destination that took the backup: the copy the RecoveryPoint records."""

    destination: str = Field(alias="d")
    snapshot_id: str = Field(alias="id")
    type: str = Field(alias="t")  # may differ from the requested type: no parent there yet means a full
    parent_id: str | None = Field(None, alias="p")
    repository: str = Field(alias="repo")
    stored_bytes: int = Field(0, alias="stored")
    chunks: tuple[int, int] = (0, 0)  # (total, new)
    manifest_checksum: str = Field(alias="sum")  # the RecoveryPoint records it; restores check it
    start: str = Field(alias="s")
    end: str = Field(alias="e")
    seconds: float | None = Field(None, alias="dur")
    skipped_files: int = Field(0, alias="skipped")  # files that could not be read (the backup is published)


class BackupSummary(_Summary):
    operation: Literal["backup"] = Field("backup", alias="op")
    requested_type: str | None = Field(None, alias="type")
    key_ref: str | None = Field(None, alias="keyRef")
    start: str | None = None  # the earliest start and the latest end over the copies
    end: str | None = None
    size_bytes: int = Field(0, alias="size")  # read from the source
    files: int = 0
    copies: list[CopyStored] = Field([], alias="ok")
    failures: list[DestinationFailed] = Field([], alias="failed")
    error: str | None = None  # why nothing was stored when it was not one destination's fault
    fingerprint: FingerprintResult | None = Field(None, alias="fp")


class PruneReport(_Summary):
    operation: Literal["prune"] = Field("prune", alias="op")
    # point ids forgotten per destination: their first 16 hex digits name a point well enough
    forgotten: dict[str, list[str]] = Field({}, alias="forgot")
    kept: dict[str, int] = {}
    failures: list[DestinationFailed] = Field([], alias="failed")
    error: str | None = None


class Repacked(Wire):
    """One destination's repository repacked: its size before and after (packs + index), what changed."""

    destination: str = Field(alias="d")
    bytes_before: int = Field(0, alias="before")
    bytes_after: int = Field(0, alias="after")
    packs_before: int = Field(0, alias="pb")
    packs_after: int = Field(0, alias="pa")
    packs_rewritten: int = Field(0, alias="rewritten")
    packs_deleted: int = Field(0, alias="deleted")  # no live blob, or no index names them
    bytes_copied: int = Field(0, alias="copied")
    damaged: int = 0  # packs left whole because a live blob failed authentication
    seconds: float | None = Field(None, alias="dur")


class MaintenanceSummary(_Summary):
    """A maintenance Job's result: each destination repacked (``ok``), or why not (``failed``); a destination
    with no repository yet is in neither."""

    operation: Literal["maintenance"] = Field("maintenance", alias="op")
    repacked: list[Repacked] = Field([], alias="ok")
    failures: list[DestinationFailed] = Field([], alias="failed")
    error: str | None = None


class CatalogueSummary(_Summary):
    """A catalogue Job's result: how many points each destination listed (the points themselves are
    lines of the Job's log, :data:`CATALOGUE_LINE`, too many for a termination message)."""

    operation: Literal["catalogue"] = Field("catalogue", alias="op")
    listed: dict[str, int] = {}
    failures: list[DestinationFailed] = Field([], alias="failed")
    error: str | None = None


CATALOGUE_LINE = "lifeline-catalogue-point "  # a log line's prefix, then the point as JSON


class ObjectFailed(Wire):
    """An object an objects restore could not put back, with the API server's words."""

    kind: str = Field(alias="k")
    name: str = Field(alias="n")  # namespace/name, or a cluster-scoped object's name
    error: str = ""


class RestoreSummary(_Summary):
    """A restore's result; durations are the agent's own (monotonic clock), whatever the cluster's clocks say."""

    operation: Literal["restore"] = Field("restore", alias="op")
    ok: bool
    point: str | None = None
    snapshot_id: str | None = Field(None, alias="snapshotId")
    destination: str | None = Field(None, alias="d")
    start: str | None = None
    end: str | None = None
    checksum: str | None = None  # the stored manifest's, checked against the recorded one
    checksum_seconds: float | None = Field(None, alias="checksumSeconds")
    restore_seconds: float | None = Field(None, alias="restoreSeconds")
    bytes_restored: int | None = Field(None, alias="bytes")
    files: int | None = None
    reason: str | None = None  # on failure: one CamelCase word (DamagedData, LoadFailed, WALGap, ...)
    error: str | None = None  # on failure: the sentence
    # point-in-time restores (restore-pitr)
    base_backup: str | None = Field(None, alias="baseBackup")
    recovery_target_time: str | None = Field(None, alias="recoveryTargetTime")
    last_segment: str | None = Field(None, alias="lastSegment")
    # objects restores: objects by outcome, the failed ones (cut to fit), the claims given their data
    objects: dict[str, int] | None = None
    object_failures: list[ObjectFailed] | None = Field(None, alias="failed")
    claims_with_data: list[str] | None = Field(None, alias="claims")

    @property
    def seconds(self) -> float | None:
        """The restore's own time: the manifest check and the restore (None: neither was measured)."""
        if self.restore_seconds is None and self.checksum_seconds is None:
            return None
        return round((self.restore_seconds or 0.0) + (self.checksum_seconds or 0.0), 3)


class CopyShredded(Wire):
    """One copy whose key epoch is destroyed (or was already, by an earlier shred of its epoch)."""

    destination: str = Field(alias="d")
    epoch: str | None = None
    shredded_at: str | None = Field(None, alias="at")
    actor: str | None = None
    points: list[str] = []
    already: bool = False
    error: str | None = None  # already: what the repository said


class ShredSummary(_Summary):
    operation: Literal["shred"] = Field("shred", alias="op")
    point: str | None = None
    shredded: list[CopyShredded] = Field([], alias="ok")
    failures: list[DestinationFailed] = Field([], alias="failed")


Summary = BackupSummary | PruneReport | RestoreSummary | ShredSummary | CatalogueSummary | MaintenanceSummary


# ---- the drill's verify container: plain text, written by /bin/sh in the user's image ------------

_VERIFY_HEAD = re.compile(r"^lifeline-verify rc=(\d+) ns=(\d*)\n?")


class VerifyReport(Wire):
    """The verify command's exit code, time and output (``lifeline-verify rc=N ns=N`` + output).

    Text, not JSON: the user's image only needs ``/bin/sh`` (lifeline.planning.drill_sandbox)."""

    exit_code: int
    seconds: float | None = None
    output: str = ""

    @classmethod
    def parse(cls, message: str | None) -> "VerifyReport | None":
        found = _VERIFY_HEAD.match(message or "")
        if not found:
            return None
        rc, ns = found.groups()
        return cls(exit_code=int(rc), seconds=round(int(ns) / 1e9, 3) if ns else None,
                   output=(message or "")[found.end():].strip())
