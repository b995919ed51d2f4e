"""The readiness planner: status and Events from a spec, and silence when nothing changed."""
from __future__ import annotations

import copy

from lifeline.api import BY_KIND
from lifeline.planning import conditions, readiness

INFO = BY_KIND["BackupPolicy"]
T0, T1 = "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"
GOOD = {
    "apiVersion": "dr.lifeline.io/v1alpha1",
    "kind": "BackupPolicy",
    "metadata": {"name": "pacs", "namespace": "pacs", "generation": 1},
    "spec": {
        "tier": "B",
        "source": {"pvc": {"claimName": "pacs-images"}},
        "schedule": {"full": "0 1 * * *"},
        "destinations": [{"name": "nfs", "filesystem": {"claimName": "backup-nfs"}}],
        "encryption": {"keyRef": "vault-transit://lifeline-pacs"},
    },
}


def apply(body: dict, patch: dict | None) -> dict:
    body = copy.deepcopy(body)
    if patch:
        body.setdefault("status", {}).update(patch)
    return body


def test_a_new_valid_object_gets_ready_true_and_its_generation():
    decision = readiness.plan(INFO, GOOD, T0)
    assert decision.valid and decision.event is None
    assert decision.patch == {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "SpecValid", "message": "BackupPolicy spec is valid",
             "observedGeneration": 1, "lastTransitionTime": T0}
        ],
    }


def test_nothing_changed_means_nothing_to_write():
    once = apply(GOOD, readiness.plan(INFO, GOOD, T0).patch)
    again = readiness.plan(INFO, once, T1)
    assert again.patch is None and again.event is None


def test_an_invalid_spec_gets_ready_false_with_the_reason_and_one_warning_event():
    bad = copy.deepcopy(GOOD)
    bad["spec"]["tier"] = "D"
    decision = readiness.plan(INFO, bad, T0)
    ready = conditions.find(decision.patch["conditions"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"] == "spec.tier: Input should be 'A', 'B' or 'C' (got 'D')"
    assert decision.event == readiness.EventPlan("Warning", "InvalidSpec", ready["message"])
    # the same bad spec seen again: no second write, no second Event
    assert readiness.plan(INFO, apply(bad, decision.patch), T1).patch is None


def test_a_new_generation_is_observed_even_when_readiness_stays_the_same():
    stored = apply(GOOD, readiness.plan(INFO, GOOD, T0).patch)
    stored["metadata"]["generation"] = 2
    decision = readiness.plan(INFO, stored, T1)
    assert decision.patch["observedGeneration"] == 2
    ready = conditions.find(decision.patch["conditions"], "Ready")
    assert ready["lastTransitionTime"] == T0, "status did not flip, so the transition time stays"
    assert ready["observedGeneration"] == 2
    assert decision.event is None


def test_fixing_a_spec_flips_ready_and_says_so():
    bad = copy.deepcopy(GOOD)
    bad["spec"]["destinations"] = []
    stored = apply(bad, readiness.plan(INFO, bad, T0).patch)
    stored["spec"] = copy.deepcopy(GOOD["spec"])
    stored["metadata"]["generation"] = 2
    decision = readiness.plan(INFO, stored, T1)
    ready = conditions.find(decision.patch["conditions"], "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", T1)
    assert decision.event == readiness.EventPlan("Normal", "SpecValid", "BackupPolicy spec is valid again")


def test_other_conditions_are_kept_as_they_are():
    other = {"type": "RPOMet", "status": "False", "reason": "Late", "message": "", "lastTransitionTime": T0}
    stored = apply(GOOD, {"conditions": [other]})
    decision = readiness.plan(INFO, stored, T1)
    assert decision.patch["conditions"][0] == other
    assert [c["type"] for c in decision.patch["conditions"]] == ["RPOMet", "Ready"]


def test_a_missing_spec_is_reported_not_crashed_on():
    body = {k: v for k, v in GOOD.items() if k != "spec"}
    decision = readiness.plan(INFO, body, T0)
    assert conditions.find(decision.patch["conditions"], "Ready")["message"] == "spec: is required and must be a mapping"


def test_long_messages_are_cut_to_a_size_the_api_server_takes():
    cond = conditions.make("Ready", False, "InvalidSpec", "x" * 10_000, 1)
    assert len(cond["message"]) == conditions.MAX_MESSAGE
