"""A tiny synchronous world for the pure state machine: two sites, a selector, and a runner.

:class:`Sim` does what :class:`lifeline.failover.runner.PlanRunner` does, without I/O:
feed results and site views to ``machine.step``, persist the state *through the status
dict* (so a restart really starts from what the status holds), perform the actions on
the simulated world, feed their outcomes back, persist again. It logs every action
the world saw, so tests can check order, repeats and the safety rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from lifeline.failover import codec, machine
from lifeline.failover.machine import (
    CheckResult, CheckSpec, Fence, Inputs, Outcome, Promote, Request, Settings, SiteView, SwitchTraffic,
    WorkloadSpec,
)

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)
A, B = "site-a", "site-b"


def settings(**overrides) -> Settings:
    base = dict(
        primary=A, standby=B,
        checks=(CheckSpec(A, "ready", 1), CheckSpec(A, "query", 1), CheckSpec(B, "ready", 1)),
        workloads={A: (WorkloadSpec("StatefulSet", "prom-a"),), B: (WorkloadSpec("StatefulSet", "prom-b"),)},
        breach_window=60.0, mode="Automatic", cap_count=1, cap_window=3600.0, fencing="ScaleToZero",
    )
    base.update(overrides)
    return Settings(**base)


@dataclass
class WorldSite:
    replicas: int
    reachable: bool = True
    broken: bool = False  # the outage: its endpoint fails even when it runs
    ready: bool = True  # its replicas have started (see Sim.kubelet_lag)

    @property
    def serving(self) -> bool:
        return self.replicas > 0


@dataclass
class Sim:
    cfg: Settings
    now: datetime = T0
    status: dict = field(default_factory=dict)
    sites: dict = field(default_factory=lambda: {A: WorldSite(2), B: WorldSite(0)})
    traffic: str = A
    log: list = field(default_factory=list)  # (time, action) the world carried out
    events: list = field(default_factory=list)
    crash_after_action: bool = False  # the next action happens but its outcome is never persisted
    crashed: bool = False  # a crash lost the outcome of the last action carried out
    violations: list = field(default_factory=list)
    kubelet_lag: bool = False  # promoted replicas become ready only at the next cycle

    # -- the world

    def view(self, name: str) -> SiteView:
        s = self.sites[name]
        if not s.reachable:
            return SiteView(reachable=False, resolved=False, reason="ClusterUnreachable", message="down")
        key = self.cfg.workloads[name][0].key
        return SiteView(reachable=True, resolved=True, ready=s.replicas > 0 and s.ready, replicas={key: s.replicas})

    def healthy(self, name: str) -> bool:
        s = self.sites[name]
        return s.reachable and s.serving and not s.broken

    def perform(self, action) -> Outcome:
        site = self.sites[action.site]
        if isinstance(action, SwitchTraffic):
            if not (site.replicas > 0 and site.ready):
                self.violations.append(f"{self.now}: traffic switched to {action.site} before it was ready")
            self.traffic = action.site
            self.log.append((self.now, action))
            return Outcome(action, ok=True)
        if not site.reachable:
            return Outcome(action, ok=False, unreachable=True, message="connection refused")
        self.log.append((self.now, action))
        key = self.cfg.workloads[action.site][0].key
        if isinstance(action, Fence):
            had = site.replicas
            site.replicas = 0
            return Outcome(action, ok=True, replicas={key: had})
        if isinstance(action, Promote):
            other = self.sites[self.cfg.other(action.site)]
            if other.serving and other.reachable:
                self.violations.append(f"{self.now}: promoted {action.site} while the other site serves")
            site.replicas = action.replicas[key]
            site.ready = not self.kubelet_lag
            return Outcome(action, ok=True)
        raise AssertionError(action)

    # -- the runner

    @property
    def state(self):
        return codec.from_status(self.status, self.cfg)

    def persist(self, decision) -> None:
        self.status = codec.to_status(decision.state)  # what is written is what the next cycle reads
        self.events += decision.events

    def cycle(self, results=(), request: Request | None = None, failback_generation: int | None = None,
              probe_verify: bool = True):
        for site in self.sites.values():
            site.ready = True  # whatever was starting has started by the next cycle
        views = {name: self.view(name) for name in (A, B)}
        decision = machine.step(self.state, self.cfg, Inputs(self.now, tuple(results), views, request, None,
                                                             failback_generation))
        self.persist(decision)
        self.act(decision)
        state = self.state
        if probe_verify and state.switchover is not None and state.switchover.step == machine.VERIFY:
            # the runner probes the target right away while verifying
            target = state.switchover.target
            verify = [CheckResult(c.site, c.name, self.healthy(target), self.now)
                      for c in self.cfg.checks if c.site == target]
            decision = machine.step(state, self.cfg, Inputs(self.now, tuple(verify), views))
            self.persist(decision)
            self.act(decision)
        return self.state

    def act(self, decision) -> None:
        while decision.actions:
            action = decision.actions[0]
            outcome = self.perform(action)
            if self.crash_after_action:
                self.crash_after_action = False
                self.crashed = True
                return  # the operator died before writing the outcome down
            views = {name: self.view(name) for name in (A, B)}
            following = machine.step(decision.state, self.cfg, Inputs(self.now, (), views, None, outcome))
            self.persist(following)
            stuck = not outcome.ok and following.actions == decision.actions
            decision = following
            if stuck:
                return
            if following.state.switchover is not None and following.state.switchover.step == machine.AWAIT_READY:
                # the world made it ready (the fake kubelet); the runner looks again
                views = {name: self.view(name) for name in (A, B)}
                decision = machine.step(decision.state, self.cfg, Inputs(self.now, (), views))
                self.persist(decision)

    def probe_active(self) -> list[CheckResult]:
        """One round of the active site's checks, as the world answers them now."""
        active = self.state.active
        return [CheckResult(c.site, c.name, self.healthy(active), self.now, reason="Healthy" if self.healthy(active)
                            else "Unhealthy") for c in self.cfg.checks if c.site == active]

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def round(self, seconds: float = 10):
        self.advance(seconds)
        return self.cycle(self.probe_active())
