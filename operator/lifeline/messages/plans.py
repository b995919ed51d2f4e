"""Job plans: the task the operator hands a Job's agent in ``LIFELINE_JOB_PLAN``.

The operator renders one plan per Job (:mod:`lifeline.planning.backup`,
:mod:`~lifeline.planning.restore_job`, :mod:`~lifeline.planning.recoverypoint_shred`); the agent
reads it with :func:`read_plan`, which refuses a plan that is not the kind it runs, not version 1
or not complete, and the agent then exits :data:`EXIT_BAD_PLAN` before it touches anything. A plan
never holds a secret: credentials reach the pod as ``secretKeyRef`` variables the plan names
(``credentialsEnv``), a key file as a mounted Secret (``key.file``).

The keys are the camelCase words of the API (``snapshotId``, ``offSite``) and appear in the
rendered Jobs (and their golden files) exactly as before these models.
"""
from __future__ import annotations

import json
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, model_serializer, model_validator

from .wire import VERSION, UnreadableMessage, Wire, check_version, decode_object, describe

PLAN_ENV = "LIFELINE_JOB_PLAN"
# sysexits.h's EX_CONFIG: distinct from 1 (the work failed) and 2 (argparse's usage error)
EXIT_BAD_PLAN = 78


class KeyPlan(Wire):
    ref: str  # the key reference, as the policy names it
    file: str | None = None  # a secret:// key: where its Secret is mounted (the agent copies it 0600)
    cipher: str | None = None  # of a repository the Job creates; None: the agent's default (aes-256-gcm)


class DestinationPlan(Wire):
    """One repository, with how to reach it; S3 credentials are in ``<credentialsEnv>ACCESS_KEY_ID``..."""

    name: str
    repository: str
    off_site: bool = Field(False, alias="offSite")
    endpoint: str | None = None
    region: str | None = None
    credentials_env: str | None = Field(None, alias="credentialsEnv")


class SourcePlan(Wire):
    """What a backup reads: a directory, the dump's FIFO, or the copy pg_basebackup left."""

    kind: Literal["dir", "fifo", "pg-basebackup"]
    path: str
    name: str  # the source name recorded in the point (``<namespace>/<policy>``)
    exit_code: str | None = Field(None, alias="exitCode")  # fifo: the file the dump's status appears in
    stream_name: str | None = Field(None, alias="streamName")  # fifo: the stream's name in the point

    @model_validator(mode="after")
    def _a_fifo_has_its_status_file(self):
        if self.kind == "fifo" and not self.exit_code:
            raise ValueError("a fifo source needs exitCode (the file the dump's exit status appears in)")
        return self


class FingerprintPlan(Wire):
    output: str  # the file the fingerprint command's output is in
    exit_code: str = Field(alias="exitCode")  # the file its status appears in


class RetentionPlan(Wire):
    last: int = Field(0, ge=0)
    daily: int = Field(0, ge=0)
    weekly: int = Field(0, ge=0)
    monthly: int = Field(0, ge=0)
    yearly: int = Field(0, ge=0)


class _Plan(Wire):
    version: Literal[1] = Field(VERSION, alias="v")
    namespace: str
    policy: str
    destinations: list[DestinationPlan] = Field(min_length=1)
    key: KeyPlan

    def to_json(self) -> str:
        """The value of ``LIFELINE_JOB_PLAN``: compact, keys sorted (the rendered Job is stable)."""
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))

    def to_env(self) -> dict:
        return {"name": PLAN_ENV, "value": self.to_json()}


class BackupPlan(_Plan):
    operation: Literal["backup"] = "backup"
    type: Literal["full", "incremental", "differential"] = "incremental"
    source: SourcePlan
    tags: list[str] = []
    fingerprint: FingerprintPlan | None = None  # spec.fingerprint: where its container leaves the result


class PrunePlan(_Plan):
    operation: Literal["prune"] = "prune"
    retention: RetentionPlan


class RestoreTargetPlan(Wire):
    """Where a restore writes: a directory, or the FIFO a ``load`` container reads."""

    kind: Literal["dir", "fifo"]
    path: str
    overwrite: bool = False  # dir: restore over what is there; written only when true
    exit_code: str | None = Field(None, alias="exitCode")  # fifo: the file the load's status appears in
    errors: str | None = None  # fifo: the load command's stderr, for the failure's reason

    @model_validator(mode="after")
    def _a_fifo_has_its_status_file(self):
        if self.kind == "fifo" and not self.exit_code:
            raise ValueError("a fifo target needs exitCode (the file the load's exit status appears in)")
        return self

    @model_serializer(mode="wrap")
    def _overwrite_only_when_asked(self, handler):
        data = handler(self)
        if not data.get("overwrite"):
            data.pop("overwrite", None)
        return data


class RestorePlan(_Plan):
    operation: Literal["restore"] = "restore"
    point: str | None = None  # the RecoveryPoint's name (for logs and the summary)
    snapshot_id: str = Field(alias="snapshotId")
    manifest_checksum: str | None = Field(None, alias="manifestChecksum")  # recorded at backup time
    destinations: list[DestinationPlan] = Field(min_length=1, max_length=1)  # the copy that is read
    target: RestoreTargetPlan


class ShredCopyPlan(Wire):
    destination: str
    snapshot_id: str = Field(alias="snapshotId")


class ShredPlan(_Plan):
    operation: Literal["shred"] = "shred"
    recovery_point: str = Field(alias="recoveryPoint")
    copies: list[ShredCopyPlan]
    actor: str  # who shreds, for the tombstone
    reason: str
    lock_wait: int = Field(120, alias="lockWait")  # seconds to wait for a repository lock


JobPlan = BackupPlan | PrunePlan | RestorePlan | ShredPlan
P = TypeVar("P", BackupPlan, PrunePlan, RestorePlan, ShredPlan)


def read_plan(text: str | None, kind: type[P]) -> P:
    """The plan of ``kind`` in ``text``; UnreadableMessage (saying why) for anything else."""
    what = "the job plan"
    if not text or not text.strip():
        raise UnreadableMessage(f"no job plan: {PLAN_ENV} is empty (the operator renders it)")
    data = decode_object(text, what)
    check_version(data, what)
    expected = kind.model_fields["operation"].default
    if data.get("operation") != expected:
        raise UnreadableMessage(f"{what} is for {data.get('operation')!r}, and this command runs {expected!r}")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise UnreadableMessage(f"{what} is not valid: {describe(exc)}") from None
