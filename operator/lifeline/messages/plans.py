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

from pydantic import Field, ValidationError, field_validator, model_serializer, model_validator

from lifeline.rates import parse_rate

from .wire import VERSION, UnreadableMessage, Wire, check_version, decode_object, describe

PLAN_ENV = "LIFELINE_JOB_PLAN"
# sysexits.h's EX_CONFIG: distinct from 1 (the work failed) and 2 (argparse's usage error)
EXIT_BAD_PLAN = 78


class KeyPlan(Wire):
    ref: str  # the key reference, as the policy names it
    file: str | None = None  # a secret:// key: where its Secret is mounted (the agent copies it 0600)
    cipher: str | None = None  # of a repository the Job creates; None: the agent's default (aes-256-gcm)


class ImmutablePlan(Wire):
    """An immutable repository (docs/immutability.md): what the first ``init`` creates, and the least
    that an existing repository must be for a backup to go there."""

    mode: Literal["compliance", "governance"]
    days: int = Field(ge=1, le=36500)


class BandwidthPlan(Wire):
    """The destination's bandwidth limits, as the policy wrote them (``50MiB``): ``--limit-upload``,
    ``--limit-download`` (docs/storage.md, "Bandwidth")."""

    upload: str | None = None
    download: str | None = None

    @field_validator("upload", "download")
    @classmethod
    def _a_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)  # its ValueError says what is wrong
        return value

    def agent_args(self) -> list[str]:
        """The agent's arguments that set these limits."""
        return [*(["--limit-upload", self.upload] if self.upload else []),
                *(["--limit-download", self.download] if self.download else [])]


class DestinationPlan(Wire):
    """One repository, with how to reach it (:func:`lifeline.messages.destination.destination_env`).

    ``credentialsEnv``: the prefix of the variables its credentials are in (S3: ``<prefix>ACCESS_KEY_ID``
    and ``<prefix>SECRET_ACCESS_KEY``; Azure: ``<prefix>ACCOUNT_KEY``, ``<prefix>SAS_TOKEN``, ...);
    ``credentialsFile``: a Google service account's key file, mounted from its Secret; ``account``: an
    Azure storage account; ``endpoint``: the store's URL (S3, Azure or GCS, by the repository's scheme);
    ``immutable``: the repository is (or is made) immutable; ``bandwidth``: its transfers' limits."""

    name: str
    repository: str
    off_site: bool = Field(False, alias="offSite")
    endpoint: str | None = None
    region: str | None = None
    credentials_env: str | None = Field(None, alias="credentialsEnv")
    credentials_file: str | None = Field(None, alias="credentialsFile")
    account: str | None = None
    immutable: ImmutablePlan | None = None
    bandwidth: BandwidthPlan | None = None

    @property
    def scheme(self) -> str:
        """``s3``, ``azure``, ``gs`` or ``file``: what kind of store the repository is in."""
        head, sep, _ = self.repository.partition("://")
        return {"s3a": "s3"}.get(head, head) if sep else "file"


class StreamPlan(Wire):
    """A source that is a byte stream: it arrives through the FIFO at the source's ``path``."""

    exit_code: str = Field(alias="exitCode")  # the file the producing command's exit status appears in
    name: str  # the stream's name in the point (``pg_dump.out``)


class ResourcePlan(Wire):
    """One kind a resources backup reads, at the version discovery preferred."""

    api_version: str = Field(alias="apiVersion")
    plural: str
    kind: str
    owned: Literal[True] | None = None  # pods, replicasets, jobs: skip those a controller owns


class ResourcesPlan(Wire):
    """A resources source: which objects of the namespace to write out before the tree is backed up."""

    namespace: str
    resources: list[ResourcePlan] = Field(min_length=1)
    selector: str | None = None  # the labelSelector query
    status: Literal[True] | None = None  # keep each object's status
    # the CRDs, StorageClasses and PersistentVolumes the namespace's objects depend on (the admin allowed it)
    cluster_dependencies: Literal[True] | None = Field(None, alias="clusterDependencies")


