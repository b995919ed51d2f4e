"""One FailoverPlan's loop: look at the sites, probe, decide, persist, act -- in that order.

A :class:`PlanRunner` runs as a kopf daemon per FailoverPlan (see
:mod:`lifeline.controllers.failover`) and is the only writer of that plan's status.
Each cycle:

1. reads the plan as stored (kopf keeps the daemon's body fresh; our own last write
   counts until the watch catches up with it);
2. looks at both sites' APIs when due (:func:`~lifeline.failover.sites.observe`);
3. runs the checks that are due, concurrently, each within its timeout; the checks
   of the *active* site run on their interval, the other site's only to verify it
   after a promotion (a cold standby's failing checks are expected, not news);
4. asks the pure state machine what follows, writes the status if it changed --
   with the resourceVersion it read, so two writers can never both win -- posts the
   Events, and only then performs the step's action; each action's outcome goes back
   through the machine and is persisted before the next action starts.

Time: schedules (check intervals, the breach window) follow the injected clock; with
a clock that only tests move, the loop polls it every few milliseconds instead of
sleeping. Waiting for a promoted site to become ready and healthy uses short
real-time back-offs, since those wait on the world, not on the schedule.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta

from lifeline.api import FAILOVER_PLAN as INFO
from lifeline.api.common import parse_duration
from lifeline.api.failoverplan import FailoverPlanSpec
from lifeline.api.validation import problems_in_spec
from lifeline.clock import SystemClock
from lifeline.kube import WORKLOADS, KubeError, ObjectRef
from lifeline.observability import audit
from lifeline.planning import authority

from . import actuators, codec, machine, probes, status as planner
from .machine import AWAIT_READY, VERIFY, Decision, Inputs, Request, Settings, State
from .sites import Clusters, SiteUnavailable, observe

log = logging.getLogger(__name__)

REQUEST_ANNOTATION = machine.REQUEST_ANNOTATION
FAST_FIRST, FAST_MAX = 0.05, 1.0  # real seconds between looks while a switchover waits on the world
OBSERVE_EVERY = 2.0  # clock seconds at least between looks at both sites' APIs (never more often than checks)
ERROR_FIRST, ERROR_MAX = 1.0, 30.0
TEST_CLOCK_POLL = 0.01  # real seconds between looks at a clock that only a test moves


class Gone(Exception):
    """The plan was deleted."""


class Conflict(Exception):
    """Someone else wrote the status first; the cycle starts over from what they wrote."""


def truncate(moment: datetime) -> datetime:
    """Milliseconds, as the status stores them: what is decided on is what is persisted."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_request(annotations: dict | None) -> Request | None:
    raw = (annotations or {}).get(REQUEST_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return Request(id=str(data["id"]), verb=str(data["verb"]), accept_unfenced=bool(data.get("acceptUnfenced")))
    except (ValueError, KeyError, TypeError, AttributeError):
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]  # stable across restarts: rejected once
        return Request(id=f"unreadable-{digest}", verb="unreadable")


