"""BackupPolicy: what to protect, when, where to, for how long, with which key."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import available_timezones
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from lifeline.rates import PATTERN as RATE_PATTERN, parse_rate

from .common import (Cron, DNSLabel, DNSName, Duration, KeyRef, Model, Objectives, OneOf, SecretKeyRef, StatusBase,
                     Tier, TierObjectives, one_of_rule)

# ---- source: exactly one kind ------------------------------------------------

SOURCE_KINDS = ("pvc", "volume_snapshot", "command", "continuous", "resources")


class PVCSource(Model):
    """The files of a PersistentVolumeClaim, mounted read-only into the backup Job."""

    claim_name: DNSName = Field(description="PVC in the policy's namespace.")
    path: str = Field("/", description="Directory inside the volume to back up.")


class VolumeSnapshotSource(Model):
    """A CSI VolumeSnapshot of a PVC, moved off the cluster's storage by a data-mover Job."""

    claim_name: DNSName = Field(description="PVC to snapshot.")
    volume_snapshot_class_name: DNSName | None = Field(None, description="VolumeSnapshotClass; the default class when left out.")
    path: str = Field("/", description="Directory inside the snapshot to back up.")
    keep_snapshots: int = Field(
        0, ge=0, le=50,
        description="VolumeSnapshots kept in the cluster after their data left it (fast local restores); "
                    "0 deletes each one as soon as its data-mover Job succeeded.")
    ready_timeout: Duration = Field(
        "10m", description="How long a VolumeSnapshot may take to become readyToUse before the backup fails.")


class EnvVar(Model):
    """An environment variable given literally or from a Secret key."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str | None = None
    value_from_secret: SecretKeyRef | None = Field(None, description="Take the value from a Secret key.")


class CommandSource(Model):
    """The byte stream a dump command writes to stdout, such as ``pg_dump -Fc``."""

    image: str = Field(min_length=1, description="Image that holds the dump tool; it needs no Python.")
    command: list[str] = Field(min_length=1, description="The dump command and its arguments.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment for the dump command.")


class Fingerprint(Model):
    """A command whose short output (a count or a checksum, never data) is recorded with each point.

    It runs in the backup Job next to the agent (for a dump source with the dump's environment, so
    against the same database); its trimmed output becomes the RecoveryPoint's ``verifyOutput`` tag,
    which a RestoreDrill with ``verify.command.compareToBackup`` compares with the restored copy's."""

    image: str = Field(min_length=1, description="Image that holds the command (for example postgres:16); "
                                                 "it needs only /bin/sh.")
    command: list[str] = Field(min_length=1, description="Prints a count or checksum, for example "
                               "psql -tAc 'select count(*) from patients'; at most 256 characters are kept.")
    env: list[EnvVar] = Field(default_factory=list, description="Environment, added to the dump command's.")


class PostgresBaseBackup(Model):
    """Base backups of a PostgreSQL server: pg_basebackup in its own image, as a replication user."""

    image: str = Field("postgres:16", min_length=1,
                       description="Image with pg_basebackup, of the server's major version (it needs no Python).")
    env: list[EnvVar] = Field(default_factory=list,
                              description="libpq settings for pg_basebackup: PGHOST, PGPORT, PGUSER, and PGPASSWORD "
                                          "from a Secret.")
    args: list[str] = Field(default_factory=list, description="More pg_basebackup arguments.")


class ContinuousSource(Model):
    """A directory of closed, append-only log segments (for example PostgreSQL WAL)."""

    claim_name: DNSName = Field(description="PVC the workload writes its segments to.")
    path: str = Field("/", description="Directory of segments inside the volume.")
    segment_pattern: str = Field("*", description="Glob of a closed segment's file name.")
    postgres: PostgresBaseBackup | None = Field(
        None, description="PostgreSQL: the full schedule takes a base backup with pg_basebackup (the starting point "
                          "of point-in-time restore); without it, the full schedule copies the segment directory.")


class SelectorRequirement(Model):
    """One ``matchExpressions`` term of a label selector."""

    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, max_length=64)


