"""Property tests: whatever the health results, outages, requests and crashes, the rules hold.

Each example drives the pure machine through :class:`Sim` (state persisted through
the status dict after every step, so every cycle is a restart from what the status
holds) with a random story: probe rounds where the primary is up or down, either
site's API vanishing and coming back, requests, the standby failing its checks,
time passing with the operator down, and crashes between an action and the status
write that records it. After every step of the story:

- never two primaries: never two reachable sites running at once after a cycle, and
  no promotion while the other site runs and can be reached;
- traffic only ever moves to a site whose replicas are ready;
- never an automatic failover before the breach window: it starts only after the
  active site's rounds have failed, without a passing one in between, for the window;
- never more automatic failovers in any cap window than the cap;
- no action is carried out twice in a row unless a crash lost its outcome (a restart
  resumes at the persisted step: no repeat, and the order Fence -> Promote -> Switch
  is never skipped).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from lifeline.failover import machine
from lifeline.failover.machine import Fence, Promote, Request, SwitchTraffic

from .machine_helpers import A, B, Sim, settings

ops = st.lists(st.one_of(
    st.tuples(st.just("round"), st.booleans()),
    st.tuples(st.just("round"), st.just(False)),  # weigh outages more
    st.tuples(st.just("reach"), st.sampled_from([A, B]), st.booleans()),
    st.tuples(st.just("request"), st.sampled_from(["approve", "back", "back", "back", "switch"]), st.booleans()),
    st.tuples(st.just("crash")),
    st.tuples(st.just("standby"), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 4000)),
    st.tuples(st.just("outage"), st.integers(1, 8)),  # that many failing rounds in a row
    st.tuples(st.just("blackout"), st.integers(1, 8)),  # the primary's API and checks gone, then back
), max_size=60)

plans = st.builds(
    lambda mode, cap, window, cap_window: settings(mode=mode, cap_count=cap, breach_window=float(window),
                                                    cap_window=float(cap_window)),
    st.sampled_from(["Automatic", "Automatic", "Manual"]), st.integers(1, 2), st.sampled_from([20, 30, 60]),
    st.sampled_from([300, 3600]),
)


@dataclass
class Checked(Sim):
    """The simulation plus the bookkeeping the properties need."""

    rounds: list = field(default_factory=list)  # (time, active, ok) of every probe round
    starts: list = field(default_factory=list)  # (time, kind, planned, reason) of every switchover start

    def persist(self, decision) -> None:
        before = self.state.switchover
        super().persist(decision)
        after = decision.state.switchover
        if after is not None and (before is None or before.started != after.started or before.kind != after.kind):
            self.starts.append((self.now, after.kind, after.planned, decision.state.history[-1].reason))

    def perform(self, action):
        logged = len(self.log)
        outcome = super().perform(action)
        if len(self.log) > logged:
            if logged and self.log[-2][1] == action and not self.crashed:
                self.violations.append(f"{self.now}: {action} carried out twice without a crash in between")
            self.crashed = False
        return outcome

    def probe_active(self):
        results = super().probe_active()
        active = self.state.active
        if self.state.switchover is None:
            self.rounds.append((self.now, active, self.healthy(active)))
        return results


def check_invariants(sim: Checked) -> None:
    assert not sim.violations, sim.violations
    a, b = sim.sites[A], sim.sites[B]
    assert not (a.serving and a.reachable and b.serving and b.reachable), \
        f"two reachable primaries after a cycle: {sim.sites}"
    cfg = sim.cfg
    automatic = [t for t, kind, planned, reason in sim.starts if reason == "BreachWindowElapsed"]
    for t in automatic:
        # the run of failing rounds of the active site that ends at t
        mine = [(when, ok) for when, active, ok in sim.rounds if when <= t and active == A]
        assert mine and not mine[-1][1], f"automatic failover at {t} without a failing round then"
        first = t
        for when, ok in reversed(mine):
            if ok:
                break
            first = when
        assert (t - first).total_seconds() >= cfg.breach_window, \
            f"failover at {t}: failing only since {first} (< {cfg.breach_window}s)"
        within = [u for u in automatic if t - timedelta(seconds=cfg.cap_window) < u <= t]
        assert len(within) <= cfg.cap_count, f"{len(within)} automatic failovers within {cfg.cap_window}s"


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=plans, story=ops)
def test_safety_rules_hold_for_any_story(cfg, story):
    sim = Checked(cfg, kubelet_lag=True)
    requests = 0
    for op in story:
        kind = op[0]
        if kind == "round":
            sim.sites[A].broken = not op[1]
            sim.round()
        elif kind == "reach":
            sim.sites[op[1]].reachable = op[2]
            continue  # nothing cycles: the world changed under the operator
        elif kind == "request":
            requests += 1
            sim.advance(1)
            sim.cycle(request=Request(f"r{requests}", op[1], accept_unfenced=op[2]))
        elif kind == "crash":
            sim.crash_after_action = True
            continue
        elif kind == "standby":
            sim.sites[B].broken = not op[1]
            continue
        elif kind == "wait":
            sim.advance(op[1])
            sim.cycle()
        elif kind in ("outage", "blackout"):
            sim.sites[A].broken = True
            sim.sites[A].reachable = kind == "outage"
            for _ in range(op[1]):
                sim.round()
                check_invariants(sim)
            sim.sites[A].reachable = True
            continue
        check_invariants(sim)
    # let the story settle: the sites answer again, and a few quiet rounds pass
    sim.sites[A].reachable = sim.sites[B].reachable = True
    sim.sites[B].broken = False
    for _ in range(3):
        sim.round()
        check_invariants(sim)
    state = sim.state
    if state.switchover is None:
        assert state.fence_pending is None, "a site that answers again is fenced at once"
    assert state.phase in machine.MONITORING + machine.DEGRADED + machine.FAILED_OVER + \
        machine.FAILING_OVER + machine.FAILING_BACK


@hsettings(max_examples=150, deadline=None)
@given(crash_at=st.integers(0, 3), window=st.sampled_from([20, 60]))
def test_a_restart_in_the_middle_of_a_failover_completes_it_exactly_once(crash_at, window):
    sim = Checked(settings(breach_window=float(window)))
    sim.sites[A].broken = True
    steps = 0
    while sim.state.phase != "FailingOver" and steps < 20:
        if steps == window // 10:
            sim.crash_after_action = crash_at == 0
        sim.round()
        steps += 1
    # whatever step it stopped at, the next cycles resume from the status
    for _ in range(crash_at):
        sim.crash_after_action = True
        sim.cycle()
    for _ in range(3):
        sim.cycle()
    state = sim.state
    assert state.phase == "FailedOver"
    kinds = [type(a).__name__ for _, a in sim.log]
    assert kinds.count("Fence") >= 1 and kinds.count("SwitchTraffic") >= 1
    # every action is the next in the order or a repeat of the last (only after a crash)
    order = ["Fence", "Promote", "SwitchTraffic"]
    deduped = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert deduped == order
    assert len(kinds) - len(deduped) <= crash_at + (1 if crash_at == 0 else 0)
    completions = [h for h in state.history if h.reason == "FailoverComplete"]
    assert len(completions) == 1 and [s for s in sim.starts if s[1] == "Failover"] and len(sim.starts) == 1
    assert isinstance(sim.log[0][1], Fence) and isinstance(sim.log[-1][1], SwitchTraffic)
    assert any(isinstance(a, Promote) for _, a in sim.log)
