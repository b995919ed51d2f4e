"""The state machine, example by example, through the status it persists."""
from __future__ import annotations

from datetime import timedelta

from lifeline.failover import machine
from lifeline.failover.machine import (
    CheckResult, Fence, Inputs, Outcome, Promote, Request, State, SwitchTraffic, WorkloadSpec,
)

from .machine_helpers import A, B, T0, Sim, settings


def reasons(sim: Sim) -> list[str]:
    return [e.reason for e in sim.events]


def test_a_breach_fails_over_only_when_the_window_has_passed_then_stays():
    sim = Sim(settings())
    sim.round()
    assert sim.state.phase == "Monitoring"
    sim.sites[A].broken = True
    sim.round()  # t=20: first failure
    assert sim.state.phase == "Degraded" and sim.state.failing_since == T0 + timedelta(seconds=20)
    for _ in range(5):  # t=30..70: 50 s of failing
        sim.round()
        assert sim.state.phase == "Degraded"
    assert sim.log == []
    sim.round()  # t=80: 60 s
    state = sim.state
    assert state.phase == "FailedOver" and state.active == B
    assert [type(a).__name__ for _, a in sim.log] == ["Fence", "Promote", "SwitchTraffic"]
    assert sim.sites[A].replicas == 0 and sim.sites[B].replicas == 2 and sim.traffic == B
    last = state.history[-1]
    assert (last.achieved_rto, last.detection, last.switchover) == (60.0, 60.0, 0.0)
    assert reasons(sim) == ["SiteDegraded", "FailingOver", "Fenced", "Promoted", "TrafficSwitched",
                            "FailoverComplete"]
    # the primary comes back: nothing moves without a request
    sim.sites[A].broken = False
    for _ in range(10):
        sim.round()
    assert sim.state.active == B and sim.traffic == B and len(sim.log) == 3


def test_one_healthy_round_restarts_the_breach_clock_and_two_end_degraded():
    sim = Sim(settings())
    sim.sites[A].broken = True
    for _ in range(5):
        sim.round()  # t=10..50
    sim.sites[A].broken = False
    sim.round()  # t=60: healthy once
    assert sim.state.phase == "Degraded" and sim.state.failing_since is None and sim.state.healthy_streak == 1
    sim.sites[A].broken = True
    sim.round()  # t=70: a new streak starts here
    assert sim.state.failing_since == T0 + timedelta(seconds=70)
    for _ in range(5):
        sim.round()  # t=80..120: 50 s
    assert sim.state.phase == "Degraded" and sim.log == []
    sim.sites[A].broken = False
    sim.round()
    sim.round()
    assert sim.state.phase == "Monitoring" and reasons(sim)[-1] == "SiteRecovered"


def test_weights_decide_whether_a_site_is_failing():
    cfg = settings(checks=(machine.CheckSpec(A, "ready", 3), machine.CheckSpec(A, "query", 1),
                           machine.CheckSpec(B, "ready", 1)))
    sim = Sim(cfg)
    sim.advance(10)
    sim.cycle([CheckResult(A, "ready", True, sim.now), CheckResult(A, "query", False, sim.now)])
    assert sim.state.phase == "Monitoring", "a weight-1 check failing beside a weight-3 one is not enough"
    sim.advance(10)
    sim.cycle([CheckResult(A, "ready", False, sim.now), CheckResult(A, "query", True, sim.now)])
    assert sim.state.phase == "Degraded"


def test_manual_mode_recommends_and_waits_for_approval():
    sim = Sim(settings(mode="Manual"))
    sim.sites[A].broken = True
    for _ in range(10):
        sim.round()
    state = sim.state
    assert state.phase == "Degraded" and state.recommendation == machine.MANUAL_MODE and sim.log == []
    assert reasons(sim).count("FailoverRecommended") == 1, "recommended once, not every round"
    sim.advance(5)
    sim.cycle(request=Request("r1", "approve"))
    state = sim.state
    assert state.phase == "FailedOver" and state.last_request.outcome == "Accepted"
    assert state.history[-1].achieved_rto == 95.0  # first failure t=10, verified t=105
    sim.cycle(request=Request("r1", "approve"))  # the same request again: already handled
    assert reasons(sim).count("RequestAccepted") == 1


