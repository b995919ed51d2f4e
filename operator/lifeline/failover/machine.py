"""The failover state machine: pure, with time passed in.

``step(state, settings, inputs) -> Decision`` is the whole of it. The state is
what the FailoverPlan's status holds (see :mod:`lifeline.failover.codec`); the
inputs are what happened since the last call (probe results with their times,
what the API says about each site, a person's request, the outcome of the action
asked for last time) and the time now; the decision is the new state, the
actions to perform (at most one) and the Events to post. No I/O, no clock.

Phases: ``Monitoring -> Degraded -> FailingOver -> FailedOver -> FailingBack -> Monitoring``.
A switchover (FailingOver or FailingBack) walks the steps
``Fence -> Promote -> AwaitReady -> SwitchTraffic -> Verify``; the runner persists the
state after every step before it acts on the next, so a restarted operator (or
another replica) resumes at the step that was persisted: a step's action is asked
for again only when its outcome was never persisted, and actions are idempotent
(scale to N, set a selector), so a repeat after a crash changes nothing.

Safety rules, each a property test in ``tests/failover/test_machine_properties.py``:

- never two primaries: the target is promoted only after the source was fenced, or,
  when the source's API cannot be reached, in Automatic mode (or approved with
  ``--accept-unfenced``) and then the source is marked for fencing the moment it answers;
- never a failover before the breach window: the active site's evaluations must have
  failed without a healthy one in between from the first failure until a failing
  result at least a window later;
- never more unplanned automatic failovers in the cap window than the cap; past it,
  the failover is only recommended and waits for ``lifeline failover approve``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from lifeline.api.common import parse_duration
from lifeline.labels import ANN_FAILOVER_REQUEST as REQUEST_ANNOTATION
from lifeline.objects import EventPlan as Event

MONITORING, DEGRADED, FAILING_OVER, FAILED_OVER, FAILING_BACK = (
    "Monitoring", "Degraded", "FailingOver", "FailedOver", "FailingBack")
FENCE, PROMOTE, AWAIT_READY, SWITCH_TRAFFIC, VERIFY = "Fence", "Promote", "AwaitReady", "SwitchTraffic", "Verify"
ACTION_STEPS = (FENCE, PROMOTE, SWITCH_TRAFFIC)

# Why a breached failover waits for a person (status.recommendation and the condition's reason).
MANUAL_MODE, CAP_REACHED, STANDBY_UNAVAILABLE = "ManualMode", "CapReached", "StandbyUnavailable"

HISTORY_LIMIT = 20
RECOVERY_ROUNDS = 2  # healthy rounds in a row before Degraded returns to Monitoring


# ---- what the machine is told


@dataclass(frozen=True)
class CheckSpec:
    site: str
    name: str
    weight: int = 1


@dataclass(frozen=True)
class WorkloadSpec:
    kind: str
    name: str
    replicas: int | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Settings:
    """The parts of a FailoverPlan's spec the machine reads."""

    primary: str
    standby: str
    checks: tuple[CheckSpec, ...]
    workloads: Mapping[str, tuple[WorkloadSpec, ...]]
    breach_window: float = 180.0
    mode: str = "Automatic"
    cap_count: int = 1
    cap_window: float = 86400.0
    fencing: str = "ScaleToZero"

    @classmethod
    def from_spec(cls, spec) -> "Settings":
        checks, workloads = [], {}
        for site in (spec.primary, spec.standby):
            checks += [CheckSpec(site.name, c.name, c.weight) for c in site.health_checks]
            workloads[site.name] = tuple(WorkloadSpec(w.kind, w.name, w.replicas) for w in site.workloads)
        return cls(
            primary=spec.primary.name, standby=spec.standby.name, checks=tuple(checks), workloads=workloads,
            breach_window=spec.breach_window_seconds, mode=spec.mode, cap_count=spec.max_failovers.count,
            cap_window=parse_duration(spec.max_failovers.window), fencing=spec.fencing,
        )

    def other(self, site: str) -> str:
        return self.standby if site == self.primary else self.primary


@dataclass(frozen=True)
class CheckResult:
    """One probe's answer. ``reason``: Healthy, Unhealthy, Timeout, ConnectionFailed, InvalidResponse, ..."""

    site: str
    check: str
    ok: bool
    time: datetime
    reason: str = ""
    message: str = ""
    latency_ms: float | None = None