class SourcePlan(Wire):
    """What a backup reads: a directory at ``path``, or with ``stream`` the FIFO a dump writes into.

    ``kind`` is the API's word for the source (``spec.source.<kind>``), recorded and logged as such;
    what the agent does follows from the shape: ``stream`` set, a stream; ``baseBackup``, the copy
    pg_basebackup left at ``path``, stored tagged as a base backup; ``resources``, the namespace's
    objects written out under ``path`` first; then ``path`` is backed up as a directory tree."""

    kind: Literal["pvc", "volumeSnapshot", "command", "continuous", "resources"]
    path: str
    name: str  # the source name recorded in the point (``<namespace>/<policy>``)
    stream: StreamPlan | None = None
    base_backup: Literal[True] | None = Field(None, alias="baseBackup")  # written only when set
    resources: ResourcesPlan | None = None


class FingerprintPlan(Wire):
    output: str  # the file the fingerprint command's output is in
    exit_code: str = Field(alias="exitCode")  # the file its status appears in


class RetentionPlan(Wire):
    """Which points prune keeps (restic's rules; the agent's ``prune --keep-*`` take the same)."""

    last: int = Field(0, ge=0)
    daily: int = Field(0, ge=0)
    weekly: int = Field(0, ge=0)
    monthly: int = Field(0, ge=0)
    yearly: int = Field(0, ge=0)

    def empty(self) -> bool:
        return not (self.last or self.daily or self.weekly or self.monthly or self.yearly)


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


class MaintenancePlan(_Plan):
    """Repack every destination's repository (``lifeline agent repack``, docs/maintenance.md)."""

    operation: Literal["maintenance"] = "maintenance"
    max_unused: int = Field(10, alias="maxUnused", ge=0, le=100)  # percent of a pack's bytes: --max-unused
    lock_wait: int = Field(1800, alias="lockWait", ge=0)  # seconds to wait for the exclusive lock (a prune, a backup)


class RestoreTargetPlan(Wire):
    """Where a restore writes, in the Restore's words: a directory on a ``pvc``, the FIFO a
    ``command`` (the ``load`` container) reads, or an API server for ``objects`` (the tree is
    restored into ``path``, a memory-backed scratch directory, and put back from there)."""

    kind: Literal["pvc", "command", "objects"]
    path: str
    overwrite: bool = False  # pvc: restore over what is there; written only when true
    exit_code: str | None = Field(None, alias="exitCode")  # command: the file the load's status appears in
    errors: str | None = None  # command: the load command's stderr, for the failure's reason
    # objects: the point's namespace -> the target's; skip|update; the kubeconfig file of another cluster
    # (in-cluster credentials without it); the Jobs that give restored claims their data
    namespace_map: dict[str, str] | None = Field(None, alias="namespaceMap")
    existing: Literal["skip", "update"] | None = None
    kubeconfig: str | None = None
    data_jobs: list[dict] | None = Field(None, alias="dataJobs")
    # objects into a drill's sandbox: the kinds not put back there (``Kind`` or ``Kind.group``), and
    # ``sandbox``: Services only inside the cluster, CronJobs suspended (lifeline.agent.objects_sandbox)
    leave_out: list[str] | None = Field(None, alias="leaveOut")
    sandbox: Literal[True] | None = None

    @model_validator(mode="after")
    def _a_command_has_its_status_file(self):
        if self.kind == "command" and not self.exit_code:
            raise ValueError("a command target needs exitCode (the file the load's exit status appears in)")
        if self.kind == "objects" and (self.namespace_map is None or self.existing is None):
            raise ValueError("an objects target needs namespaceMap and existing")
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


class CataloguePlan(_Plan):
    """List the points a policy's destinations hold (each authenticated with the key), for adoption."""

    operation: Literal["catalogue"] = "catalogue"
    tag: str  # the points' policy tag: policy=<namespace>/<name>


JobPlan = BackupPlan | PrunePlan | RestorePlan | ShredPlan | CataloguePlan | MaintenancePlan
P = TypeVar("P", BackupPlan, PrunePlan, RestorePlan, ShredPlan, CataloguePlan, MaintenancePlan)


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
