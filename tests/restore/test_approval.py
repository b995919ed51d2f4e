"""Two-person approval through the real admission path: the emulator calls the operator's kopf webhooks
over HTTPS with each person's identity, the webhook asks the emulator's RBAC, the controller copies the
records into status and acts."""
from __future__ import annotations

import json

import pytest

from lifeline.observability import audit
from lifeline.planning import restore as rules
from tests.kube_client import Api

from .conftest import restore_body
from .helpers import NS, decide, events, phase, stored

pytestmark = pytest.mark.asyncio


@pytest.fixture
def audited():
    records: list[dict] = []
    audit.add_sink(records.append)
    yield records
    audit.remove_sink(records.append)


def _approvals(emulator, name):
    return [(a["user"], a["decision"]) for a in (stored(emulator, name).get("status") or {}).get("approvals") or []]


async def test_two_distinct_approvers_and_never_the_requester(operator, emulator, people, audited):
    alice = Api(people["alice"])
    try:
        created = await alice.create(restore_body())
    finally:
        alice.client.close()
    name = created["metadata"]["name"]
    # the requester comes from the admission request, not from anything alice wrote
    assert created["metadata"]["annotations"][rules.ANN_REQUESTED_BY] == "alice@hospital.example"
    await emulator.wait_for(lambda: phase(emulator, name) == "PendingApproval")
    assert stored(emulator, name)["status"]["requestedBy"] == "alice@hospital.example"

    # one approval is not enough
    code, out = await decide(people["bob"], "approve", name, "checked INC-4711")
    assert code == 0, out
    await emulator.wait_for(lambda: _approvals(emulator, name) == [("bob@hospital.example", "Approved")])
    assert phase(emulator, name) == "PendingApproval"
    assert "1 of 2 approvals" in stored(emulator, name)["status"]["message"]

    # the same person twice is not two
    code, out = await decide(people["bob"], "approve", name)
    assert code == 1 and "already decided" in out, out
    # the requester cannot approve
    code, out = await decide(people["alice"], "approve", name)
    assert code == 1 and "requested this restore and cannot approve it" in out, out
    # someone without the approver role is refused by the webhook, with what to do about it
    code, out = await decide(people["mallory"], "approve", name)
    assert code == 1 and "may not approve restores here" in out and "lifeline-restore-approver" in out, out
    # nobody may write the records directly, not even an approver
    forged = [{"user": "carol@hospital.example", "decision": "Approved", "time": "2026-11-23T10:00:00Z"}]
    bob = Api(people["bob"])
    try:
        with pytest.raises(Exception) as refused:
            await bob.patch("Restore", name, {"metadata": {"annotations": {rules.ANN_DECISIONS: json.dumps(forged)}}})
        assert "written by Lifeline's admission webhook only" in str(refused.value)
        # the spec is what was approved: it cannot change
        with pytest.raises(Exception) as immutable:
            await bob.patch("Restore", name, {"spec": {"overwrite": True}})
        assert "spec is immutable" in str(immutable.value)
    finally:
        bob.client.close()
    assert phase(emulator, name) == "PendingApproval"
    assert _approvals(emulator, name) == [("bob@hospital.example", "Approved")]

    # a second, distinct approver: it runs (here it fails at once: the recovery point does not exist)
    code, out = await decide(people["carol"], "approve", name, "ok")
    assert code == 0, out
    await emulator.wait_for(lambda: phase(emulator, name) == "Failed")
    status = stored(emulator, name)["status"]
    assert _approvals(emulator, name) == [("bob@hospital.example", "Approved"), ("carol@hospital.example", "Approved")]
    assert status["reason"] == "RecoveryPointNotFound"
    # Events are posted right after the audit records of the same transition
    await emulator.wait_for(lambda: events(emulator, name, "RecoveryPointNotFound"))
    # the trail: requested, two approvals, refusals with their reasons, the failed restore
    actions = [(r["action"], r["actor"], r["outcome"]) for r in audited]
    assert ("restore", "alice@hospital.example", "requested") in actions
    assert ("approval", "bob@hospital.example", "succeeded") in actions
    assert ("approval", "carol@hospital.example", "succeeded") in actions
    assert ("approval", "alice@hospital.example", "refused") in actions
    assert ("approval", "mallory@hospital.example", "refused") in actions
    assert ("restore", "alice@hospital.example", "failed") in actions
    assert [e["reason"] for e in events(emulator, name, "Approved")] == ["Approved", "Approved"]
    # the webhook saw each person as the API server authenticated them
    users = {c["review"]["request"]["userInfo"]["username"] for c in emulator.admission.calls}
    assert {"alice@hospital.example", "bob@hospital.example", "mallory@hospital.example"} <= users


async def test_rejection_ends_it(operator, emulator, people, audited):
    alice = Api(people["alice"])
    try:
        await alice.create(restore_body("wrong-point"))
    finally:
        alice.client.close()
    await emulator.wait_for(lambda: phase(emulator, "wrong-point") == "PendingApproval")
    code, out = await decide(people["bob"], "approve", "wrong-point")
    assert code == 0, out
    code, out = await decide(people["carol"], "reject", "wrong-point", "that point predates the fault")
    assert code == 0, out
    await emulator.wait_for(lambda: phase(emulator, "wrong-point") == "Rejected")
    await emulator.wait_for(lambda: events(emulator, "wrong-point", "Rejected"))
    status = stored(emulator, "wrong-point")["status"]
    assert "carol@hospital.example" in status["message"] and "predates the fault" in status["message"]
    assert not emulator.stored("batch/v1/jobs", NS, "restore-wrong-point")
    code, out = await decide(people["bob"], "approve", "wrong-point")
    assert code == 1 and "Rejected" in out
    assert ("rejection", "carol@hospital.example", "succeeded") in [
        (r["action"], r["actor"], r["outcome"]) for r in audited]


async def test_validating_webhook_names_the_field(operator, emulator, people):
    bad = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "pacs"},
           "spec": {"tier": "B", "source": {"pvc": {"claimName": "pacs-data"}},
                    "schedule": {"full": "0 1 * *"},
                    "destinations": [{"name": "local", "filesystem": {"claimName": "backup-local"}}],
                    "encryption": {"keyRef": "secret://pacs-key/key"}}}
    alice = Api(people["alice"])
    try:
        with pytest.raises(Exception) as refused:
            await alice.create(bad)
    finally:
        alice.client.close()
    text = str(refused.value)
    assert "422" in text and "spec.schedule.full" in text and "denied the request" in text
    assert emulator.stored("dr.lifeline.io/v1alpha1/backuppolicies", NS, "pacs") is None
