"""FailoverPlan: a primary and a standby site, health checks, and fenced switchover."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .common import (DNSLabel, DNSName, Duration, Model, Objectives, OneOf, SecretKeyRef, StatusBase, Tier,
                     TierObjectives, parse_duration)

CHECK_KINDS = ("http", "tcp", "promql", "workload")
PHASES = ("Monitoring", "Degraded", "FailingOver", "FailedOver", "FailingBack")
STEPS = ("Fence", "Promote", "AwaitReady", "SwitchTraffic", "Verify")
SWITCHOVER_KINDS = ("Failover", "Failback", "Switch")
DEFAULT_BREACH_WINDOW = 180.0
# (apiVersion, kind) an annotation switch may write to: the operator's role grants exactly these.
ANNOTATABLE = {"Service": "v1", "Ingress": "networking.k8s.io/v1", "DNSEndpoint": "externaldns.k8s.io/v1alpha1"}


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


class HealthCheck(OneOf):
    one_of, choice = CHECK_KINDS, "check kind"

    name: DNSLabel
    interval: Duration = Field("10s")
    timeout: Duration = Field("5s")
    weight: int = Field(1, ge=1, le=100, description="Share of the site's health this check carries.")
    http: HTTPCheck | None = None
    tcp: TCPCheck | None = None
    promql: PromQLCheck | None = None
    workload: WorkloadCheck | None = None

    @model_validator(mode="after")
    def _timeout_within_interval(self):
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
    # A bound the API server needs to cost the CEL rule on each check.
    health_checks: list[HealthCheck] = Field(min_length=1, max_length=16)


class ServiceSwitch(Model):
    """Point a Service at the active site by rewriting its selector."""

    name: DNSName
    namespace: DNSLabel
    primary_selector: dict[str, str] = Field(min_length=1)
    standby_selector: dict[str, str] = Field(min_length=1)


class AnnotationSwitch(Model):
    """Write the active site into an annotation that external-dns or GitOps acts on."""

    api_version: str = Field(min_length=1)
    kind: Literal["Service", "Ingress", "DNSEndpoint"] = Field(
        description="Service, Ingress (networking.k8s.io/v1) or DNSEndpoint (externaldns.k8s.io/v1alpha1).")
    name: DNSName
    namespace: DNSLabel
    key: str = Field(min_length=1, description="Annotation key; its value becomes the active site's name.")

    @model_validator(mode="after")
    def _known_version(self):
        wanted = ANNOTATABLE[self.kind]
        if self.api_version != wanted:
            raise ValueError(f"apiVersion of a {self.kind} is {wanted} (got {self.api_version!r})")
        return self


class Traffic(OneOf):
    one_of, choice = ("service", "annotation"), "traffic switch"

    service: ServiceSwitch | None = None
    annotation: AnnotationSwitch | None = None


class FailoverCap(Model):
    count: int = Field(1, ge=1, description="Automatic failovers allowed per window.")
    window: Duration = Field("24h")


class FailoverPlanSpec(Model, TierObjectives):
    tier: Tier = Field("A", description="Recovery tier whose RTO bounds the failover.")
    objectives: Objectives = Field(default_factory=Objectives)
    mode: Literal["Automatic", "Manual"] = Field("Automatic", description="Manual only recommends and waits for approval.")
    primary: Site
    standby: Site
    traffic: Traffic
    breach_window: Duration | None = Field(
        None,
        description="How long checks must fail before a site is down. When left out: 180s, or less when the "
                    "RTO minus the switchover estimate and one check interval leaves less (never under two intervals).",
    )
    switchover_estimate: Duration = Field(
        "60s",
        description="How long fencing, the standby's start-up, the traffic switch and verification take; "
                    "counted against the RTO together with the breach window.",
    )
    fencing: Literal["ScaleToZero", "Annotation", "Both"] = Field("ScaleToZero")
    max_failovers: FailoverCap = Field(default_factory=FailoverCap)
    notify: list[DNSLabel] = Field(
        default_factory=list, max_length=10,
        description="Notification targets (defined by the admin in the chart's notifications.targets) told when "
                    "a failover, failback or switchover starts and completes, or a failover is recommended.")
    failback_requested: bool = Field(
        False,
        description="Set to switch back to the primary as a planned switchover; acted on once per generation "
                    "(set it back to false afterwards).",
    )

    @field_validator("standby")
    @classmethod
    def _distinct_sites(cls, standby: Site, info):
        primary = info.data.get("primary")
        if primary is not None and primary.name == standby.name:
            raise ValueError(f"standby must be a different site from primary (both are '{standby.name}')")
        return standby

    @property
    def longest_interval_seconds(self) -> float:
        checks = [*self.primary.health_checks, *self.standby.health_checks]
        return max(parse_duration(c.interval) for c in checks)

    @property
    def switchover_estimate_seconds(self) -> float:
        return parse_duration(self.switchover_estimate)

    @property
    def breach_window_seconds(self) -> float:
        """The window as written, or derived from the RTO budget (see the field's description)."""
        if self.breach_window:
            return parse_duration(self.breach_window)
        interval = self.longest_interval_seconds
        budget = self.rto_seconds - self.switchover_estimate_seconds - interval
        return max(min(DEFAULT_BREACH_WINDOW, budget), 2 * interval)

    @property
    def worst_case_recovery_seconds(self) -> float:
        """Breach window + one check interval (detection) + the switchover estimate."""
        return self.breach_window_seconds + self.longest_interval_seconds + self.switchover_estimate_seconds


class CheckState(Model):
    name: str
    site: str
    healthy: bool | None = None
    reason: str | None = Field(None, description="Healthy, Unhealthy, Timeout, ConnectionFailed, InvalidResponse, ...")
    consecutive_failures: int = Field(0, ge=0)
    first_failure_time: datetime | None = None
    last_probe_time: datetime | None = Field(None, description="Refreshed whenever the status is written.")
    latency_ms: float | None = Field(None, ge=0, description="Refreshed whenever the status is written.")
    message: str | None = None


class Transition(Model):
    phase: Literal[PHASES]  # type: ignore[valid-type]
    time: datetime
    active_site: str
    reason: str
    message: str | None = None
    achieved_rto_seconds: float | None = Field(
        None, alias="achievedRTOSeconds", ge=0, description="Standby healthy minus the first failed check.")
    detection_seconds: float | None = Field(None, ge=0, description="Failover start minus the first failed check.")
    switchover_seconds: float | None = Field(None, ge=0, description="Standby healthy minus the switchover's start.")


class Switchover(Model):
    """The switchover in progress; each step is written here before it is acted on."""

    kind: Literal[SWITCHOVER_KINDS]  # type: ignore[valid-type]
    source: str = Field(description="Site being fenced.")
    target: str = Field(description="Site being promoted.")
    step: Literal[STEPS]  # type: ignore[valid-type]
    planned: bool = Field(False, description="Requested by a person (switch, failback) rather than a breach.")
    started_time: datetime
    first_failure_time: datetime | None = None
    switched_time: datetime | None = Field(None, description="When traffic moved to the target.")
    accept_unfenced: bool | None = Field(None, description="Approved to proceed although fencing cannot be verified.")
    fenced_unverified: bool | None = None
    replicas: dict[str, int] = Field(default_factory=dict, description="Replicas the target is promoted to.")
    message: str | None = Field(None, description="Why the current step has not completed yet.")


class RequestStatus(Model):
    """The last request made through the dr.lifeline.io/request annotation."""

    id: str
    verb: str = Field(description="approve, back or switch; anything else is rejected.")
    outcome: Literal["Accepted", "Rejected"]
    message: str = ""
    time: datetime


class FailoverPlanStatus(StatusBase):
    phase: Literal[PHASES] | None = None  # type: ignore[valid-type]
    active_site: str | None = None
    first_failure_time: datetime | None = Field(None, description="Start of the active site's current failing streak.")
    healthy_streak: int | None = Field(None, ge=0, description="Healthy rounds since the last failing one (hysteresis).")
    recommendation: str | None = Field(None, description="Why a failover waits for approval (Manual, CapReached, ...).")
    last_failover_time: datetime | None = None
    fenced_unverified: bool | None = None
    fence_pending: str | None = Field(None, description="Site to fence as soon as its API answers again.")
    fenced_replicas: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Replicas each fenced site had, by 'Kind/name', for its next promotion.")
    switchover: Switchover | None = None
    recent_failovers: list[datetime] = Field(default_factory=list, description="Unplanned failovers in the cap window.")
    last_request: RequestStatus | None = None
    failback_observed_generation: int | None = Field(
        None, ge=0, description="Generation whose spec.failbackRequested has been acted on.")
    checks: list[CheckState] = Field(default_factory=list)
    history: list[Transition] = Field(default_factory=list)