class LabelSelector(Model):
    """A Kubernetes label selector: every term must hold."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[SelectorRequirement] = Field(default_factory=list, max_length=16)

    def as_query(self) -> str:
        """The selector as the API's ``labelSelector`` query parameter."""
        terms = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for e in self.match_expressions:
            if e.operator in ("In", "NotIn"):
                terms.append(f"{e.key} {e.operator.lower()} ({','.join(e.values)})")
            else:
                terms.append(e.key if e.operator == "Exists" else f"!{e.key}")
        return ",".join(terms)


# A kind as kubectl names it: a resource (deployments), a Kind (Deployment), either with its group.
KindName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")]


class ResourcesSource(Model):
    """The Kubernetes objects of the policy's own namespace, each stored as one document."""

    selector: LabelSelector | None = Field(None, description="Only objects with these labels; all when left out.")
    include_kinds: list[KindName] = Field(
        default_factory=list, max_length=64,
        description="Only these kinds, as kubectl names them (deployments, deployments.apps, Deployment, "
                    "widgets.example.com); every kind the namespace can list when empty.")
    exclude_kinds: list[KindName] = Field(
        default_factory=list, max_length=64,
        description="Kinds left out besides those the cluster rebuilds itself (Events, Endpoints, EndpointSlices, "
                    "Leases, ControllerRevisions, Pods and ReplicaSets a controller owns) and Lifeline's "
                    "RecoveryPoints and Restores.")
    include_status: bool = Field(False, description="Keep each object's status (it is dropped by default: "
                                                    "the cluster writes it again).")
    cluster_dependencies: bool = Field(
        False, description="Also the cluster-scoped objects the namespace's objects depend on: the "
                           "CustomResourceDefinitions of its custom kinds, the StorageClasses and PersistentVolumes "
                           "of its claims. Only where the admin allowed it, by binding the ClusterRole "
                           "lifeline-objects-cluster-reader to this policy's reader (<policy>-objects).")

    @model_validator(mode="after")
    def _not_both(self):
        both = {k.lower() for k in self.include_kinds} & {k.lower() for k in self.exclude_kinds}
        if both:
            raise ValueError(f"includeKinds and excludeKinds both name {', '.join(sorted(both))}")
        return self


class Source(OneOf):
    """Exactly one of the source kinds."""

    one_of, choice = SOURCE_KINDS, "source"

    pvc: PVCSource | None = None
    volume_snapshot: VolumeSnapshotSource | None = None
    command: CommandSource | None = None
    continuous: ContinuousSource | None = None
    resources: ResourcesSource | None = Field(
        None, description="The namespace's Kubernetes objects (Deployments, Services, ConfigMaps, Secrets, PVC "
                          "definitions, custom resources): docs/kubernetes-objects.md.")


# ---- schedules ---------------------------------------------------------------


