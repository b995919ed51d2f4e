"""Two-person approval on a real API server: identities come from client certificates through the
API server's admission request to the operator's webhook, RBAC is the API server's own, and the
operator (the chart's Deployment) records what it saw."""
from __future__ import annotations

import json

import pytest

from lifeline.planning import restore as rules
from tests.realparts.ports import wait_for

from .conftest import lifeline_cli

pytestmark = [pytest.mark.slow, pytest.mark.any_cluster]
GROUP = "/apis/dr.lifeline.io/v1alpha1"


def restore(name: str, point: str = "no-such-point") -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": name},
            "spec": {"recoveryPoint": point, "reason": "INC-4711: table corruption after a storage fault",
                     "strategy": "NewClaim", "target": {"pvc": {"claimName": f"{name}-restored", "size": "1Gi"}}}}


def status(cluster, ns: str, name: str) -> dict:
    return cluster.request("GET", f"{GROUP}/namespaces/{ns}/restores/{name}").get("status") or {}


def approvals(cluster, ns: str, name: str) -> list[tuple[str, str]]:
    return [(a["user"], a["decision"]) for a in status(cluster, ns, name).get("approvals") or []]


def decide(cluster, ns: str, verb: str, name: str, user: str, comment: str = ""):
    return lifeline_cli(cluster, "restore", verb, name, "-n", ns, "--comment", comment, user=user)


def audit_lines(kubectl, lifeline) -> list[dict]:
    """The operator's audit records, as it logs them (every record also goes to its log)."""
    logs = kubectl("logs", "-n", lifeline.namespace, f"deploy/{lifeline.name}-operator", "--tail=-1")
    out = []
    for line in logs.splitlines():
        try:
            message = json.loads(line).get("message", "")
        except ValueError:
            continue
        if message.startswith("audit {"):
            out.append(json.loads(message[len("audit "):]))
    return out


def test_two_distinct_approvers_never_the_requester_and_no_forged_records(cluster, team, kubectl, lifeline):
    kubectl("apply", "-n", team, "-f", "-", user="carol", input=json.dumps(restore("pacs-back")))
    stored = cluster.request("GET", f"{GROUP}/namespaces/{team}/restores/pacs-back")
    # the requester comes from the admission request, not from anything carol wrote
    assert stored["metadata"]["annotations"][rules.ANN_REQUESTED_BY] == "carol"
    wait_for(lambda: status(cluster, team, "pacs-back").get("phase") == "PendingApproval", 30, "PendingApproval")

    # one approval is not enough
    done = decide(cluster, team, "approve", "pacs-back", "bob", "checked INC-4711")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: approvals(cluster, team, "pacs-back") == [("bob", "Approved")], 30, "bob's approval")
    assert status(cluster, team, "pacs-back")["phase"] == "PendingApproval"
    assert "1 of 2 approvals" in status(cluster, team, "pacs-back")["message"]

    # the same person twice is not two; the requester cannot approve; nor can someone without the role
    again = decide(cluster, team, "approve", "pacs-back", "bob")
    assert again.returncode != 0 and "already decided" in again.stderr, again.stderr
    own = decide(cluster, team, "approve", "pacs-back", "carol")
    assert own.returncode != 0 and "requested this restore and cannot approve it" in own.stderr, own.stderr
    stranger = decide(cluster, team, "approve", "pacs-back", "dave")
    assert stranger.returncode != 0 and "403" in stranger.stderr, stranger.stderr

    # nobody writes the records directly, not even an approver, and the approved spec cannot change
    forged = [{"user": "alice", "decision": "Approved", "time": "2026-11-23T10:00:00Z"}]
    patch = json.dumps({"metadata": {"annotations": {rules.ANN_DECISIONS: json.dumps(forged)}}})
    refused = kubectl("patch", "restore", "pacs-back", "-n", team, "--type=merge", "-p", patch, user="bob",
                      check=False)
    assert "written by Lifeline's admission webhook only" in refused, refused
    changed = kubectl("patch", "restore", "pacs-back", "-n", team, "--type=merge",
                      "-p", '{"spec": {"overwrite": true}}', user="alice", check=False)
    assert "spec is immutable" in changed, changed
    assert approvals(cluster, team, "pacs-back") == [("bob", "Approved")]

    # a second, distinct approver: it runs (and fails at once: the recovery point does not exist)
    assert decide(cluster, team, "approve", "pacs-back", "alice", "ok").returncode == 0
    wait_for(lambda: status(cluster, team, "pacs-back").get("phase") == "Failed", 60, "the restore to end")
    assert approvals(cluster, team, "pacs-back") == [("bob", "Approved"), ("alice", "Approved")]
    assert status(cluster, team, "pacs-back")["reason"] == "RecoveryPointNotFound"
    # the trail: requested, the approvals, the refusals with who tried, the failed restore
    records = {(r["action"], r["actor"], r["outcome"]) for r in audit_lines(kubectl, lifeline)
               if (r.get("subject") or {}).get("namespace") == team}
    assert {("restore", "carol", "requested"), ("approval", "bob", "succeeded"), ("approval", "alice", "succeeded"),
            ("approval", "carol", "refused"), ("restore", "carol", "failed")} <= records, records


def test_a_rejection_ends_it(cluster, team, kubectl, lifeline):
    kubectl("apply", "-n", team, "-f", "-", user="carol", input=json.dumps(restore("wrong-point")))
    wait_for(lambda: status(cluster, team, "wrong-point").get("phase") == "PendingApproval", 30, "PendingApproval")
    assert decide(cluster, team, "approve", "wrong-point", "bob").returncode == 0
    assert decide(cluster, team, "reject", "wrong-point", "alice", "that point predates the fault").returncode == 0
    wait_for(lambda: status(cluster, team, "wrong-point").get("phase") == "Rejected", 30, "Rejected")
    message = status(cluster, team, "wrong-point")["message"]
    assert "alice" in message and "predates the fault" in message
    assert cluster.request("GET", f"/apis/batch/v1/namespaces/{team}/jobs")["items"] == []
    late = decide(cluster, team, "approve", "wrong-point", "bob")
    assert late.returncode != 0 and "Rejected" in late.stderr, late.stderr


def test_the_validating_webhook_names_the_field(cluster, team, kubectl, lifeline):
    bad = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "pacs"},
           "spec": {"tier": "B", "source": {"pvc": {"claimName": "data"}}, "schedule": {"full": "0 1 * *"},
                    "destinations": [{"name": "local", "filesystem": {"claimName": "backup-onsite"}}],
                    "encryption": {"keyRef": "secret://team-key/key"}}}
    out = kubectl("apply", "-n", team, "-f", "-", user="alice", input=json.dumps(bad), check=False)
    assert "denied the request" in out and "spec.schedule.full" in out, out
    assert kubectl("get", "backuppolicies", "-n", team, "-o", "name") == ""
