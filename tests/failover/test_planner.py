"""The FailoverPlan status planner: one writer, conditions with reasons, nothing written for nothing."""
from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import yaml

from lifeline.api import BY_KIND
from lifeline.api.failoverplan import FailoverPlanSpec, FailoverPlanStatus
from lifeline.failover import codec, machine
from lifeline.failover.machine import CheckResult, Inputs, Settings, SiteView, State
from lifeline.planning import conditions
from lifeline.failover.status import plan

from .machine_helpers import T0

INFO = BY_KIND["FailoverPlan"]


def apply(target, patch):
    """RFC 7386 JSON merge patch, as the API server applies the operator's status patch: maps merge,
    null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "failoverplan-monitoring.yaml"


def body(**spec_overrides) -> dict:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"].update(namespace="hospital", generation=1, resourceVersion="7", uid="u-1")
    doc["spec"].update(spec_overrides)
    return doc


def spec_of(doc: dict) -> FailoverPlanSpec:
    return FailoverPlanSpec.model_validate(doc["spec"])


def cond(status: dict, type_: str) -> dict:
    return conditions.find(status["conditions"], type_)


SITES = {"site-a": SiteView(reachable=True, resolved=True, ready=True),
         "site-b": SiteView(reachable=True, resolved=True)}


def first_plan(doc: dict, sites=SITES):
    spec = spec_of(doc)
    state = State.initial(Settings.from_spec(spec))
    return plan(INFO, doc, T0, spec=spec, state=state, sites=sites), spec, state


def test_a_new_plan_gets_readiness_the_machine_state_and_every_condition_in_one_patch():
    doc = body()
    result, spec, state = first_plan(doc)
    patch = result.patch
    assert patch["observedGeneration"] == 1 and patch["phase"] == "Monitoring" and patch["activeSite"] == "site-a"
    assert [c["name"] for c in patch["checks"]] == ["prometheus-ready", "prometheus-scraping", "prometheus-ready"]
    assert [(c["type"], c["status"], c["reason"]) for c in patch["conditions"]] == [
        ("Ready", "True", "SpecValid"), ("RTOAchievable", "True", "WithinRTO"), ("SitesResolved", "True", "Resolved"),
        ("HealthChecksValid", "True", "NoInvalidAnswers"), ("FailoverRecommended", "False", "NoBreach")]
    assert cond(patch, "RTOAchievable")["message"] == (
        "breach window 2m + check interval 10s + switchover estimate 1m = 3m10s <= RTO 5m (tier A's default)")
    FailoverPlanStatus.model_validate(patch)  # what is written fits the CRD's schema
    assert result.events == ()


def test_an_unchanged_status_and_volatile_only_changes_write_nothing():
    doc = body()
    result, spec, state = first_plan(doc)
    doc["status"] = result.patch
    again = plan(INFO, doc, T0 + timedelta(hours=1), spec=spec, state=state, sites=SITES)
    assert again.patch is None and again.events == ()
    # a new healthy probe only moves lastProbeTime and latency: not worth a write
    healthy = [CheckResult("site-a", "prometheus-ready", True, T0, "Healthy", "HTTP 200", 3.0),
               CheckResult("site-a", "prometheus-scraping", True, T0, "Healthy", "1 series", 4.0)]
    settings = Settings.from_spec(spec)
    d = machine.step(state, settings, Inputs(T0, tuple(healthy), SITES))
    doc["status"] = apply(doc["status"], plan(INFO, doc, T0, spec=spec, state=d.state, sites=SITES).patch)
    later = [CheckResult("site-a", "prometheus-ready", True, T0 + timedelta(seconds=10), "Healthy", "HTTP 200", 9.0),
             CheckResult("site-a", "prometheus-scraping", True, T0 + timedelta(seconds=10), "Healthy", "1 series", 1.0)]
    d2 = machine.step(codec.from_status(doc["status"], settings), settings, Inputs(T0, tuple(later), SITES))
    assert plan(INFO, doc, T0, spec=spec, state=d2.state, sites=SITES).patch is None
    # a failure is worth one, and the volatile fields ride along
    failed = [CheckResult("site-a", "prometheus-ready", False, T0 + timedelta(seconds=20), "UnexpectedStatus",
                          "HTTP 503 (expected 200)", 2.0)]
    d3 = machine.step(d2.state, settings, Inputs(T0, tuple(failed), SITES))
    patch = plan(INFO, doc, T0, spec=spec, state=d3.state, sites=SITES).patch
    assert patch["checks"][0]["consecutiveFailures"] == 1 and patch["checks"][0]["latencyMs"] == 2.0


def test_rto_arithmetic_and_the_derived_breach_window():
    assert spec_of(body(breachWindow=None)).breach_window_seconds == 180  # 300 - 60 - 10 leaves 230
    assert spec_of(body(breachWindow=None, objectives={"rto": "2m"})).breach_window_seconds == 50
    assert spec_of(body(breachWindow=None, tier="B")).breach_window_seconds == 180
    tight = body(breachWindow=None, objectives={"rto": "30s"})
    assert spec_of(tight).breach_window_seconds == 20, "never under two check intervals"
    result, _, _ = first_plan(tight)
    rto = cond(result.patch, "RTOAchievable")
    assert (rto["status"], rto["reason"]) == ("False", "ExceedsRTO")
    assert rto["message"].startswith("breach window 20s (derived: breachWindow not set) + check interval 10s + "
                                     "switchover estimate 1m = 1m30s > RTO 30s (spec.objectives.rto")
    assert [e.reason for e in result.events] == ["ExceedsRTO"]


def test_site_problems_name_the_site_and_what_to_do():
    sites = {"site-a": SiteView(reachable=True, resolved=False, reason="WorkloadNotFound",
                                message="site site-a: not found in this cluster: StatefulSet monitoring/prometheus-a"),
             "site-b": SiteView(reachable=False, resolved=False, reason="KubeconfigSecretMissing",
                                message="site site-b: create Secret hospital/site-b-kubeconfig")}
    result, _, _ = first_plan(body(), sites)
    c = cond(result.patch, "SitesResolved")
    assert (c["status"], c["reason"]) == ("False", "WorkloadNotFound")
    assert "prometheus-a" in c["message"] and "site-b-kubeconfig" in c["message"]
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "WorkloadNotFound")]


def test_an_invalid_spec_touches_only_readiness():
    doc = body()
    result, spec, state = first_plan(doc)
    doc["status"] = copy.deepcopy(result.patch)
    doc["metadata"]["generation"] = 2
    doc["spec"]["tier"] = "Z"
    invalid = plan(INFO, doc, T0)
    assert set(invalid.patch) == {"observedGeneration", "conditions"}
    assert (cond(invalid.patch, "Ready")["status"], invalid.events[0].reason) == ("False", "InvalidSpec")
    assert cond(invalid.patch, "RTOAchievable") == cond(doc["status"], "RTOAchievable")


def test_removed_machine_fields_are_deleted_by_the_merge_patch():
    doc = body()
    spec = spec_of(doc)
    settings = Settings.from_spec(spec)
    state = State.initial(settings)
    state = machine.step(state, settings, Inputs(T0, (CheckResult("site-a", "prometheus-ready", False, T0),
                                                      CheckResult("site-a", "prometheus-scraping", False, T0)),
                                                 SITES)).state
    doc["status"] = plan(INFO, doc, T0, spec=spec, state=state, sites=SITES).patch
    assert doc["status"]["firstFailureTime"] == "2026-11-23T10:00:00.000Z"
    ok = (CheckResult("site-a", "prometheus-ready", True, T0), CheckResult("site-a", "prometheus-scraping", True, T0))
    healed = machine.step(codec.from_status(doc["status"], settings), settings, Inputs(T0, ok, SITES)).state
    patch = plan(INFO, doc, T0, spec=spec, state=healed, sites=SITES).patch
    assert patch["firstFailureTime"] is None and patch["healthyStreak"] == 1


def test_the_merge_patch_removes_what_the_new_state_no_longer_has():
    from lifeline.failover.status import merge_patch

    old = {"fencedReplicas": {"site-a": {"StatefulSet/p": 2}}, "switchover": {"step": "Fence", "message": "x"}}
    new = {"fencedReplicas": {"site-b": {"StatefulSet/q": 1}}, "switchover": {"step": "Promote"}}
    patch = {k: merge_patch(old[k], v) for k, v in new.items()}
    assert patch == {"fencedReplicas": {"site-a": None, "site-b": {"StatefulSet/q": 1}},
                     "switchover": {"step": "Promote", "message": None}}
    assert apply(old, patch) == new