def test_approve_without_a_recommendation_is_rejected():
    sim = Sim(settings(mode="Manual"))
    sim.round()
    sim.cycle(request=Request("r1", "approve"))
    assert sim.state.last_request.outcome == "Rejected" and sim.log == []


def test_the_cap_stops_a_second_automatic_failover_within_the_window():
    sim = Sim(settings(cap_count=1, cap_window=3600.0))
    sim.sites[A].broken = True
    for _ in range(7):
        sim.round()
    assert sim.state.phase == "FailedOver"
    sim.sites[A].broken = False
    sim.cycle(request=Request("back", "back"))
    assert sim.state.phase == "Monitoring" and sim.traffic == A
    sim.sites[A].broken = True
    for _ in range(10):
        sim.round()
    state = sim.state
    assert state.phase == "Degraded" and state.recommendation == machine.CAP_REACHED and sim.traffic == A
    # an hour after the first failover the cap frees up again
    sim.advance(3600)
    sim.round()
    assert sim.state.phase == "FailedOver"


def test_an_unreachable_primary_is_promoted_past_in_automatic_mode_and_fenced_when_it_returns():
    sim = Sim(settings())
    sim.sites[A].broken = True
    sim.sites[A].reachable = False
    for _ in range(7):
        sim.round()
    state = sim.state
    assert state.phase == "FailedOver" and state.fence_pending == A
    assert sim.sites[A].replicas == 2, "it could not be reached: still running over there"
    assert "FencingUnverified" in reasons(sim)
    sim.round()
    assert sim.state.fence_pending == A
    sim.sites[A].reachable = True
    sim.round()
    assert sim.state.fence_pending is None and sim.sites[A].replicas == 0
    assert reasons(sim)[-1] == "FencedOnReturn"
    # its replica count was remembered, so a failback restores it
    sim.sites[A].broken = False
    sim.cycle(request=Request("back", "back"))
    assert sim.state.phase == "Monitoring" and sim.sites[A].replicas == 2 and sim.sites[B].replicas == 0


def test_manual_mode_never_promotes_unfenced_without_explicit_acceptance():
    sim = Sim(settings(mode="Manual"))
    sim.sites[A].broken = True
    sim.sites[A].reachable = False
    for _ in range(7):
        sim.round()
    sim.cycle(request=Request("r1", "approve"))
    state = sim.state
    assert state.phase == "FailingOver" and state.switchover.step == "Fence" and sim.sites[B].replicas == 0
    assert "FencingBlocked" in reasons(sim)
    sim.cycle(request=Request("r2", "approve", accept_unfenced=True))
    assert sim.state.phase == "FailedOver" and sim.state.fence_pending == A


def test_a_planned_switch_aborts_cleanly_when_the_source_cannot_be_fenced():
    sim = Sim(settings())
    sim.round()
    sim.sites[A].reachable = False
    sim.cycle(request=Request("s", "switch"))
    state = sim.state
    assert state.phase == "Monitoring" and state.active == A and state.switchover is None
    assert sim.sites[B].replicas == 0 and "SwitchoverAborted" in reasons(sim)


def test_switch_and_back_are_planned_and_do_not_count_against_the_cap():
    sim = Sim(settings(cap_count=1))
    sim.round()
    sim.cycle(request=Request("s", "switch"))
    assert sim.state.phase == "FailedOver" and sim.traffic == B
    assert sim.state.history[-1].achieved_rto is None and sim.state.failovers == ()
    sim.cycle(request=Request("b", "back"))
    assert sim.state.phase == "Monitoring" and sim.traffic == A
    assert [type(a).__name__ + ":" + a.site for _, a in sim.log] == [
        "Fence:site-a", "Promote:site-b", "SwitchTraffic:site-b", "Fence:site-b", "Promote:site-a",
        "SwitchTraffic:site-a"]


