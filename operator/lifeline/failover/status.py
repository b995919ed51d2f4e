"""A FailoverPlan's whole status: readiness, the state machine's state, and the failover conditions.

Pure: the object as stored, the time, the machine's new state and what is known of
the sites in; the merge patch to write (or None when nothing worth a write changed)
and the Events to post out. The FailoverPlan controller is the only writer of this
status, so the readiness plan (Ready and observedGeneration, an Event on an invalid
spec) is folded in here rather than left to the generic readiness handler.

Conditions besides Ready:

- ``RTOAchievable``: breach window + one check interval + the switchover estimate fit
  in the RTO (the arithmetic is in the message);
- ``SitesResolved``: both sites' APIs answer and every workload exists (reasons
  ``KubeconfigSecretMissing``, ``KubeconfigInvalid``, ``ClusterUnreachable``,
  ``WorkloadNotFound``, ``Forbidden``);
- ``HealthChecksValid``: no check got an answer that means the check itself is wrong
  (reasons ``InvalidResponse``, ``QueryError``, ``NotFound``);
- ``FailoverRecommended``: a breached failover waits for ``lifeline failover approve``
  (reasons ``ManualMode``, ``CapReached``, ``StandbyUnavailable``) or a switchover
  step is blocked (``FencingBlocked``).

``Ready`` is more than a valid spec here (:func:`held_ready`): sites a person must fix
(a missing or bad kubeconfig, a workload not found, Forbidden) make it False with that
reason, so kstatus (Flux) sees ``Stalled``; a switchover under way makes it Unknown and an
unreachable cluster False for a transient reason, both ``Reconciling`` (Flux waits).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from lifeline.api import KindInfo
from lifeline.api.common import TIER_DEFAULTS, format_duration
from lifeline.api.failoverplan import FailoverPlanSpec
from lifeline.clock import rfc3339
from lifeline.objects import merge_patch
from lifeline.planning import conditions, readiness
from lifeline.planning.readiness import EventPlan

from . import codec
from .machine import FAILING_BACK, FAILING_OVER, FENCE, Event, SiteView, State
from .probes import MISCONFIGURED

READY = conditions.READY
RTO_ACHIEVABLE, SITES_RESOLVED, CHECKS_VALID, RECOMMENDED = (
    "RTOAchievable", "SitesResolved", "HealthChecksValid", "FailoverRecommended")
# Conditions whose turning False (or changing message while False) is worth a Warning Event.
ANNOUNCED = (RTO_ACHIEVABLE, SITES_RESOLVED, CHECKS_VALID)
MACHINE_KEYS = (
    "phase", "activeSite", "firstFailureTime", "healthyStreak", "recommendation", "lastFailoverTime",
    "fencedUnverified", "fencePending", "fencedReplicas", "switchover", "recentFailovers", "lastRequest",
    "failbackObservedGeneration", "checks", "history",
)


@dataclass(frozen=True)
class FailoverStatusPlan:
    patch: dict | None  # merge patch for the status subresource; None: write nothing
    events: tuple[EventPlan, ...]
    valid: bool


def plan(info: KindInfo, body: dict, now: datetime, *, spec: FailoverPlanSpec | None = None,
         state: State | None = None, sites: Mapping[str, SiteView] | None = None,
         machine_events: Iterable[Event] = ()) -> FailoverStatusPlan:
    """The status ``body`` should have; ``spec``/``state`` None when the spec is invalid (readiness only)."""
    when = rfc3339(now)
    status = body.get("status") or {}
    name = (body.get("metadata") or {}).get("name", "")
    generation = (body.get("metadata") or {}).get("generation")
    ready = readiness.plan(info, body, when)
    current_conditions = status.get("conditions") or []
    old_ready = conditions.find(current_conditions, READY) or {}
    # "valid again" only after an invalid spec: a Ready held False by the world has its own Events
    events: list[EventPlan] = [ready.event] if ready.event and (
        ready.event.reason != "SpecValid" or old_ready.get("reason") == "InvalidSpec") else []

    wanted_conditions = ready.patch["conditions"] if ready.patch else list(current_conditions)
    desired: dict = {"observedGeneration": generation}
    if ready.valid and spec is not None and state is not None:
        desired.update(codec.to_status(state))
        found = failover_conditions(spec, state, sites, generation, name)
        held = held_ready(state, next((c for c in found if c["type"] == SITES_RESOLVED), None), generation)
        if held is not None:  # merged onto what is stored, so its transition time holds across rounds
            wanted_conditions = conditions.merge(current_conditions, held, when)
        for cond in found:
            old = conditions.find(wanted_conditions, cond["type"])
            wanted_conditions = conditions.merge(wanted_conditions, cond, when)
            event = _condition_event(old, cond)
            if event is not None:
                events.append(event)
        events += machine_events
        owned = MACHINE_KEYS
    else:
        owned = ()
        desired.update({k: status[k] for k in MACHINE_KEYS if k in status})
    desired["conditions"] = wanted_conditions

    patch = {}
    for key, value in desired.items():
        if codec.significant({key: status.get(key)}) != codec.significant({key: value}):
            patch[key] = merge_patch(status.get(key), value)
    for key in owned:
        if key in status and key not in desired:
            patch[key] = None
    if patch and owned and "checks" in desired:
        patch["checks"] = desired["checks"]  # refresh the volatile fields along with a real change
    return FailoverStatusPlan(patch=patch or None, events=tuple(events), valid=ready.valid)


def held_ready(state: State, sites: dict | None, generation: int | None) -> dict | None:
    """Ready for a valid plan that is not Current: None when SpecValid tells the whole story.

    Sites a person must fix come first (Ready False with SitesResolved's reason: Stalled), then a
    switchover under way (Unknown: Reconciling), then a cluster not answering (False for a
    transient reason: Reconciling, the plan retries by itself every round).
    """
    broken = sites is not None and sites["status"] == "False"
    if broken and sites["reason"] not in conditions.TRANSIENT_REASONS:
        return conditions.make(READY, False, sites["reason"], f"SitesResolved: {sites['message']}", generation)
    if state.phase in (FAILING_OVER, FAILING_BACK):
        return conditions.make(READY, None, state.phase,
                               f"{state.phase}: switching traffic away from {state.active}", generation)
    if broken:
        return conditions.make(READY, False, sites["reason"], f"SitesResolved: {sites['message']}", generation)
    return None


def failover_conditions(spec: FailoverPlanSpec, state: State, sites: Mapping[str, SiteView] | None,
                        generation: int | None, name: str) -> list[dict]:
    out = [rto_condition(spec, generation)]
    if sites:
        out.append(sites_condition(spec, sites, generation))
    out.append(checks_condition(state, generation))
    out.append(recommended_condition(state, generation, name))
    return out


def rto_condition(spec: FailoverPlanSpec, generation: int | None) -> dict:
    rto = spec.rto_seconds
    window, interval, switch = (spec.breach_window_seconds, spec.longest_interval_seconds,
                                spec.switchover_estimate_seconds)
    total = spec.worst_case_recovery_seconds
    source = "spec.objectives.rto" if spec.objectives.rto else f"tier {spec.tier}'s default"
    derived = "" if spec.breach_window else " (derived: breachWindow not set)"
    sums = (f"breach window {format_duration(window)}{derived} + check interval {format_duration(interval)} "
            f"+ switchover estimate {format_duration(switch)} = {format_duration(total)}")
    if total <= rto:
        return conditions.make(RTO_ACHIEVABLE, True, "WithinRTO",
                               f"{sums} <= RTO {format_duration(rto)} ({source})", generation)
    return conditions.make(
        RTO_ACHIEVABLE, False, "ExceedsRTO",
        f"{sums} > RTO {format_duration(rto)} ({source}, tier {spec.tier} default "
        f"{TIER_DEFAULTS[spec.tier].rto}); shorten breachWindow, the check intervals or switchoverEstimate, "
        f"or relax objectives.rto", generation)


def sites_condition(spec: FailoverPlanSpec, sites: Mapping[str, SiteView], generation: int | None) -> dict:
    problems = [(v.reason, v.message) for s in (spec.primary, spec.standby)
                if (v := sites.get(s.name)) is not None and not (v.reachable and v.resolved)]
    if problems:
        return conditions.make(SITES_RESOLVED, False, problems[0][0], "; ".join(m for _, m in problems), generation)
    counts = ", ".join(f"{s.name} ({len(s.workloads)})" for s in (spec.primary, spec.standby))
    return conditions.make(SITES_RESOLVED, True, "Resolved", f"every workload found: {counts}", generation)


def checks_condition(state: State, generation: int | None) -> dict:
    wrong = [c for c in state.checks if c.reason in MISCONFIGURED]
    if wrong:
        message = "; ".join(f"check {c.name} of site {c.site}: {c.message or c.reason}" for c in wrong)
        return conditions.make(CHECKS_VALID, False, wrong[0].reason, message, generation)
    return conditions.make(CHECKS_VALID, True, "NoInvalidAnswers",
                           "no check got an answer that means the check itself is wrong", generation)


def recommended_condition(state: State, generation: int | None, name: str) -> dict:
    sw = state.switchover
    if sw is not None and sw.step == FENCE and sw.message:
        return conditions.make(RECOMMENDED, True, "FencingBlocked", sw.message, generation)
    if state.recommendation:
        hint = f"run `lifeline failover approve {name}` to fail over to the standby"
        why = {
            "ManualMode": "the active site breached its window; the plan is in Manual mode",
            "CapReached": "the active site breached its window, but the cap on automatic failovers is reached",
            "StandbyUnavailable": "the active site breached its window, but the standby's API or workloads "
                                  "are not available (see SitesResolved)",
        }.get(state.recommendation, state.recommendation)
        return conditions.make(RECOMMENDED, True, state.recommendation, f"{why}; {hint}", generation)
    return conditions.make(RECOMMENDED, False, "NoBreach", "no failover is waiting for approval", generation)


def _condition_event(old: dict | None, new: dict) -> EventPlan | None:
    if new["type"] not in ANNOUNCED:
        return None
    if new["status"] == "False" and (old is None or old.get("status") != "False"
                                     or old.get("message") != new["message"]):
        return EventPlan("Warning", new["reason"], new["message"])
    if new["status"] == "True" and old is not None and old.get("status") == "False":
        return EventPlan("Normal", new["reason"], f"{new['type']}: {new['message']}")
    return None
