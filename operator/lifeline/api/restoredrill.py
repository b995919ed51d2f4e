"""RestoreDrill: a rehearsal that restores a point into a sandbox and measures it."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .backuppolicy import KindName
from .common import Cron, DNSLabel, DNSName, Duration, Model, StatusBase
from .restore import TargetTime


class PointSelector(Model):
    """Which recovery point a drill restores."""

    strategy: Literal["Latest", "Random", "Named"] = Field("Latest")
    window: Duration | None = Field(None, description="With Random: how far back to choose from.")
    name: DNSName | None = Field(None, description="With Named: the RecoveryPoint to restore.")
    target_time: TargetTime | None = Field(
        None, description="Point-in-time drill (policies with a continuous PostgreSQL source only): an RFC 3339 "
                          "time or 'latest'. The agent restores the newest base backup that finished before it and "
                          "prefetches the shipped WAL up to it into the sandbox claim; the chosen point then only "
                          "names the policy and copy.")

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.strategy != 'Named' || has(self.name)", "message": "strategy Named needs name"},
                {"rule": "self.strategy == 'Named' || !has(self.name)", "message": "name goes only with strategy Named"},
            ]
        }
    )

    @model_validator(mode="after")
    def _fits_strategy(self):
        if self.strategy == "Named" and not self.name:
            raise ValueError("strategy Named needs name: the RecoveryPoint to restore")
        if self.strategy != "Named" and self.name:
            raise ValueError(f"name goes only with strategy Named (strategy is {self.strategy})")
        if self.strategy != "Random" and self.window:
            raise ValueError(f"window goes only with strategy Random (strategy is {self.strategy})")
        return self


class Sandbox(Model):
    """Where a drill restores to; created per run and removed afterwards."""

    namespace_prefix: str = Field("lifeline-drill-", pattern=r"^[a-z0-9]([-a-z0-9]*)?$", max_length=40)
    ttl: Duration = Field("1h", description="How long a finished sandbox is kept before clean-up.")
    keep_on_failure: bool = Field(False, description="Keep a failed drill's sandbox for debugging.")
    storage_class_name: DNSName | None = None


class VerifyCommand(Model):
    """A command that checks the restored data, for example a SQL row count."""

    image: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    expect_output: str | None = Field(None, description="Output the command must print (trimmed).")
    compare_to_backup: bool = Field(False, description="Expect the output recorded when the point was taken.")


class LiteralEnv(Model):
    """An environment variable given literally (a drill copies no Secret into a user's container)."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
    value: str = ""


class ThrowawayDatabase(Model):
    """A database the drill starts in the sandbox (a Pod and a Service named ``drill-db``) for dump sources."""

    image: str = Field(min_length=1, description="Database image, for example postgres:16.")
    port: int = Field(ge=1, le=65535, description="Port the database listens on.")
    env: list[LiteralEnv] = Field(default_factory=list, description="Environment, such as POSTGRES_PASSWORD.")


class LoadCommand(Model):
    """The command a dump point's byte stream is piped into, such as ``pg_restore`` or ``psql``."""

    image: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    env: list[LiteralEnv] = Field(default_factory=list)


class DrillRestore(Model):
    """How a dump (command) source is restored; directory sources need nothing here (a fresh PVC). For a
    resources policy (an application drill) how long the restored application may take to start."""

    size: str = Field("10Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
                      description="Size of the sandbox PVC a directory point is restored into.")
    load: LoadCommand | None = Field(None, description="For dump sources: the command the stream is piped into.")
    database: ThrowawayDatabase | None = Field(None, description="For dump sources: a database to load into.")
    startup_timeout: Duration = Field(
        "10m", description="Application drills (resources policies): how long the restored Deployments and "
                           "StatefulSets may take to have all their replicas ready before the run fails "
                           "(StartupTimedOut).")
    leave_out: list[KindName] = Field(
        default_factory=list, max_length=64,
        description="Application drills: kinds (a resource or Kind, with or without its group, as includeKinds) "
                    "not restored into the sandbox, besides those never restored there (NetworkPolicies, "
                    "Ingresses, Gateway API Gateways and routes, external-dns DNSEndpoints): for example custom "
                    "resources whose controllers act outside the cluster (certificates.cert-manager.io).")


class Verification(Model):
    timeout: Duration = Field("10m")
    command: VerifyCommand | None = None


class RestoreDrillSpec(Model):
    policy_name: DNSName = Field(description="BackupPolicy whose points are rehearsed.")
    schedule: Cron | None = Field(None, description="When to run; the policy tier's rhythm when left out.")
    mode: Literal["Scheduled", "Once"] = Field("Scheduled")
    point: PointSelector = Field(default_factory=PointSelector)
    sandbox: Sandbox = Field(default_factory=Sandbox)
    notify: list[DNSLabel] = Field(
        default_factory=list, max_length=10,
        description="Notification targets (defined by the admin in the chart's notifications.targets) told "
                    "about a failed drill or one over its RTO.")
    restore: DrillRestore = Field(default_factory=DrillRestore)
    verify: Verification = Field(default_factory=Verification)
    history_limit: int = Field(10, ge=1, le=100, description="Runs kept in status.history.")
    suspend: bool = False


class DrillRun(Model):
    """One drill run's measurements."""

    name: str
    recovery_point: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    restore_seconds: float | None = Field(None, ge=0)
    startup_seconds: float | None = Field(
        None, ge=0, description="Application drills: from the restored workloads' creation to the last one ready.")
    verify_seconds: float | None = Field(None, ge=0)
    total_seconds: float | None = Field(None, ge=0)
    rto_seconds: float | None = Field(None, alias="rtoSeconds", ge=0)
    rto_met: bool | None = Field(None, alias="rtoMet")
    point_age_seconds: float | None = Field(None, ge=0)
    rpo_seconds: float | None = Field(None, alias="rpoSeconds", ge=0)
    rpo_met: bool | None = Field(None, alias="rpoMet")
    bytes_restored: int | None = Field(None, ge=0)
    outcome: Literal["Running", "Succeeded", "Failed"] | None = None
    reason: str | None = None
    message: str | None = None
    phase: Literal["Restoring", "Starting", "Verifying", "Done"] | None = Field(
        None, description="Step of a running drill (Starting: an application drill's workloads becoming ready).")
    startup_deadline: datetime | None = Field(
        None, description="Application drills: when a run still starting fails (StartupTimedOut).")
    sandbox: str | None = Field(None, description="Sandbox namespace of this run.")
    cleanup_time: datetime | None = Field(None, description="When the sandbox is (or was) removed.")
    sandbox_deleted: bool | None = None
    verify_output: str | None = Field(None, max_length=512, description="What the verify command printed (trimmed).")
    trigger: str | None = Field(None, description="schedule, once, or the run-now request.")


class RestoreDrillStatus(StatusBase):
    last_run: DrillRun | None = None
    next_run_time: datetime | None = None
    history: list[DrillRun] = Field(default_factory=list)
    last_request: str | None = Field(None, description="The last dr.lifeline.io/run-now value acted on.")