class Schedule(Model):
    """Cron schedules per backup type; a full schedule is required."""

    full: Cron = Field(description="When to take a full backup.")
    incremental: Cron | None = Field(None, description="When to back up what changed since the latest point.")
    differential: Cron | None = Field(None, description="When to back up what changed since the latest full.")
    time_zone: str | None = Field(None, max_length=64,
                                  description="IANA time zone for the schedules; the controller's when left out.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in available_timezones():
            raise ValueError(f"'{value}' is not an IANA time zone (for example Asia/Shanghai or Europe/Berlin)")
        return value


# ---- destinations -------------------------------------------------------------

DESTINATION_KINDS = ("s3", "filesystem", "azure", "gcs")
OBJECT_STORE_KINDS = ("s3", "azure", "gcs")  # reachable from any namespace (a drill's sandbox) with their Secret
# A bound the API server needs to cost the CEL rule on each item (and more copies than this is a typo).
MAX_DESTINATIONS = 8


class S3Destination(Model):
    """An S3-compatible bucket."""

    bucket: str = Field(min_length=3, max_length=63, description="Bucket name.")
    prefix: str = Field("", description="Key prefix inside the bucket.")
    endpoint: str | None = Field(None, description="Endpoint URL for non-AWS stores (MinIO, Ceph RGW).")
    region: str = Field("us-east-1")
    credentials_secret: DNSName = Field(
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the policy's namespace."
    )


class FilesystemDestination(Model):
    """A directory on a PVC (for example an NFS share)."""

    claim_name: DNSName = Field(description="PVC that holds the repository.")
    path: str = Field("/", description="Directory of the repository inside the volume.")


class AzureDestination(Model):
    """An Azure Blob Storage container (``azure://<container>/<prefix>``)."""

    container: str = Field(
        min_length=3, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
        description="Container name: 3 to 63 lowercase letters, digits and '-'. It must exist: Lifeline never "
                    "creates one.")
    prefix: str = Field("", description="Blob name prefix inside the container.")
    account_name: str | None = Field(
        None, min_length=3, max_length=24, pattern=r"^[a-z0-9]+$",
        description="Storage account; the credentials Secret's AZURE_STORAGE_ACCOUNT_NAME when left out.")
    endpoint: str | None = Field(
        None, description="Blob endpoint URL (Azure Stack, a private endpoint, Azurite); "
                          "https://<account>.blob.core.windows.net when left out.")
    credentials_secret: DNSName = Field(
        description="Secret in the policy's namespace with AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_SAS_TOKEN, or "
                    "a service principal's AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID (and "
                    "AZURE_STORAGE_ACCOUNT_NAME when accountName is left out); the Jobs get them as environment "
                    "variables.")


class GCSDestination(Model):
    """A Google Cloud Storage bucket (``gs://<bucket>/<prefix>``)."""

    bucket: str = Field(
        min_length=3, max_length=222, pattern=r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$",
        description="Bucket name: lowercase letters, digits, '-', '_' and '.'. It must exist: Lifeline never "
                    "creates one.")
    prefix: str = Field("", description="Object name prefix inside the bucket.")
    endpoint: str | None = Field(
        None, description="Endpoint URL (a private endpoint); https://storage.googleapis.com when left out, or "
                          "the key file's gcs_base_url.")
    credentials_secret: DNSName = Field(
        description="Secret in the policy's namespace holding a service account's JSON key (under credentialsKey). "
                    "The Jobs mount it as a file and point GOOGLE_APPLICATION_CREDENTIALS at it; the key never "
                    "goes into an environment variable.")
    credentials_key: str = Field("key.json", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                                 description="Key of the JSON key file in that Secret.")


class Immutability(Model):
    """An immutable repository: every object written once and locked by the storage for ``days``
    (S3 Object Lock), so that whoever holds the credentials cannot delete or change a backup
    (docs/immutability.md)."""

    mode: Literal["Compliance", "Governance"] = Field(
        "Compliance", description="Compliance: nobody, the bucket's owner included, can shorten or remove a lock. "
                                  "Governance: whoever may bypass governance retention can (for a trial only).")
    days: int = Field(ge=1, le=36500, description="How long each object stays locked; prune keeps extending the "
                                                  "locks of what kept points need. After an attack there are at "
                                                  "least this many days, less the time since the last prune, to "
                                                  "restore.")


class Bandwidth(Model):
    """Bandwidth limits of every Job's agent at this destination, in bytes per second, averaged
    (docs/storage.md, "Bandwidth")."""

    upload: str | None = Field(None, max_length=32, pattern=RATE_PATTERN, description="At most this many bytes per second to the "
                                                                       "destination: 50MiB, 800KiB, 12MB.")
    download: str | None = Field(None, max_length=32, pattern=RATE_PATTERN, description="At most this many bytes per second from "
                                                                         "it (restores, prune, maintenance).")

    @field_validator("upload", "download")
    @classmethod
    def _a_rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)  # the pattern's form, and at least 1KiB per second
        return value


IMMUTABLE_KINDS = ("s3",)
# Why another kind cannot be immutable (yet): what the policy's validation says.
NOT_IMMUTABLE = {
    "filesystem": "a directory on a PVC has no lock that whoever can write the volume cannot lift",
    "azure": "lifeline locks objects through S3 Object Lock only so far; Azure's immutable storage is not wired "
             "in yet (docs/immutability.md, 'Azure and Google Cloud Storage')",
    "gcs": "lifeline locks objects through S3 Object Lock only so far; Google Cloud Storage's object retention is "
           "not wired in yet (docs/immutability.md, 'Azure and Google Cloud Storage')",
}