@dataclass(frozen=True)
class SiteView:
    """What the site's API said about its workloads at the last look."""

    reachable: bool
    resolved: bool = True  # every workload exists
    ready: bool = False  # every workload has all its replicas ready (and at least one)
    replicas: Mapping[str, int] = field(default_factory=dict)  # spec.replicas by "Kind/name"
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Request:
    id: str
    verb: str  # approve | back | switch
    accept_unfenced: bool = False


# ---- what the machine asks for


@dataclass(frozen=True)
class Fence:
    """Scale the site's workloads to zero and/or annotate them as fenced."""

    site: str
    how: str
    on_return: bool = False  # a site fenced late, after it came back


@dataclass(frozen=True)
class Promote:
    """Remove the fence annotation and scale the site's workloads up."""

    site: str
    replicas: Mapping[str, int]


@dataclass(frozen=True)
class SwitchTraffic:
    site: str


Action = Fence | Promote | SwitchTraffic


@dataclass(frozen=True)
class Outcome:
    action: Action
    ok: bool
    unreachable: bool = False  # the site's API did not answer at all
    message: str = ""
    replicas: Mapping[str, int] = field(default_factory=dict)  # what a fenced site had before


@dataclass(frozen=True)
class Inputs:
    now: datetime
    results: tuple[CheckResult, ...] = ()
    sites: Mapping[str, SiteView] = field(default_factory=dict)
    request: Request | None = None
    outcome: Outcome | None = None
    failback_generation: int | None = None  # the generation whose spec asks for a failback, if it does


# ---- the state (what status holds)


@dataclass(frozen=True)
class CheckState:
    """One health check of one site, as the last probes left it (status.checks)."""

    site: str
    name: str
    healthy: bool | None = None
    reason: str | None = None
    consecutive_failures: int = 0
    first_failure: datetime | None = None
    last_probe: datetime | None = None
    latency_ms: float | None = None
    message: str | None = None


@dataclass(frozen=True)
class Switchover:
    """A failover, failback or switch under way: where it is, so a restarted operator resumes it."""

    kind: str  # Failover | Failback | Switch
    source: str
    target: str
    step: str
    started: datetime
    planned: bool = False
    first_failure: datetime | None = None
    switched: datetime | None = None
    accept_unfenced: bool = False
    fenced_unverified: bool = False
    replicas: Mapping[str, int] = field(default_factory=dict)
    message: str | None = None


@dataclass(frozen=True)
class Record:
    """One entry of status.history: a phase reached, with the measured figures once it is over."""

    phase: str
    time: datetime
    active: str
    reason: str
    message: str | None = None
    achieved_rto: float | None = None
    detection: float | None = None
    switchover: float | None = None


@dataclass(frozen=True)
class RequestRecord:
    """What became of the last request a person made (approve, failback, switch): status.lastRequest."""

    id: str
    verb: str
    outcome: str  # Accepted | Rejected
    message: str
    time: datetime


@dataclass(frozen=True)
class State:
    """Everything the machine knows between steps; the codec keeps it in the FailoverPlan's status."""

    phase: str
    active: str
    checks: tuple[CheckState, ...] = ()
    failing_since: datetime | None = None
    healthy_streak: int = 0
    recommendation: str | None = None
    switchover: Switchover | None = None
    fence_pending: str | None = None
    fenced_replicas: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    failovers: tuple[datetime, ...] = ()
    last_failover: datetime | None = None
    last_request: RequestRecord | None = None
    failback_generation: int | None = None  # the last generation whose failbackRequested was acted on
    history: tuple[Record, ...] = ()

    @classmethod
    def initial(cls, settings: Settings) -> "State":
        return cls(phase=MONITORING, active=settings.primary, checks=_fresh_checks((), settings))

    def check(self, site: str, name: str) -> CheckState | None:
        return next((c for c in self.checks if c.site == site and c.name == name), None)

    @property
    def fenced_unverified(self) -> bool:
        return self.fence_pending is not None


@dataclass(frozen=True)
class Decision:
    state: State
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()


# ---- the machine


