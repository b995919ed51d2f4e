"""The pure parts: approval rules, the phase machine, the restore Job wrapper, the RBAC evaluator."""
from __future__ import annotations

import json

from lifeline.planning import restore as rules
from lifeline.planning.restore import JobFacts

NOW = "2026-11-23T10:00:00Z"


def plan(body, job, now, **kwargs):
    """The phase machine over records as the webhook seals them (tests/security checks the seal)."""
    return rules.plan(body, job, now, records_sealed=True, **kwargs)


def body(decisions=(), requester="alice", status=None, **spec):
    ann = {rules.ANN_REQUESTED_BY: requester} if requester else {}
    if decisions:
        ann[rules.ANN_DECISIONS] = rules.encode([{"user": u, "decision": d, "time": NOW} for u, d in decisions])
    return {"metadata": {"name": "r", "namespace": "hospital", "generation": 1, "annotations": ann},
            "spec": {"recoveryPoint": "p", "reason": "why", "target": {"pvc": {"claimName": "c"}}, **spec},
            "status": status or {}}


def test_one_approval_is_not_enough():
    assert plan(body([("bob", "Approved")]), None, NOW).phase == "PendingApproval"


def test_the_same_user_twice_counts_once_and_the_requester_never():
    p = plan(body([("bob", "Approved"), ("bob", "Approved"), ("alice", "Approved")]), None, NOW)
    assert p.phase == "PendingApproval" and [a["user"] for a in p.status["approvals"]] == ["bob"]


def test_two_distinct_approvals_start_the_job_and_three_are_asked_for_when_required():
    p = plan(body([("bob", "Approved"), ("carol", "Approved")]), None, NOW)
    assert p.phase == "Approved" and p.create_job
    p = plan(body([("bob", "Approved"), ("carol", "Approved")], requiredApprovals=3), None, NOW)
    assert p.phase == "PendingApproval" and not p.create_job


def test_rejection_is_final():
    p = plan(body([("bob", "Approved"), ("carol", "Rejected")]), None, NOW)
    assert p.phase == "Rejected" and not p.create_job
    again = plan(body([("bob", "Approved"), ("carol", "Rejected"), ("dave", "Approved")],
                      status=p.status), None, NOW)
    assert again.phase == "Rejected"


def test_running_to_succeeded_switches_a_new_claim_only_after_the_job_succeeded():
    approved = plan(body([("bob", "Approved"), ("carol", "Approved")]), None, NOW).status
    running = plan(body([("bob", "Approved"), ("carol", "Approved")], status=approved),
                   JobFacts("restore-r", "Running"), NOW)
    assert running.phase == "Running" and not running.switch_claim
    done = body([("bob", "Approved"), ("carol", "Approved")], status=running.status)
    asked = plan(done, JobFacts("restore-r", "Succeeded"), NOW)
    assert asked.switch_claim and asked.phase == "Running"
    assert plan(done, JobFacts("restore-r", "Succeeded"), NOW, switched=True).phase == "Succeeded"
    failed = plan(done, JobFacts("restore-r", "Failed", "DamagedData: chunk x"), NOW)
    assert failed.phase == "Failed" and failed.mark_failed and "DamagedData" in failed.status["message"]


def test_a_resync_of_an_unchanged_restore_writes_nothing():
    first = plan(body([("bob", "Approved")]), None, NOW)
    again = plan(body([("bob", "Approved")], status=first.status), None, NOW)
    assert rules.unchanged(body([("bob", "Approved")], status=first.status), again.status)
    assert not again.notes


def test_the_webhook_refuses_with_reasons():
    approve = rules.Request("Approved")
    assert "cannot approve" in rules.refusal(approve, user="alice", requester="alice", records=[], phase=None,
                                             may_decide=True)
    assert "lifeline-restore-approver" in rules.refusal(approve, user="eve", requester="alice", records=[],
                                                        phase=None, may_decide=False)
    assert "already decided" in rules.refusal(approve, user="bob", requester="alice",
                                              records=[{"user": "bob", "decision": "Approved"}], phase=None,
                                              may_decide=True)
    assert rules.refusal(approve, user="bob", requester="alice", records=[], phase="PendingApproval",
                         may_decide=True) is None
    # the requester may withdraw (reject) their own request
    assert rules.refusal(rules.Request("Rejected"), user="alice", requester="alice", records=[], phase=None,
                         may_decide=False) is None
    forged = rules.read_request({}, {rules.ANN_DECISIONS: json.dumps([])})
    assert forged.forged == (rules.ANN_DECISIONS,)


def test_validate_lets_metadata_only_updates_through():
    import kopf
    import pytest

    from lifeline.webhooks.validate import check

    bad = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "p"},
           "spec": {"tier": "Z"}}
    with pytest.raises(kopf.AdmissionError) as refused:
        check(bad, None, "CREATE")
    assert "spec.tier" in str(refused.value)
    # kopf's finalizer/annotation patches (and deletion) of an object stored before the rule: allowed
    finalizing = {**bad, "metadata": {"name": "p", "finalizers": []}}
    check(finalizing, bad, "UPDATE")
    restore = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": "r"},
               "spec": {"recoveryPoint": "p", "reason": "x", "target": {"pvc": {"claimName": "c"}}}}
    with pytest.raises(kopf.AdmissionError):
        check({**restore, "spec": {**restore["spec"], "overwrite": True}}, restore, "UPDATE")