def _destination_schema(schema: dict, cls) -> None:
    schema.setdefault("x-kubernetes-validations", []).extend([
        one_of_rule(cls.one_of, cls.choice),
        {"rule": "!has(self.immutable) || has(self.s3)",
         "message": "immutable needs an s3 destination on a bucket with S3 Object Lock (docs/immutability.md)"}])


class Destination(OneOf):
    """One repository a backup goes to; every destination receives every backup."""

    one_of, choice = DESTINATION_KINDS, "destination kind"
    model_config = ConfigDict(json_schema_extra=_destination_schema)

    name: DNSLabel = Field(description="Short name used in status, metrics and RecoveryPoints.")
    off_site: bool = Field(False, description="True when this copy lives outside the protected site.")
    s3: S3Destination | None = None
    filesystem: FilesystemDestination | None = None
    azure: AzureDestination | None = Field(None, description="Azure Blob Storage: docs/storage.md.")
    gcs: GCSDestination | None = Field(None, description="Google Cloud Storage: docs/storage.md.")
    immutable: Immutability | None = Field(
        None, description="Make the repository immutable (s3 only, on a bucket with S3 Object Lock): the first "
                          "backup creates it so, and a backup to an existing repository that is mutable, locks for "
                          "fewer days or in governance mode where compliance is asked fails (docs/immutability.md).")
    bandwidth: Bandwidth | None = Field(None, description="Bandwidth limits of the Jobs' transfers to and from this "
                                                          "destination (docs/storage.md).")

    @model_validator(mode="after")
    def _immutable_on_s3_only(self):
        if self.immutable is not None:
            kind = next((k for k in DESTINATION_KINDS if getattr(self, k) is not None), None)
            if kind is not None and kind not in IMMUTABLE_KINDS:
                raise ValueError(f"destination {self.name}: immutable needs an s3 destination (a bucket with S3 "
                                 f"Object Lock); {kind}: {NOT_IMMUTABLE[kind]}")
        return self

    @property
    def credentials_secret(self) -> str | None:
        """The Secret an object store's credentials are in (None for a filesystem destination)."""
        store = self.s3 or self.azure or self.gcs
        return store.credentials_secret if store is not None else None


# ---- retention, keys, hooks, pods -------------------------------------------


MAX_KEEP = 100_000  # points per rule: a century of hourly points is fewer


class Retention(Model):
    """Which recovery points prune keeps; a point kept by any rule stays."""

    keep_last: int = Field(7, ge=0, le=MAX_KEEP, description="Newest points to keep.")
    keep_daily: int = Field(14, ge=0, le=MAX_KEEP, description="Days for which the newest point is kept.")
    keep_weekly: int = Field(8, ge=0, le=MAX_KEEP, description="Weeks for which the newest point is kept.")
    keep_monthly: int = Field(12, ge=0, le=MAX_KEEP, description="Months for which the newest point is kept.")
    keep_yearly: int = Field(6, ge=0, le=MAX_KEEP, description="Years for which the newest point is kept (hospital records: six).")


KEY_SCHEMES = ("vault-transit", "vault-kv", "secret")


class CABundle(OneOf):
    """A CA bundle (PEM) in a ConfigMap or a Secret of the policy's namespace."""

    one_of, choice = ("config_map", "secret"), "CA bundle source"

    config_map: DNSName | None = Field(None, description="ConfigMap that holds the bundle.")
    secret: DNSName | None = Field(None, description="Secret that holds the bundle.")
    key: str = Field("ca.crt", pattern=r"^[-._a-zA-Z0-9]+$", description="Key of the bundle in it.")


class Encryption(Model):
    """Which key protects the data keys of this policy's points."""

    key_ref: KeyRef = Field(
        pattern=r"^(vault-transit|vault-kv|secret)://[^\s]+$",
        description="Key reference, for example vault-transit://lifeline-his?mount=transit or secret://name/key.",
    )
    ca_bundle: CABundle | None = Field(
        None, description="CA bundle the backup Jobs trust for Vault's TLS (mounted, and named by VAULT_CACERT).")
    cipher: Literal["aes-256-gcm", "sm4-gcm"] = Field(
        "aes-256-gcm", description="Cipher of the repositories this policy creates: AES-256-GCM, or SM4-GCM "
                                   "(GB/T 32907). A repository keeps the cipher it was created with.")


