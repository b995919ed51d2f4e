"""The kstatus checker itself, on hand-made objects (so the tests on the cluster can trust it)."""
from __future__ import annotations

from lifeline.planning import conditions

from .kstatus import CURRENT, FAILED, IN_PROGRESS, TERMINATING, compute, problems
from .samples import INVALID, READY, cond, obj


def test_the_rules_in_order():
    assert compute(obj("BackupPolicy", READY))[0] == CURRENT
    assert compute(obj("BackupPolicy", *INVALID))[0] == FAILED
    assert compute(obj("BackupPolicy", READY, generation=3, observed=2)) == (
        IN_PROGRESS, "BackupPolicy generation is 3, but latest observed generation is 2")
    assert compute(obj("BackupPolicy", cond("Reconciling", "True", "ApplyFailed", "retrying")))[0] == IN_PROGRESS
    deleting = obj("BackupPolicy", READY)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-23T10:00:00Z"
    assert compute(deleting)[0] == TERMINATING
    # kstatus alone ignores Ready: this is why Ready=False needs a companion
    lonely = obj("BackupPolicy", cond("Ready", "False", "InvalidSpec", "bad"))
    assert compute(lonely)[0] == CURRENT
    assert problems(lonely) and "neither Stalled nor Reconciling" in problems(lonely)[0]
    assert problems(obj("BackupPolicy", READY)) == []
    assert problems(obj("BackupPolicy", *INVALID)) == []


def test_merging_ready_brings_the_companions_along_and_clears_them():
    t0, t1 = "2026-11-23T10:00:00Z", "2026-11-23T10:05:00Z"
    bad = conditions.make("Ready", False, "InvalidSpec", "spec.tier: wrong", 1)
    merged = conditions.merge([], bad, t0)
    assert [(c["type"], c["status"], c["reason"]) for c in merged] == [
        ("Ready", "False", "InvalidSpec"), ("Stalled", "True", "InvalidSpec")]
    fixed = conditions.merge(merged, conditions.make("Ready", True, "SpecValid", "valid", 2), t1)
    stalled = conditions.find(fixed, "Stalled")
    assert (stalled["status"], stalled["lastTransitionTime"], stalled["observedGeneration"]) == ("False", t1, 2)
    transient = conditions.merge([], conditions.make("Ready", False, "ApplyFailed", "500", 1), t0)
    assert [(c["type"], c["status"]) for c in transient] == [("Ready", "False"), ("Reconciling", "True")]
    unknown = conditions.merge([], conditions.make("Ready", None, "Checking", "", 1), t0)
    assert conditions.find(unknown, "Reconciling")["status"] == "True"
    # a valid object gets no extra conditions at all
    assert [c["type"] for c in conditions.merge([], conditions.make("Ready", True, "SpecValid", "", 1), t0)] == ["Ready"]
    # merging the same thing again changes nothing (no write on a resync)
    assert conditions.merge(merged, bad, t1) == merged


def test_the_readiness_planner_writes_stalled_once_also_over_a_status_written_before_it_existed():
    from lifeline.api import BY_KIND
    from lifeline.planning import readiness

    info = BY_KIND["RestoreDrill"]
    body = obj("RestoreDrill", spec={"policyName": "pacs", "point": {"strategy": "Sometimes"}})
    del body["status"]
    first = readiness.plan(info, body, "2026-11-23T10:00:00Z")
    assert [c["type"] for c in first.patch["conditions"]] == ["Ready", "Stalled"]
    body["status"] = first.patch
    assert compute(body)[0] == FAILED and problems(body) == []
    assert readiness.plan(info, body, "2026-11-23T10:05:00Z").patch is None, "a resync writes nothing"
    # a status an older operator wrote (Ready=False, no Stalled) gains it on the next event, no Event again
    body["status"]["conditions"] = body["status"]["conditions"][:1]
    upgrade = readiness.plan(info, body, "2026-11-23T10:05:00Z")
    assert upgrade.patch is not None and upgrade.event is None
    assert conditions.find(upgrade.patch["conditions"], "Stalled")["status"] == "True"