def step(state: State, settings: Settings, inputs: Inputs) -> Decision:
    """Everything that follows from ``inputs``; see the module docstring."""
    m = _Step(state, settings, inputs)
    m.run()
    return Decision(m.state, m.actions(), tuple(m.events))


class _Step:
    def __init__(self, state: State, settings: Settings, inputs: Inputs):
        self.state = replace(state, checks=_fresh_checks(state.checks, settings))
        self.settings = settings
        self.inputs = inputs
        self.now = inputs.now
        self.events: list[Event] = []
        self.fence_now: Fence | None = None

    # -- helpers

    def set(self, **changes) -> None:
        self.state = replace(self.state, **changes)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def record(self, phase: str, reason: str, message: str | None = None, **figures) -> None:
        entry = Record(phase=phase, time=self.now, active=self.state.active, reason=reason, message=message, **figures)
        self.set(phase=phase, history=(*self.state.history, entry)[-HISTORY_LIMIT:])

    def site(self, name: str) -> SiteView | None:
        return self.inputs.sites.get(name)

    # -- the order things happen in

    def run(self) -> None:
        self.fold_results()
        self.prune_cap()
        outcome = self.inputs.outcome
        if outcome is not None:
            self.take_outcome(outcome)
        if self.inputs.request is not None:
            self.take_request(self.inputs.request)
        wanted = self.inputs.failback_generation
        if wanted is not None and wanted != self.state.failback_generation:
            self.set(failback_generation=wanted)
            outcome, message = self.handle(Request(f"generation-{wanted}", "back"))
            self.event("Normal" if outcome == "Accepted" else "Warning", f"Request{outcome}",
                       f"spec.failbackRequested (generation {wanted}): {message}")
        if self.state.switchover is not None:
            self.advance_waits()
        else:
            self.detect()
        self.maybe_fence_on_return()

    def actions(self) -> tuple[Action, ...]:
        if self.fence_now is not None:
            return (self.fence_now,)
        sw = self.state.switchover
        if sw is None or sw.step not in ACTION_STEPS:
            return ()
        if sw.step == FENCE:
            return (Fence(sw.source, self.settings.fencing),)
        if sw.step == PROMOTE:
            return (Promote(sw.target, dict(sw.replicas)),)
        return (SwitchTraffic(sw.target),)

    # -- probe results

    def fold_results(self) -> None:
        checks = {(c.site, c.name): c for c in self.state.checks}
        for r in sorted(self.inputs.results, key=lambda r: r.time):
            old = checks.get((r.site, r.check))
            if old is None:
                continue  # a check that is no longer in the spec
            if r.ok:
                new = replace(old, healthy=True, reason=r.reason or "Healthy", consecutive_failures=0,
                              first_failure=None, message=r.message or None)
            else:
                new = replace(old, healthy=False, reason=r.reason or "Unhealthy",
                              consecutive_failures=old.consecutive_failures + 1,
                              first_failure=old.first_failure or r.time, message=r.message or None)
            checks[(r.site, r.check)] = replace(new, last_probe=r.time, latency_ms=r.latency_ms)
        self.set(checks=tuple(checks.values()))

    def site_failing(self, site: str) -> bool | None:
        """At least half of the weight of the site's checks that have answered is failing."""
        weights = {(c.site, c.name): c.weight for c in self.settings.checks}
        known = [c for c in self.state.checks if c.site == site and c.healthy is not None]
        if not known:
            return None
        failing = sum(weights.get((c.site, c.name), 1) for c in known if not c.healthy)
        total = sum(weights.get((c.site, c.name), 1) for c in known)
        return failing * 2 >= total

    def site_verified(self, site: str, since: datetime) -> datetime | None:
        """When every check of ``site`` last passed, if all have passed at or after ``since``."""
        mine = [c for c in self.state.checks if c.site == site]
        if not mine or not all(c.healthy and c.last_probe and c.last_probe >= since for c in mine):
            return None
        return max(c.last_probe for c in mine)

    # -- breach detection

    def detect(self) -> None:
        s = self.state
        active = s.active
        new = [r for r in self.inputs.results if r.site == active]
        if not new:
            return
        at = max(r.time for r in new)
        failing = self.site_failing(active)
        if failing is None:
            return
        if failing:
            first = s.failing_since
            if first is None:
                first = min((r.time for r in new if not r.ok), default=at)
            self.set(failing_since=first, healthy_streak=0)
            if s.phase == MONITORING:
                self.record(DEGRADED, "ChecksFailing", self.failing_message(active))
                self.event("Warning", "SiteDegraded", f"site {active}: {self.failing_message(active)}")
            if self.state.phase == DEGRADED and at - first >= timedelta(seconds=self.settings.breach_window):
                self.breach(at, first)
            return
        # healthy
        self.set(failing_since=None)
        if s.phase == DEGRADED:
            streak = s.healthy_streak + 1
            if streak >= RECOVERY_ROUNDS:
                self.set(healthy_streak=0, recommendation=None)
                self.record(MONITORING, "ChecksPassing", f"site {active} passed {streak} rounds in a row")
                self.event("Normal", "SiteRecovered", f"site {active} is healthy again")
            else:
                self.set(healthy_streak=streak)
        elif s.healthy_streak:
            self.set(healthy_streak=0)

    def failing_message(self, site: str) -> str:
        bad = [c for c in self.state.checks if c.site == site and c.healthy is False]
        return "; ".join(f"check {c.name}: {c.message or c.reason}" for c in bad) or "checks failing"

    def breach(self, at: datetime, first: datetime) -> None:
        s, cfg = self.state, self.settings
        if s.active != cfg.primary:
            return  # after a failover, only a person moves traffic again (failback on request)
        window = f"failing for {(at - first).total_seconds():.0f}s (breach window {cfg.breach_window:.0f}s)"
        if cfg.mode == "Manual":
            self.recommend(MANUAL_MODE, f"site {s.active} {window}; Manual mode: approve with "
                                        f"`lifeline failover approve`")
        elif len(s.failovers) >= cfg.cap_count:
            self.recommend(CAP_REACHED, f"site {s.active} {window}, but {len(s.failovers)} automatic failover(s) "
                                        f"already happened in the cap window ({cfg.cap_count} allowed); approve "
                                        f"with `lifeline failover approve`")
        elif not self.standby_usable():
            view = self.site(cfg.standby)
            why = view.message if view is not None and view.message else "its API has not been reached yet"
            self.recommend(STANDBY_UNAVAILABLE, f"site {s.active} {window}, but standby {cfg.standby} cannot be "
                                                f"promoted: {why}")
        else:
            self.start(kind="Failover", target=cfg.standby, planned=False, reason="BreachWindowElapsed",
                       message=f"site {s.active} {window}")

    def standby_usable(self) -> bool:
        view = self.site(self.settings.standby)
        return view is not None and view.reachable and view.resolved

    def recommend(self, reason: str, message: str) -> None:
        if self.state.recommendation != reason:
            self.set(recommendation=reason)
            self.event("Warning", "FailoverRecommended", message)

    def prune_cap(self) -> None:
        horizon = self.now - timedelta(seconds=self.settings.cap_window)
        kept = tuple(t for t in self.state.failovers if t > horizon)
        if kept != self.state.failovers:
            self.set(failovers=kept)

    # -- starting and walking a switchover

    def start(self, *, kind: str, target: str, planned: bool, reason: str, message: str,
              accept_unfenced: bool = False) -> None:
        s = self.state
        sw = Switchover(kind=kind, source=s.active, target=target, step=FENCE, started=self.now, planned=planned,
                        first_failure=None if planned else s.failing_since, accept_unfenced=accept_unfenced)
        changes = dict(switchover=sw, recommendation=None, healthy_streak=0)
        if not planned:
            changes.update(failovers=(*s.failovers, self.now), last_failover=self.now)
        self.set(**changes)
        phase = FAILING_OVER if target == self.settings.standby else FAILING_BACK
        self.record(phase, reason, message)
        self.event("Warning" if not planned else "Normal", phase,
                   f"{kind.lower()} from {sw.source} to {target}: {message}")

    def take_outcome(self, outcome: Outcome) -> None:
        action = outcome.action
        if isinstance(action, Fence) and action.on_return:
            if outcome.ok and self.state.fence_pending == action.site:
                self.set(fence_pending=None, fenced_replicas=self.merged_replicas(action.site, outcome.replicas))
                self.event("Normal", "FencedOnReturn", f"site {action.site} answered again and is now fenced")
            return
        sw = self.state.switchover
        if sw is None or action not in self.actions():
            return  # stale: not what the current step asked for
        if not outcome.ok:
            if isinstance(action, Fence) and outcome.unreachable:
                self.fence_unreachable(sw, outcome)
            else:
                self.set(switchover=replace(sw, message=f"{sw.step}: {outcome.message}"))
            return
        if isinstance(action, Fence):
            self.set(fenced_replicas=self.merged_replicas(sw.source, outcome.replicas))
            self.to_promote(sw, outcome.replicas)
            self.event("Normal", "Fenced", f"site {sw.source} fenced ({self.settings.fencing})")
        elif isinstance(action, Promote):
            fenced = {k: v for k, v in self.state.fenced_replicas.items() if k != sw.target}
            pending = None if self.state.fence_pending == sw.target else self.state.fence_pending
            self.set(switchover=replace(sw, step=AWAIT_READY, message=None), fenced_replicas=fenced,
                     fence_pending=pending)
            self.event("Normal", "Promoted", f"site {sw.target} scaled up: " +
                       ", ".join(f"{k}={v}" for k, v in sw.replicas.items()))
        elif isinstance(action, SwitchTraffic):
            self.set(active=sw.target, switchover=replace(sw, step=VERIFY, switched=self.now, message=None))
            self.event("Normal", "TrafficSwitched", f"traffic now goes to site {sw.target}")

    def merged_replicas(self, site: str, replicas: Mapping[str, int]) -> dict:
        fenced = {k: dict(v) for k, v in self.state.fenced_replicas.items()}
        kept = {k: v for k, v in replicas.items() if v > 0}
        if kept:
            fenced[site] = {**fenced.get(site, {}), **kept}
        return fenced

    def fence_unreachable(self, sw: Switchover, outcome: Outcome) -> None:
        automatic = self.settings.mode == "Automatic" and not sw.planned
        if automatic or sw.accept_unfenced:
            self.set(fence_pending=sw.source)
            self.to_promote(replace(sw, fenced_unverified=True), {})
            self.event("Warning", "FencingUnverified",
                       f"site {sw.source} cannot be reached ({outcome.message}); promoting {sw.target} anyway and "
                       f"fencing {sw.source} as soon as its API answers")
        elif sw.planned:
            self.set(switchover=None)
            back = MONITORING if self.state.active == self.settings.primary else FAILED_OVER
            self.record(back, "SwitchoverAborted", f"site {sw.source} cannot be reached: {outcome.message}")
            self.event("Warning", "SwitchoverAborted",
                       f"planned {sw.kind.lower()} aborted before any change: site {sw.source} cannot be reached "
                       f"to fence it ({outcome.message})")
        else:
            message = (f"site {sw.source} cannot be reached to fence it ({outcome.message}); Manual mode never "
                       f"promotes unfenced: run `lifeline failover approve --accept-unfenced` to proceed")
            if sw.message != message:
                self.set(switchover=replace(sw, message=message))
                self.event("Warning", "FencingBlocked", message)

    def to_promote(self, sw: Switchover, source_replicas: Mapping[str, int]) -> None:
        target_replicas = self.target_replicas(sw, source_replicas)
        self.set(switchover=replace(sw, step=PROMOTE, replicas=target_replicas, message=None))

    def target_replicas(self, sw: Switchover, source_replicas: Mapping[str, int]) -> dict[str, int]:
        """Per target workload: its own spec, what it had before it was fenced, the source's, or 1."""
        cfg = self.settings
        source = cfg.workloads.get(sw.source, ())
        view = self.site(sw.source)
        observed = dict(view.replicas) if view is not None else {}
        own = self.state.fenced_replicas.get(sw.target, {})
        out = {}
        for i, w in enumerate(cfg.workloads.get(sw.target, ())):
            peer = source[i].key if i < len(source) else None
            candidates = (w.replicas, own.get(w.key), source_replicas.get(peer), observed.get(peer))
            out[w.key] = next((n for n in candidates if n), 1)
        return out

    def advance_waits(self) -> None:
        sw = self.state.switchover
        if sw.step == AWAIT_READY:
            view = self.site(sw.target)
            if view is not None and view.ready:
                self.set(switchover=replace(sw, step=SWITCH_TRAFFIC, message=None))
        elif sw.step == VERIFY:
            healthy_at = self.site_verified(sw.target, sw.switched or sw.started)
            if healthy_at is not None:
                self.finish(sw, healthy_at)

    def finish(self, sw: Switchover, healthy_at: datetime) -> None:
        phase = FAILED_OVER if sw.target == self.settings.standby else MONITORING
        took = (healthy_at - sw.started).total_seconds()
        figures = {"switchover": took}
        if sw.first_failure is not None:
            figures["achieved_rto"] = (healthy_at - sw.first_failure).total_seconds()
            figures["detection"] = (sw.started - sw.first_failure).total_seconds()
        self.set(switchover=None, failing_since=None, healthy_streak=0, recommendation=None)
        unverified = " (old site not fenced yet: unreachable)" if self.state.fence_pending == sw.source else ""
        if "achieved_rto" in figures:
            message = f"site {sw.target} healthy; achieved RTO {figures['achieved_rto']:.1f}s{unverified}"
        else:
            message = f"site {sw.target} healthy after {took:.1f}s{unverified}"
        self.record(phase, f"{sw.kind}Complete", message, **figures)
        self.event("Normal", f"{sw.kind}Complete", message)

    # -- requests from people

    def take_request(self, request: Request) -> None:
        last = self.state.last_request
        if last is not None and last.id == request.id:
            return  # already handled (the annotation stays until the next request replaces it)
        outcome, message = self.handle(request)
        self.set(last_request=RequestRecord(request.id, request.verb, outcome, message, self.now))
        self.event("Normal" if outcome == "Accepted" else "Warning", f"Request{outcome}",
                   f"{request.verb}: {message}")

    def handle(self, request: Request) -> tuple[str, str]:
        s, cfg = self.state, self.settings
        sw = s.switchover
        if request.verb == "approve":
            if sw is not None and sw.step == FENCE and request.accept_unfenced and not sw.accept_unfenced:
                self.set(switchover=replace(sw, accept_unfenced=True, message=None))
                return "Accepted", f"proceeding without verified fencing of site {sw.source}"
            if sw is None and s.recommendation is not None and s.active == cfg.primary:
                self.start(kind="Failover", target=cfg.standby, planned=False, reason="Approved",
                           message=f"approved ({s.recommendation})", accept_unfenced=request.accept_unfenced)
                return "Accepted", f"failover to {cfg.standby} started"
            return "Rejected", "no failover is waiting for approval"
        if sw is not None:
            return "Rejected", f"a {sw.kind.lower()} is in progress (step {sw.step})"
        if request.verb not in ("back", "switch"):
            return "Rejected", (f"the {REQUEST_ANNOTATION} annotation holds no request Lifeline knows "
                                f"({request.verb!r}); use `lifeline failover approve|back|switch`")
        if request.verb == "back" and s.active != cfg.standby:
            return "Rejected", f"site {cfg.primary} is already active"
        target = cfg.other(s.active)
        view = self.site(target)
        if view is None or not (view.reachable and view.resolved):
            why = view.message if view is not None and view.message else "its API has not been reached yet"
            return "Rejected", f"site {target} cannot be promoted: {why}"
        if request.verb == "back":
            self.start(kind="Failback", target=target, planned=True, reason="FailbackRequested", message="requested")
            return "Accepted", f"failback to {target} started"
        self.start(kind="Switch", target=target, planned=True, reason="SwitchRequested", message="requested")
        return "Accepted", f"switchover to {target} started"

    # -- a site that could not be fenced comes back

    def maybe_fence_on_return(self) -> None:
        pending = self.state.fence_pending
        if pending is None or self.inputs.outcome is not None:
            return
        sw = self.state.switchover
        if sw is not None and sw.target == pending and sw.step != FENCE:
            return  # it is being promoted on purpose (failback); the promotion unfences it
        view = self.site(pending)
        if view is not None and view.reachable:
            self.fence_now = Fence(pending, self.settings.fencing, on_return=True)


def _fresh_checks(current: tuple[CheckState, ...], settings: Settings) -> tuple[CheckState, ...]:
    """One state per check in the spec, keeping what is known of the ones that stay."""
    known = {(c.site, c.name): c for c in current}
    return tuple(known.get((c.site, c.name)) or CheckState(c.site, c.name) for c in settings.checks)