class Hook(Model):
    """A command run in a workload container before or after a backup."""

    name: DNSLabel
    pod_selector: dict[str, str] = Field(description="Labels of the pod to run the command in.")
    container: str | None = Field(None, description="Container; the pod's first when left out.")
    command: list[str] = Field(min_length=1)
    timeout: Duration = Field("1m")
    on_error: Literal["Fail", "Continue"] = Field("Fail", description="Whether a failing hook fails the backup.")


class Hooks(Model):
    pre: list[Hook] = Field(default_factory=list, description="Run before the data is read (quiesce).")
    post: list[Hook] = Field(default_factory=list, description="Run after the data is read (resume).")


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(Model):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class PodOptions(Model):
    """Placement and sizing passed through to the backup Jobs' pods."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None
    resources: Resources | None = None
    service_account_name: DNSName | None = None
    run_as_user: int | None = Field(
        None, ge=1, description="User id the backup containers run as (the owner of the source's files); 65532 when left out."
    )
    run_as_group: int | None = Field(None, ge=0, description="Group id the backup containers run as; 65532 when left out.")
    active_deadline: Duration | None = Field(
        None, description="Longest a backup Job may run; its schedule's interval (10m to 24h) when left out."
    )
    backoff_limit: int | None = Field(None, ge=0, le=10, description="Retries of a failed backup pod; 1 when left out.")


class Maintenance(Model):
    """Repacking the policy's repositories (``lifeline agent repack``, docs/maintenance.md): a CronJob of its own."""

    schedule: Cron | None = Field(
        None, description="When to repack every destination; weekly on Sunday between 06:00 and 07:59 (after the "
                          "daily prune) at a minute spread by the policy's name when left out.")
    max_unused: int = Field(
        10, ge=0, le=100,
        description="Rewrite a pack when more than this percent of its bytes is no longer used by any point "
                    "(repack --max-unused): 0 rewrites every pack with any unused byte, 100 only deletes packs "
                    "nothing uses.")


# ---- the kind ------------------------------------------------------------------


class BackupObjectives(Objectives):
    """The tier's RPO and RTO overridden, and what else the policy must hold to be well protected."""

    require_immutable_off_site: bool = Field(
        False, description="An off-site copy counts only on an immutable destination: the OffSiteCopy condition is "
                           "False unless the newest point has a copy on an offSite destination with immutable set "
                           "(ransomware with the backup credentials cannot delete it).")


