"""The machine's state to and from a FailoverPlan's status (camelCase, as the CRD holds it).

Times carry milliseconds: an achieved RTO is worth more than whole seconds.
``checks[].lastProbeTime`` and ``checks[].latencyMs`` are *volatile*: they are written
along with any other change but never cause a write on their own (see :func:`significant`).
"""
from __future__ import annotations

import copy
from datetime import datetime, timezone

from lifeline.clock import parse_time

from .machine import CheckState, Record, RequestRecord, Settings, State, Switchover

VOLATILE_CHECK_FIELDS = ("lastProbeTime", "latencyMs")


def stamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _compact(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


def to_status(state: State) -> dict:
    """The status fields the machine owns (conditions and observedGeneration are the planner's)."""
    sw = state.switchover
    return _compact({
        "phase": state.phase,
        "activeSite": state.active,
        "firstFailureTime": stamp(state.failing_since),
        "healthyStreak": state.healthy_streak or None,
        "recommendation": state.recommendation,
        "lastFailoverTime": stamp(state.last_failover),
        "fencedUnverified": True if state.fence_pending else None,
        "fencePending": state.fence_pending,
        "fencedReplicas": {site: dict(r) for site, r in sorted(state.fenced_replicas.items()) if r},
        "switchover": None if sw is None else _compact({
            "kind": sw.kind, "source": sw.source, "target": sw.target, "step": sw.step,
            "planned": sw.planned, "startedTime": stamp(sw.started),
            "firstFailureTime": stamp(sw.first_failure), "switchedTime": stamp(sw.switched),
            "acceptUnfenced": sw.accept_unfenced or None, "fencedUnverified": sw.fenced_unverified or None,
            "replicas": dict(sw.replicas), "message": sw.message,
        }),
        "recentFailovers": [stamp(t) for t in state.failovers],
        "lastRequest": None if state.last_request is None else {
            "id": state.last_request.id, "verb": state.last_request.verb, "outcome": state.last_request.outcome,
            "message": state.last_request.message, "time": stamp(state.last_request.time),
        },
        "failbackObservedGeneration": state.failback_generation,
        "checks": [_compact({
            "name": c.name, "site": c.site, "healthy": c.healthy, "reason": c.reason,
            "consecutiveFailures": c.consecutive_failures, "firstFailureTime": stamp(c.first_failure),
            "lastProbeTime": stamp(c.last_probe), "latencyMs": _rounded(c.latency_ms, 1), "message": c.message,
        }) for c in state.checks],
        "history": [_compact({
            "phase": r.phase, "time": stamp(r.time), "activeSite": r.active, "reason": r.reason,
            "message": r.message, "achievedRTOSeconds": _rounded(r.achieved_rto),
            "detectionSeconds": _rounded(r.detection), "switchoverSeconds": _rounded(r.switchover),
        }) for r in state.history],
    })


def from_status(status: dict | None, settings: Settings) -> State:
    """The state a status holds; a fresh one (Monitoring, primary active) when it holds none."""
    status = status or {}
    if not status.get("phase"):
        base = State.initial(settings)
        return base
    sw = status.get("switchover")
    request = status.get("lastRequest")
    return State(
        phase=status["phase"],
        active=status.get("activeSite") or settings.primary,
        checks=tuple(CheckState(
            site=c.get("site", ""), name=c.get("name", ""), healthy=c.get("healthy"), reason=c.get("reason"),
            consecutive_failures=int(c.get("consecutiveFailures") or 0),
            first_failure=parse_time(c.get("firstFailureTime")), last_probe=parse_time(c.get("lastProbeTime")),
            latency_ms=c.get("latencyMs"), message=c.get("message"),
        ) for c in status.get("checks") or []),
        failing_since=parse_time(status.get("firstFailureTime")),
        healthy_streak=int(status.get("healthyStreak") or 0),
        recommendation=status.get("recommendation"),
        switchover=None if not sw else Switchover(
            kind=sw["kind"], source=sw["source"], target=sw["target"], step=sw["step"],
            started=parse_time(sw["startedTime"]), planned=bool(sw.get("planned")),
            first_failure=parse_time(sw.get("firstFailureTime")), switched=parse_time(sw.get("switchedTime")),
            accept_unfenced=bool(sw.get("acceptUnfenced")), fenced_unverified=bool(sw.get("fencedUnverified")),
            replicas=dict(sw.get("replicas") or {}), message=sw.get("message"),
        ),
        fence_pending=status.get("fencePending"),
        fenced_replicas={site: dict(r) for site, r in (status.get("fencedReplicas") or {}).items()},
        failovers=tuple(parse_time(t) for t in status.get("recentFailovers") or []),
        last_failover=parse_time(status.get("lastFailoverTime")),
        last_request=None if not request else RequestRecord(
            id=request["id"], verb=request["verb"], outcome=request["outcome"],
            message=request.get("message", ""), time=parse_time(request["time"]),
        ),
        failback_generation=status.get("failbackObservedGeneration"),
        history=tuple(Record(
            phase=r["phase"], time=parse_time(r["time"]), active=r.get("activeSite", ""), reason=r.get("reason", ""),
            message=r.get("message"), achieved_rto=r.get("achievedRTOSeconds"),
            detection=r.get("detectionSeconds"), switchover=r.get("switchoverSeconds"),
        ) for r in status.get("history") or []),
    )


def significant(status: dict) -> dict:
    """``status`` without the volatile fields, for deciding whether anything worth a write changed."""
    out = copy.deepcopy(status)
    for check in out.get("checks") or []:
        for key in VOLATILE_CHECK_FIELDS:
            check.pop(key, None)
    return out
