"""A FailoverPlan that is not fine is not Current to Flux: Ready follows the sites and the switchover.

kstatus ignores Ready and reads Stalled/Reconciling (which conditions.merge derives from Ready).
Sites a person must fix make the plan Failed, a switchover under way and a cluster that does not
answer make it InProgress; Argo CD's Lua agrees. Planner level: the status planner, pure.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import yaml

from lifeline.api import BY_KIND
from lifeline.api.failoverplan import FailoverPlanSpec
from lifeline.failover.machine import FAILING_BACK, FAILING_OVER, Settings, SiteView, State
from lifeline.planning import conditions
from lifeline.failover.status import plan
from tests.failover.machine_helpers import T0
from tests.failover.test_planner import apply  # RFC 7386, as the API server applies a status patch
from tests.gitops.argo import health
from tests.gitops.kstatus import CURRENT, FAILED, IN_PROGRESS, compute, problems

INFO = BY_KIND["FailoverPlan"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "failoverplan-monitoring.yaml"
FINE = {"site-a": SiteView(reachable=True, resolved=True, ready=True), "site-b": SiteView(reachable=True)}
TYPO = {**FINE, "site-b": SiteView(reachable=True, resolved=False, reason="WorkloadNotFound",
                                   message="site site-b: not found in this cluster: StatefulSet hospital/prometheus-x")}
DARK = {**FINE, "site-b": SiteView(reachable=False, resolved=False, reason="ClusterUnreachable",
                                   message="site site-b: the API did not answer")}


def new_plan() -> tuple[dict, FailoverPlanSpec, State]:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"].update(namespace="hospital", generation=1, uid="u-1")
    spec = FailoverPlanSpec.model_validate(doc["spec"])
    return doc, spec, State.initial(Settings.from_spec(spec))


def round_(doc: dict, spec, state, sites, minutes: int = 0):
    """One planner round written back into ``doc``; the plan result."""
    result = plan(INFO, doc, T0 + timedelta(minutes=minutes), spec=spec, state=state, sites=sites)
    if result.patch:
        doc["status"] = apply(doc.get("status"), result.patch)
    return result


def cond(doc: dict, type_: str) -> dict | None:
    return conditions.find(doc["status"]["conditions"], type_)


def test_sites_a_person_must_fix_stall_the_plan_until_fixed():
    doc, spec, state = new_plan()
    first = round_(doc, spec, state, TYPO)
    ready = cond(doc, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "WorkloadNotFound")
    assert "prometheus-x" in ready["message"]
    assert cond(doc, "Stalled")["status"] == "True" and cond(doc, "Reconciling") is None
    assert compute(doc)[0] == FAILED and "prometheus-x" in compute(doc)[1] and problems(doc) == []
    assert health("FailoverPlan", doc)["status"] == "Degraded"
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "WorkloadNotFound")]

    again = round_(doc, spec, state, TYPO, minutes=1)
    assert (again.patch, again.events) == (None, ()), "a steady broken world writes nothing and says nothing"

    fixed = round_(doc, spec, state, FINE, minutes=2)
    assert (cond(doc, "Ready")["status"], cond(doc, "Ready")["reason"]) == ("True", "SpecValid")
    assert cond(doc, "Stalled")["status"] == "False"
    assert compute(doc)[0] == CURRENT and problems(doc) == []
    assert [(e.type, e.reason) for e in fixed.events] == [("Normal", "Resolved")], "no 'spec valid again'"
    assert health("FailoverPlan", doc) == {"status": "Healthy", "message": "Monitoring: serving from site-a"}


def test_a_switchover_under_way_is_in_progress_for_flux_and_argo():
    doc, spec, state = new_plan()
    round_(doc, spec, state, FINE)
    for phase in (FAILING_OVER, FAILING_BACK):
        switching = replace(state, phase=phase)
        round_(doc, spec, switching, FINE, minutes=1)
        ready = cond(doc, "Ready")
        assert (ready["status"], ready["reason"]) == ("Unknown", phase)
        assert cond(doc, "Reconciling")["status"] == "True" and cond(doc, "Stalled") is None
        assert compute(doc)[0] == IN_PROGRESS and problems(doc) == []
        assert health("FailoverPlan", doc)["status"] == "Progressing"
        assert round_(doc, spec, switching, FINE, minutes=2).patch is None, "a steady switchover writes nothing"
    round_(doc, spec, replace(state, phase="FailedOver", active="site-b"), FINE, minutes=3)
    assert compute(doc)[0] == CURRENT and cond(doc, "Reconciling")["status"] == "False"


def test_a_cluster_that_does_not_answer_is_retried_not_stalled():
    doc, spec, state = new_plan()
    round_(doc, spec, state, DARK)
    ready = cond(doc, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ClusterUnreachable")
    assert cond(doc, "Reconciling")["status"] == "True" and cond(doc, "Stalled") is None
    assert compute(doc)[0] == IN_PROGRESS and problems(doc) == []
    assert health("FailoverPlan", doc)["status"] == "Progressing"
    # the active site failing its checks is still Degraded to Argo CD, whatever Ready says
    degraded = copy.deepcopy(doc)
    degraded["status"]["phase"] = "Degraded"
    assert health("FailoverPlan", degraded) == {"status": "Degraded",
                                                "message": "the active site site-a fails its health checks"}


def test_a_broken_site_outranks_a_switchover_in_ready():
    doc, spec, state = new_plan()
    round_(doc, spec, replace(state, phase=FAILING_OVER), TYPO)
    assert (cond(doc, "Ready")["reason"], cond(doc, "Stalled")["status"]) == ("WorkloadNotFound", "True")
