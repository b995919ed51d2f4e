"""Finding 4 of the security review, as the attacks: approvals that do not come from the webhook.

With the admission webhook absent (not installed, ``failurePolicy: Ignore`` while the operator was
down, or a request that got past it), anyone who may patch a Restore could write the requester and
the approval records themselves, or a status that says ``Approved``. The operator counts records
only under the webhook's seal, and recomputes approval from them on every reconcile."""
from __future__ import annotations

import json

from lifeline.planning import restore as rules
from lifeline.webhooks.seal_key import seal_key

NOW = "2026-12-02T10:00:00Z"
KEY = b"k" * 32


def restore(annotations: dict, status: dict | None = None) -> dict:
    return {"metadata": {"name": "his-back", "namespace": "his", "generation": 1, "annotations": annotations},
            "spec": {"recoveryPoint": "his-20261201-0100", "reason": "INC-9",
                     "target": {"pvc": {"claimName": "his-data"}}},
            "status": status or {}}


def records(*people: str) -> str:
    return rules.encode([{"user": u, "decision": "Approved", "time": NOW} for u in people])


def sealed_by(key: bytes, body: dict) -> dict:
    ann = body["metadata"]["annotations"]
    ann[rules.ANN_SEAL] = rules.seal(key, body, ann.get(rules.ANN_REQUESTED_BY), ann.get(rules.ANN_DECISIONS))
    return body


def run(body: dict, key: bytes = KEY):
    return rules.plan(body, None, NOW, records_sealed=rules.sealed(body, key))


def test_records_written_without_the_webhook_do_not_count():
    forged = restore({rules.ANN_REQUESTED_BY: "mallory", rules.ANN_DECISIONS: records("alice", "bob")})
    plan = run(forged)
    assert plan.phase == "PendingApproval" and not plan.create_job
    assert plan.status["reason"] == "ApprovalsNotSealed" and plan.status["approvals"] == []
    assert plan.status.get("requestedBy") is None
    assert run(sealed_by(KEY, forged)).create_job, "the same records under the webhook's seal count"


def test_a_seal_made_with_another_key_or_over_other_records_does_not_count():
    body = sealed_by(b"x" * 32, restore({rules.ANN_REQUESTED_BY: "carol", rules.ANN_DECISIONS: records("alice", "bob")}))
    assert not run(body).create_job
    honest = sealed_by(KEY, restore({rules.ANN_REQUESTED_BY: "carol", rules.ANN_DECISIONS: records("alice")}))
    honest["metadata"]["annotations"][rules.ANN_DECISIONS] = records("alice", "bob")  # one approval added by hand
    assert not run(honest).create_job
    moved = sealed_by(KEY, restore({rules.ANN_REQUESTED_BY: "carol", rules.ANN_DECISIONS: records("alice", "bob")}))
    moved["spec"]["target"]["pvc"]["claimName"] = "lab-data"  # the approved records on another spec
    assert not run(moved).create_job


def test_a_status_that_says_approved_is_not_evidence():
    body = sealed_by(KEY, restore({rules.ANN_REQUESTED_BY: "carol"}, status={"phase": "Approved"}))
    plan = run(body)
    assert plan.phase == "PendingApproval" and not plan.create_job


def test_the_key_is_the_webhook_certificates_and_the_same_for_every_replica(tmp_path):
    class Options:
        webhook_cert_dir = str(tmp_path)

    (tmp_path / "tls.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    first, second = seal_key(Options()), seal_key(Options())
    assert first == second and len(first) == 32
    (tmp_path / "tls.key").write_bytes(b"another key")
    assert seal_key(Options()) != first
    assert json.dumps(rules.PROTECTED) and rules.ANN_SEAL in rules.PROTECTED, "nobody may write the seal"