class PlanRunner:
    def __init__(self, ctx, namespace: str, name: str, body_source: Callable[[], dict]):
        self.ctx = ctx
        self.namespace = namespace
        self.name = name
        self.body_source = body_source
        self.wake = asyncio.Event()
        self.stopping = False
        self.clusters = Clusters(ctx.kube, namespace, authority.allowed_pairs(os.environ))
        self.session = None
        self.sites: dict = {}
        self.next_due: dict[tuple[str, str], datetime] = {}
        self.next_observe: datetime | None = None
        self.generation_seen: int | None = None
        self.written: dict | None = None  # our last write's answer ...
        self.superseded: set[str] = set()  # ... and every resourceVersion known to be older than it
        self.carried: list = []  # probe results of a round whose write met a conflict: for the retry
        self.fast_delay = FAST_FIRST
        self.fast_step: tuple | None = None
        self.error_delay = ERROR_FIRST
        self.last_error: str | None = None
        self.real_clock = isinstance(ctx.clock, SystemClock)
        self.events_task: asyncio.Task | None = None

    # ---- lifecycle

    def poke(self) -> None:
        self.wake.set()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    async def run(self, stopped=None) -> None:
        self.session = probes.new_session()
        try:
            while not self.stopping and not (stopped is not None and stopped):
                delay = None
                try:
                    delay = await self.cycle()
                    self.error_delay, self.last_error = ERROR_FIRST, None
                except Gone:
                    return
                except Conflict:
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never a traceback in a loop: say it once, back off
                    text = f"{type(exc).__name__}: {exc}"
                    if text != self.last_error:
                        log.warning("FailoverPlan %s/%s: %s", self.namespace, self.name, text,
                                    exc_info=not isinstance(exc, KubeError))
                    self.last_error = text
                    self.ctx.metrics.reconciles.labels(INFO.kind, "error").inc()
                    delay = self.error_delay
                    self.error_delay = min(self.error_delay * 2, ERROR_MAX)
                await self.pause(stopped, delay)
        finally:
            if self.events_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.events_task, 10)
            await self.session.close()
            self.clusters.close()

    async def pause(self, stopped, real_delay: float | None) -> None:
        """Until woken, stopped, ``real_delay`` passes, or the clock reaches the next thing due."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        due = self.next_wakeup()
        while True:
            if self.stopping or (stopped is not None and stopped):
                return
            if self.wake.is_set():
                self.wake.clear()
                return
            waited = loop.time() - started
            if real_delay is not None and waited >= real_delay:
                return
            now = self.ctx.clock.now()
            if due is not None and now >= due:
                return
            chunk = 0.5 if self.real_clock else TEST_CLOCK_POLL
            if self.real_clock and due is not None:
                chunk = min(chunk, max((due - now).total_seconds(), 0.001))
            if real_delay is not None:
                chunk = min(chunk, real_delay - waited)
            try:
                await asyncio.wait_for(self.wake.wait(), max(chunk, 0.001))
            except TimeoutError:
                pass

    def next_wakeup(self) -> datetime | None:
        times = [t for t in (*self.next_due.values(), self.next_observe) if t is not None]
        return min(times) if times else None

    # ---- one cycle

    def current(self) -> dict:
        live = copy.deepcopy(dict(self.body_source()))
        rv = (live.get("metadata") or {}).get("resourceVersion")
        if self.written is not None and rv in self.superseded:
            return copy.deepcopy(self.written)  # the watch has not brought our own write back yet
        self.written, self.superseded = None, set()
        return live

    async def cycle(self) -> float | None:
        body = self.current()
        meta = body.get("metadata") or {}
        now = truncate(self.ctx.clock.now())
        spec, _ = problems_in_spec(INFO, body.get("spec"))
        self.ctx.metrics.spec_valid.labels(INFO.kind, self.namespace, self.name).set(1 if spec else 0)
        if spec is None:
            self.next_due.clear()
            self.next_observe = None
            self.generation_seen = None
            self.carried = []
            await self.commit(body, planner.plan(INFO, body, now))
            return None
        settings = Settings.from_spec(spec)
        generation = meta.get("generation")
        fresh_spec = generation != self.generation_seen
        if fresh_spec:
            self.schedule(spec, now)
            self.generation_seen = generation
        state = codec.from_status(body.get("status"), settings)
        if fresh_spec or (self.next_observe is not None and now >= self.next_observe):
            await self.observe_all(spec)
            self.next_observe = now + timedelta(seconds=max(self.shortest_interval(spec), OBSERVE_EVERY))
        elif state.switchover is not None and state.switchover.step == AWAIT_READY:
            await self.observe_one(spec, state.switchover.target)
        results = [*self.carried, *await self.probe(spec, state, now)]
        self.carried = []
        inputs = Inputs(now=now, results=tuple(results), sites=dict(self.sites),
                        request=parse_request(meta.get("annotations")),
                        failback_generation=generation if spec.failback_requested else None)
        decision = machine.step(state, settings, inputs)
        try:
            body = await self.commit(body, self.plan(body, spec, decision, now), decision)
        except Conflict:
            self.carried = results  # (the round was probed: the retry decides on it, it is not lost)
            raise
        decision, body = await self.act(spec, settings, decision, body)
        if results:
            self.ctx.metrics.failover_rounds.labels(self.namespace, self.name).inc()
        return self.fast(decision.state)

    async def act(self, spec: FailoverPlanSpec, settings: Settings, decision: Decision, body: dict):
        """Perform the decided action, persist its outcome, and go on while steps complete."""
        while decision.actions:
            action = decision.actions[0]
            outcome = await actuators.perform(action, spec=spec, clusters=self.clusters,
                                              stamp=codec.stamp(self.ctx.clock.now()))
            if isinstance(action, machine.Promote) and outcome.ok:
                await self.observe_one(spec, action.site)
            elif isinstance(action, machine.Fence):
                await self.observe_one(spec, action.site)
            now = truncate(self.ctx.clock.now())
            following = machine.step(decision.state, settings,
                                     Inputs(now=now, sites=dict(self.sites), outcome=outcome))
            body = await self.commit(body, self.plan(body, spec, following, now), following)
            stuck = not outcome.ok and following.actions == decision.actions
            decision = following
            if stuck:
                break  # try again after a back-off
        return decision, body

    def fast(self, state: State) -> float | None:
        """A short real-time delay while a switchover waits on the world (backing off), else None."""
        sw = state.switchover
        if sw is None:
            self.fast_step = None
            return None
        key = (sw.kind, sw.step, sw.started)
        if key != self.fast_step:
            self.fast_step, self.fast_delay = key, FAST_FIRST
        else:
            self.fast_delay = min(self.fast_delay * 1.5, FAST_MAX)
        return self.fast_delay

    # ---- sites and probes

    @staticmethod
    def shortest_interval(spec: FailoverPlanSpec) -> float:
        return min(parse_duration(c.interval) for s in (spec.primary, spec.standby) for c in s.health_checks)

    def schedule(self, spec: FailoverPlanSpec, now: datetime) -> None:
        """Each check's first probe one interval from now (or sooner, if it was already due sooner)."""
        wanted = {}
        for site in (spec.primary, spec.standby):
            for check in site.health_checks:
                key = (site.name, check.name)
                first = now + timedelta(seconds=parse_duration(check.interval))
                wanted[key] = min(self.next_due.get(key, first), first)
        self.next_due = wanted

    async def observe_all(self, spec: FailoverPlanSpec) -> None:
        primary, standby = await asyncio.gather(observe(self.clusters, spec.primary, "primary"),
                                                observe(self.clusters, spec.standby, "standby"))
        self.sites = {spec.primary.name: self.remembered(spec.primary.name, primary),
                      spec.standby.name: self.remembered(spec.standby.name, standby)}

    async def observe_one(self, spec: FailoverPlanSpec, site_name: str) -> None:
        site, role = ((spec.primary, "primary") if spec.primary.name == site_name else (spec.standby, "standby"))
        view = await observe(self.clusters, site, role)
        self.sites = {**self.sites, site_name: self.remembered(site_name, view)}

    def remembered(self, name: str, view):
        """A site that stops answering keeps its last known replica counts (for promoting its peer)."""
        before = self.sites.get(name)
        if not view.reachable and not view.replicas and before is not None and before.replicas:
            return dataclasses.replace(view, replicas=dict(before.replicas))
        return view

    async def probe(self, spec: FailoverPlanSpec, state: State, now: datetime) -> list:
        sw = state.switchover
        verifying = sw.target if sw is not None and sw.step == VERIFY else None
        chosen = []
        for site in (spec.primary, spec.standby):
            for check in site.health_checks:
                key = (site.name, check.name)
                if site.name == verifying:
                    chosen.append((site.name, check))
                elif self.next_due.get(key) is not None and now >= self.next_due[key]:
                    self.next_due[key] = now + timedelta(seconds=parse_duration(check.interval))
                    if site.name == state.active and sw is None:
                        chosen.append((site.name, check))
        if not chosen:
            return []
        readers = {}
        for site in (spec.primary, spec.standby):
            readers[site.name] = self.reader(site)
        results = await probes.run_checks(chosen, session=self.session, readers=readers, now=now)
        m = self.ctx.metrics
        for r in results:
            labels = (self.namespace, self.name, r.site, r.check)
            m.failover_checks.labels(*labels, "success" if r.ok else "failure").inc()
            m.failover_check_healthy.labels(*labels).set(1 if r.ok else 0)
            if r.latency_ms is not None:
                m.failover_check_latency.labels(*labels).observe(r.latency_ms / 1000)
        return results

    def reader(self, site):
        async def read(kind: str, name: str) -> dict:
            try:
                kube = await self.clusters.connect(site)
            except SiteUnavailable as exc:
                raise KubeError(str(exc), 0) from None
            return await kube.get(WORKLOADS[kind], site.namespace, name)
        return read

    # ---- persisting

    def plan(self, body: dict, spec: FailoverPlanSpec, decision: Decision, now: datetime):
        return planner.plan(INFO, body, now, spec=spec, state=decision.state, sites=self.sites,
                            machine_events=decision.events)

    async def commit(self, body: dict, plan, decision: Decision | None = None) -> dict:
        """Write the status (only if it changed), then post the Events; returns the object as now stored."""
        m = self.ctx.metrics
        stored = body
        if plan.patch is None:
            m.reconciles.labels(INFO.kind, "unchanged").inc()
        else:
            rv = (body.get("metadata") or {}).get("resourceVersion")
            try:
                stored = await self.ctx.kube.patch(
                    INFO, self.namespace, self.name,
                    {"status": plan.patch, **({"metadata": {"resourceVersion": rv}} if rv else {})},
                    subresource="status")
            except KubeError as exc:
                if exc.status == 404:
                    raise Gone() from None
                if exc.status == 409:
                    m.reconciles.labels(INFO.kind, "conflict").inc()
                    await self.refetch(rv)
                    raise Conflict() from None
                raise
            m.reconciles.labels(INFO.kind, "written").inc()
            self.hold(copy.deepcopy(stored), over=rv)
        if decision is not None:
            self.record_metrics(decision)
        if plan.events:
            self.post_events(ObjectRef.of(stored), plan.events, codec.stamp(self.ctx.clock.now()))
        return stored

    def post_events(self, ref: ObjectRef, events, now: str) -> None:
        """Post Events in order, behind the status write, without holding up the next step."""
        previous = self.events_task

        async def post():
            if previous is not None:
                await previous
            self.notify(ref, events, now)  # people first: sent in the background, never waited for
            for ev in events:
                await self.ctx.kube.emit_event(ref, ev.type, ev.reason, ev.message, now)
            await asyncio.to_thread(audit_transitions, ref, events, now)  # off the failover's critical path

        self.events_task = asyncio.get_running_loop().create_task(post())

    def notify(self, ref: ObjectRef, events, now: str) -> None:
        """Tell the plan's notification targets about the transitions people must hear of."""
        if self.ctx.notifier is not None:
            body = {"kind": ref.kind or INFO.kind, **self.body_source()}
            for ev in events:
                self.ctx.notifier.tell(body, ev.reason, ev.message, now)

    async def refetch(self, over: str | None) -> None:
        try:
            fresh = await self.ctx.kube.get(INFO, self.namespace, self.name)
        except KubeError as exc:
            if exc.status == 404:
                raise Gone() from None
            raise
        self.hold(fresh, over)

    def hold(self, newest: dict, over: str | None) -> None:
        """Serve ``newest`` (our write's answer, or a fresh read after a conflict) until the watch
        brings a body not known to be older than it: the one it replaced (``over``) and, while the
        watch lags, every earlier one served this way. A watch two writes behind brings back the one
        in between: older too, never taken for news. (What the watch shows at the moment is not
        added: it may already be a newer write of someone else's.)"""
        older = set()
        if self.written is not None:
            older = self.superseded | {(self.written.get("metadata") or {}).get("resourceVersion")}
        self.written, self.superseded = newest, {v for v in (*older, over) if v is not None}

    def record_metrics(self, decision: Decision) -> None:
        m, state = self.ctx.metrics, decision.state
        ns, name = self.namespace, self.name
        for phase in machine_phases():
            m.failover_phase.labels(ns, name, phase).set(1 if state.phase == phase else 0)
        m.failover_recommended.labels(ns, name).set(1 if state.recommendation else 0)
        m.failover_fenced_unverified.labels(ns, name).set(1 if state.fence_pending else 0)
        for event in decision.events:
            if event.reason in ("SiteDegraded", "SiteRecovered", "FailingOver", "FailingBack",
                                "FailoverComplete", "FailbackComplete", "SwitchComplete", "SwitchoverAborted"):
                m.failover_transitions.labels(ns, name, event.reason).inc()
        if decision.events and state.history and state.history[-1].achieved_rto is not None \
                and any(e.reason.endswith("Complete") for e in decision.events):
            m.failover_achieved_rto.labels(ns, name).set(state.history[-1].achieved_rto)


# Event reasons that are audited failover/failback transitions: (action, outcome).
AUDITED = {"FailingOver": ("failover", "started"), "FailingBack": ("failback", "started"),
           "FailoverComplete": ("failover", "succeeded"), "FailbackComplete": ("failback", "succeeded"),
           "SwitchComplete": ("failover", "succeeded"), "SwitchoverAborted": ("failover", "failed")}


def audit_transitions(ref: ObjectRef, events, now: str) -> None:
    """One audit record per failover/failback transition the machine announced as an Event."""
    when = datetime.fromisoformat(now.replace("Z", "+00:00"))
    for ev in events:
        if ev.reason in AUDITED:
            action, outcome = AUDITED[ev.reason]
            audit.record(action, actor="system:lifeline-operator", outcome=outcome, when=when,
                         subject={"kind": ref.kind or "FailoverPlan", "namespace": ref.namespace, "name": ref.name},
                         details={"reason": ev.reason, "message": ev.message})


def machine_phases() -> tuple[str, ...]:
    return (machine.MONITORING, machine.DEGRADED, machine.FAILING_OVER, machine.FAILED_OVER, machine.FAILING_BACK)
