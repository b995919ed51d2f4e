"""FailoverPlan: a primary and a standby site, health checks, and fenced switchover."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .common import (
    TIER_DEFAULTS,
    DNSLabel,
    DNSName,
    Duration,
    Model,
    Objectives,
    SecretKeyRef,
    StatusBase,
    Tier,
    exactly_one,
    one_of_rule,
    parse_duration,
)

CHECK_KINDS = ("http", "tcp", "promql", "workload")
PHASES = ("Monitoring", "Degraded", "FailingOver", "FailedOver", "FailingBack")


class HTTPCheck(Model):
    url: str = Field(pattern=r"^https?://", description="URL to GET.")
    expect_status: list[int] = Field(default_factory=lambda: [200], description="Status codes that count as healthy.")
    body_contains: str | None = Field(None, description="Text the body must contain.")


class TCPCheck(Model):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class PromQLCheck(Model):
    url: str = Field(pattern=r"^https?://", description="Prometheus base URL.")
    query: str = Field(min_length=1, description="Healthy when the query returns a non-empty result.")


class WorkloadCheck(Model):
    kind: Literal["Deployment", "StatefulSet"]
    name: DNSName


class HealthCheck(Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [one_of_rule(CHECK_KINDS, "check kind")]})

    name: DNSLabel
    interval: Duration = Field("10s")
    timeout: Duration = Field("5s")
    weight: int = Field(1, ge=1, le=100, description="Share of the site's health this check carries.")
    http: HTTPCheck | None = None
    tcp: TCPCheck | None = None
    promql: PromQLCheck | None = None
    workload: WorkloadCheck | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        exactly_one(self, CHECK_KINDS, "check kind")
        if parse_duration(self.timeout) > parse_duration(self.interval):
            raise ValueError(f"timeout {self.timeout} is longer than interval {self.interval}")
        return self


class Workload(Model):
    kind: Literal["Deployment", "StatefulSet"]
    name: DNSName
    replicas: int | None = Field(None, ge=1, description="Replicas when active; the primary's count when left out.")


class ClusterRef(Model):
    kubeconfig_secret: SecretKeyRef = Field(description="Secret key holding a kubeconfig for that cluster.")


class Site(Model):
    name: DNSLabel = Field(description="Site name, for example site-a.")
    namespace: DNSLabel
    cluster: ClusterRef | None = Field(None, description="Another cluster; the operator's own when left out.")
    workloads: list[Workload] = Field(min_length=1)
    health_checks: list[HealthCheck] = Field(min_length=1)


class ServiceSwitch(Model):
    """Point a Service at the active site by rewriting its selector."""

    name: DNSName
    namespace: DNSLabel
    primary_selector: dict[str, str] = Field(min_length=1)
    standby_selector: dict[str, str] = Field(min_length=1)


class AnnotationSwitch(Model):
    """Write the active site into an annotation that external-dns or GitOps acts on."""

    api_version: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    name: DNSName
    namespace: DNSLabel
    key: str = Field(min_length=1)


class Traffic(Model):
    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [one_of_rule(("service", "annotation"), "traffic switch")]}
    )

    service: ServiceSwitch | None = None
    annotation: AnnotationSwitch | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        exactly_one(self, ("service", "annotation"), "traffic switch")
        return self


class FailoverCap(Model):
    count: int = Field(1, ge=1, description="Automatic failovers allowed per window.")
    window: Duration = Field("24h")


class FailoverPlanSpec(Model):
    tier: Tier = Field("A", description="Recovery tier whose RTO bounds the failover.")
    objectives: Objectives = Field(default_factory=Objectives)
    mode: Literal["Automatic", "Manual"] = Field("Automatic", description="Manual only recommends and waits for approval.")
    primary: Site
    standby: Site
    traffic: Traffic
    breach_window: Duration | None = Field(None, description="How long checks must fail before a site is down; default 180s.")
    fencing: Literal["ScaleToZero", "Annotation", "Both"] = Field("ScaleToZero")
    max_failovers: FailoverCap = Field(default_factory=FailoverCap)
    failback_requested: bool = Field(False, description="Set to switch back to the primary as a planned switchover.")

    @field_validator("standby")
    @classmethod
    def _distinct_sites(cls, standby: Site, info):
        primary = info.data.get("primary")
        if primary is not None and primary.name == standby.name:
            raise ValueError(f"standby must be a different site from primary (both are '{standby.name}')")
        return standby

    @property
    def rto_seconds(self) -> float:
        return parse_duration(self.objectives.rto or TIER_DEFAULTS[self.tier].rto)

    @property
    def breach_window_seconds(self) -> float:
        return parse_duration(self.breach_window or "180s")


class CheckState(Model):
    name: str
    site: str
    healthy: bool | None = None
    consecutive_failures: int = Field(0, ge=0)
    first_failure_time: datetime | None = None
    last_probe_time: datetime | None = None
    latency_ms: float | None = Field(None, ge=0)
    message: str | None = None


class Transition(Model):
    phase: Literal[PHASES]  # type: ignore[valid-type]
    time: datetime
    active_site: str
    reason: str
    achieved_rto_seconds: float | None = Field(None, alias="achievedRTOSeconds", ge=0)


class FailoverPlanStatus(StatusBase):
    phase: Literal[PHASES] | None = None  # type: ignore[valid-type]
    active_site: str | None = None
    first_failure_time: datetime | None = None
    last_failover_time: datetime | None = None
    fenced_unverified: bool | None = None
    checks: list[CheckState] = Field(default_factory=list)
    history: list[Transition] = Field(default_factory=list)