def test_back_is_rejected_when_the_primary_is_active():
    sim = Sim(settings())
    sim.round()
    sim.cycle(request=Request("b", "back"))
    assert sim.state.last_request.outcome == "Rejected"


def test_spec_failback_acts_once_per_generation():
    sim = Sim(settings())
    sim.cycle(failback_generation=3)  # set while Monitoring: nothing to do, but consumed
    assert sim.state.failback_generation == 3 and sim.log == []
    sim.sites[A].broken = True
    for _ in range(7):
        sim.round()
    assert sim.state.phase == "FailedOver"
    sim.cycle(failback_generation=3)  # still generation 3: no automatic failback
    assert sim.state.phase == "FailedOver"
    sim.sites[A].broken = False
    sim.cycle(failback_generation=4)
    assert sim.state.phase == "Monitoring"


def test_verify_waits_for_the_target_to_pass_its_checks():
    sim = Sim(settings())
    sim.sites[A].broken = True
    sim.sites[B].broken = True  # the standby starts but its checks fail
    for _ in range(7):
        sim.round()
    state = sim.state
    assert state.phase == "FailingOver" and state.switchover.step == "Verify" and sim.traffic == B
    sim.sites[B].broken = False
    sim.advance(30)
    sim.cycle([CheckResult(B, "ready", True, sim.now)])
    assert sim.state.phase == "FailedOver" and sim.state.history[-1].achieved_rto == 90.0


def test_a_promotion_error_is_retried_without_refencing():
    cfg = settings()
    state = State.initial(cfg)
    now = T0
    failing = [CheckResult(A, "ready", False, now), CheckResult(A, "query", False, now)]
    views = {A: machine.SiteView(True, replicas={"StatefulSet/prom-a": 3}), B: machine.SiteView(True)}
    d = machine.step(state, cfg, Inputs(now, tuple(failing), views))
    later = now + timedelta(seconds=60)
    failing = [CheckResult(A, "ready", False, later), CheckResult(A, "query", False, later)]
    d = machine.step(d.state, cfg, Inputs(later, tuple(failing), views))
    assert d.actions == (Fence(A, "ScaleToZero"),)
    d = machine.step(d.state, cfg, Inputs(later, (), views, outcome=Outcome(d.actions[0], True,
                                                                                replicas={"StatefulSet/prom-a": 3})))
    assert d.actions == (Promote(B, {"StatefulSet/prom-b": 3}),), "promoted to the primary's replica count"
    again = machine.step(d.state, cfg, Inputs(later, (), views, outcome=Outcome(d.actions[0], False, message="500")))
    assert again.actions == d.actions and again.state.switchover.message == "Promote: 500"
    # an outcome for a step that is over is ignored
    stale = machine.step(again.state, cfg, Inputs(later, (), views, outcome=Outcome(Fence(A, "ScaleToZero"), True)))
    assert stale.state == again.state


def test_target_replicas_prefer_the_spec_then_what_the_site_had():
    cfg = settings(workloads={A: (WorkloadSpec("StatefulSet", "prom-a"), WorkloadSpec("Deployment", "graf-a")),
                              B: (WorkloadSpec("StatefulSet", "prom-b", replicas=5),
                                  WorkloadSpec("Deployment", "graf-b"))})
    sim = Sim(cfg)
    sim.sites[A].broken = True
    for _ in range(7):
        sim.round()
    promote = next(a for _, a in sim.log if isinstance(a, Promote))
    assert promote.replicas == {"StatefulSet/prom-b": 5, "Deployment/graf-b": 1}


def test_the_status_round_trips_every_field():
    sim = Sim(settings(mode="Manual"))
    sim.sites[A].broken = True
    sim.sites[A].reachable = False
    for _ in range(7):
        sim.round()
    sim.cycle(request=Request("r2", "approve", accept_unfenced=True))
    state = sim.state
    from lifeline.failover import codec
    assert codec.from_status(codec.to_status(state), sim.cfg) == state
    assert state.fence_pending == A and state.last_request.verb == "approve"
    assert isinstance(sim.traffic, str) and isinstance(SwitchTraffic(B), SwitchTraffic)