class BackupPolicySpec(Model, TierObjectives):
    """What to protect, when, where to, how long, with which key."""

    tier: Tier = Field(description="Recovery tier: A life-critical, B diagnosis and treatment, C management.")
    objectives: BackupObjectives = Field(default_factory=BackupObjectives,
                                         description="Overrides of the tier's RPO and RTO, and whether only an immutable "
                                                     "off-site copy counts.")
    source: Source
    schedule: Schedule
    destinations: list[Destination] = Field(min_length=1, max_length=MAX_DESTINATIONS,
                                           description="Repositories; at least one, ideally one off-site.")
    retention: Retention = Field(default_factory=Retention)
    encryption: Encryption
    hooks: Hooks = Field(default_factory=Hooks)
    fingerprint: Fingerprint | None = Field(
        None, description="Record a count or checksum of the data with each point (its verifyOutput tag) "
                          "for drills that compare the restored copy with it.")
    pod: PodOptions = Field(default_factory=PodOptions)
    maintenance: Maintenance = Field(default_factory=Maintenance,
                                     description="Repacking the repositories after prune (the maintenance CronJob).")
    suspend: bool = Field(False, description="Stop scheduling new backups, prunes and maintenance; running ones "
                                             "finish.")
    deletion_policy: Literal["Retain", "Delete", "Shred"] = Field(
        "Retain", description="What happens to RecoveryPoints and data when the policy is deleted. "
        "Shred: deleting one of its RecoveryPoints crypto-shreds the point's key epoch first (finalizer).",
    )
    notify: list[DNSLabel] = Field(
        default_factory=list, max_length=10,
        description="Notification targets (defined by the admin in the chart's notifications.targets) told "
                    "about a breached RPO (and its recovery) and failed backups.")

    @field_validator("destinations")
    @classmethod
    def _unique_names(cls, value: list[Destination]) -> list[Destination]:
        names = [d.name for d in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"destination names must be unique; repeated: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _segments_ship_to_s3_and_filesystems(self):
        if self.source.continuous is not None:
            other = [d.name for d in self.destinations if d.azure is not None or d.gcs is not None]
            if other:
                raise ValueError(f"a continuous source ships its segments to s3 and filesystem destinations only; "
                                 f"{', '.join(other)} is azure or gcs (not yet: docs/storage.md)")
            locked = [d.name for d in self.destinations if d.immutable is not None]
            if locked:
                raise ValueError(f"a continuous source's shipper creates its repositories mutable, so {', '.join(locked)} "
                                 "cannot be immutable with it yet (docs/immutability.md)")
        return self

    @model_validator(mode="after")
    def _objects_read_as_their_own_account(self):
        if self.source.resources is not None and self.fingerprint is not None:
            raise ValueError("a resources source takes no fingerprint: its backup pod holds the token of the "
                             "account that reads the namespace's objects, and runs no container of yours")
        if self.source.resources is not None and self.pod.service_account_name:
            raise ValueError("a resources source's backup Jobs run as the ServiceAccount <policy>-objects, which "
                             "the operator binds to exactly what the policy selects; leave pod.serviceAccountName "
                             "out (give that account the Vault role instead, if the key is in Vault)")
        return self


class LastBackup(Model):
    recovery_point: str | None = None
    type: Literal["full", "incremental", "differential"] | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    outcome: Literal["Running", "Succeeded", "Failed"] | None = None
    message: str | None = None
    job: str | None = Field(None, description="The Job that ran (or runs) this backup.")
    trigger: Literal["Schedule", "OnDemand"] | None = None


class RepackedDestination(Model):
    """What the latest maintenance did to one destination's repository."""

    name: DNSLabel
    bytes_before: int = Field(0, ge=0, description="Packs and index before the repack.")
    bytes_after: int = Field(0, ge=0, description="Packs and index after it.")
    packs_rewritten: int = Field(0, ge=0)
    packs_deleted: int = Field(0, ge=0,
                               description="Packs deleted outright (nothing used them, or no index named them).")


class LastMaintenance(Model):
    """The latest run of the maintenance CronJob (repack)."""

    job: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    outcome: Literal["Running", "Succeeded", "Failed"] | None = None
    message: str | None = None
    bytes_before: int | None = Field(None, ge=0, description="Every repacked destination's packs and index, before.")
    bytes_after: int | None = Field(None, ge=0, description="... and after.")
    destinations: list[RepackedDestination] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})


class DestinationStatus(Model):
    """How the latest backups fared at one destination (fan-out: each has its own repository)."""

    name: DNSLabel
    off_site: bool = False
    immutable: str | None = Field(None, description="What the policy asks of the repository, for example "
                                                    "'Compliance, 30 days'; left out for a mutable one.")
    last_outcome: Literal["Succeeded", "Failed"] | None = None
    last_attempt_time: datetime | None = None
    last_success_time: datetime | None = None
    message: str | None = None


class BackupPolicyStatus(StatusBase):
    last_backup: LastBackup | None = None
    last_successful_backup_time: datetime | None = None
    current_rpo_seconds: int | None = Field(None, alias="currentRPOSeconds", ge=0)
    rpo_target_seconds: int | None = Field(None, alias="rpoTargetSeconds", ge=0)
    schedule_interval_seconds: int | None = Field(
        None, ge=0, description="Longest gap between two scheduled backups of any type (what RPOAchievable compares)."
    )
    recovery_points: int | None = Field(None, ge=0)
    cron_jobs: list[str] = Field(default_factory=list, description="The CronJobs that run this policy's schedules.")
    destinations: list[DestinationStatus] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    backup_now_handled: str | None = Field(
        None, description="The last dr.lifeline.io/backup-now annotation value a Job was started for."
    )
    last_maintenance: LastMaintenance | None = None


