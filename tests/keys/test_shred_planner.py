"""The pure decisions behind deletion that shreds (planning/recoverypoint_shred.py): dict in, dict out."""
from __future__ import annotations

import json

import kubernetes_validate
import pytest

from lifeline.planning import recoverypoint_shred as shred
from tests.backup.conftest import policy


def point(name, type_="full", parent=None, *, deleting=False, phase="Available", copies=None, **meta) -> dict:
    return {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint",
        "metadata": {"name": name, "namespace": "hospital", "uid": f"uid-{name}", "resourceVersion": "7",
                     **({"deletionTimestamp": "2026-11-23T10:00:00Z"} if deleting else {}), **meta},
        "spec": {"policyName": "pacs", "type": type_, "parent": parent,
                 "copies": copies or [{"destination": "local", "snapshotId": f"s-{name}"}]},
        "status": {"phase": phase},
    }


def test_a_point_waits_for_every_live_point_of_its_epoch():
    full, i1, i2 = point("full"), point("i1", "incremental", "full"), point("i2", "incremental", "i1")
    diff = point("d1", "differential", "full")
    other = point("full2")
    later = point("i3", "incremental", "full2")
    everyone = [full, i1, i2, diff, other, later]
    assert shred.blockers(full, everyone) == ["d1", "i1", "i2"]
    assert shred.blockers(i2, everyone) == ["d1", "full", "i1"]
    assert shred.blockers(later, everyone) == ["full2"]
    # points being deleted too, or already pruned, do not hold it back
    gone = [point("full", deleting=True), point("i1", "incremental", "full", deleting=True),
            point("i2", "incremental", "i1", phase="Pruned"), point("d1", "differential", "full", deleting=True)]
    assert shred.blockers(gone[0], gone + [other]) == []


def test_shreds_of_one_epoch_go_one_after_the_other():
    """Found on the real control plane: two points of one epoch deleted together got two shred Jobs
    side by side, rewriting the same key objects, and both failed. The first by name goes first."""
    full, i1 = point("full", deleting=True), point("i1", "incremental", "full", deleting=True)
    other = point("full2", deleting=True)
    assert shred.ahead(full, [full, i1, other]) == []
    assert shred.ahead(i1, [full, i1, other]) == ["full"]
    assert shred.ahead(i1, [point("full"), i1]) == [], "a point not being deleted is a blocker, not ahead"
    assert shred.ahead(point("i9", "incremental", "full2", deleting=True), [full, i1, other]) == ["full2"]


def test_the_epoch_is_per_destination():
    """A copy taken as full at one destination (its parent was missing there) opens its own epoch there."""
    full = point("full", copies=[{"destination": "local", "snapshotId": "a"}, {"destination": "s3", "snapshotId": "b"}])
    incr = point("i1", "incremental", "full", copies=[{"destination": "local", "snapshotId": "c"},
                                                       {"destination": "s3", "snapshotId": "d", "type": "full"}])
    assert shred.blockers(incr, [full, incr]) == ["full"]  # still shares the local epoch
    only_s3 = point("i1", "incremental", "full", copies=[{"destination": "s3", "snapshotId": "d", "type": "full"}])
    assert shred.blockers(only_s3, [full, only_s3]) == []


def test_the_finalizer_follows_the_deletion_policy():
    body = policy("pacs", deletionPolicy="Shred")
    body["metadata"]["namespace"] = "hospital"
    p = point("full")
    patch = shred.finalizer_patch(p, body)
    assert patch["finalizers"] == [shred.FINALIZER] and patch["resourceVersion"] == "7"
    snap = json.loads(patch["annotations"][shred.ANN_PLAN])
    assert snap["destinations"] == body["spec"]["destinations"] and snap["policy"] == "pacs"
    marked = point("full", finalizers=[shred.FINALIZER, "other"], annotations=patch["annotations"])
    assert shred.finalizer_patch(marked, body) is None  # resync: no write
    body["spec"]["deletionPolicy"] = "Retain"
    off = shred.finalizer_patch(marked, body)
    assert off["finalizers"] == ["other"] and off["annotations"][shred.ANN_PLAN] is None
    assert shred.finalizer_patch(point("full"), body) is None
    assert shred.finalizer_patch(point("full", deleting=True, finalizers=[shred.FINALIZER]), body) is None
    assert shred.finalizer_patch(marked, None) is None  # policy gone: keep the finalizer and the plan


def test_the_shred_job_is_a_valid_hardened_job_without_the_key():
    body = policy("pacs", deletionPolicy="Shred", encryption={"keyRef": "secret://pacs-key/key"},
                  destinations=[{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/r"}},
                                {"name": "s3", "s3": {"bucket": "offsite", "credentialsSecret": "s3-creds"}}])
    body["metadata"].update(namespace="hospital", uid="u")
    p = point("full", copies=[{"destination": "local", "snapshotId": "a"}, {"destination": "s3", "snapshotId": "b"}])
    p["metadata"]["annotations"] = {shred.ANN_PLAN: shred.snapshot(body)}
    job = shred.shred_job(p, shred.ShredFacts("ghcr.io/lifeline-dr/lifeline:0.1.0", (("VAULT_ADDR", "x"),)), 3)
    kubernetes_validate.validate(job, "1.30", strict=True)
    assert job["metadata"]["name"] == "full-shred-3"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-full"
    pod = job["spec"]["template"]["spec"]
    agent = pod["containers"][0]
    assert agent["command"] == list(shred.JOB_COMMAND)
    assert not any(v.get("secret") for v in pod["volumes"])  # the key Secret is not mounted
    assert pod["automountServiceAccountToken"] is False
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in agent["env"]}
    plan = json.loads(env["LIFELINE_JOB_PLAN"]["value"])
    assert plan["copies"] == [{"destination": "local", "snapshotId": "a"}, {"destination": "s3", "snapshotId": "b"}]
    assert [d["name"] for d in plan["destinations"]] == ["local", "s3"]
    assert plan["actor"] == "system:serviceaccount:hospital:default"
    assert env["LIFELINE_S3_1_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    with pytest.raises(ValueError, match="shred-plan"):
        shred.shred_job(point("bare"), shred.ShredFacts("img"), 1)


def test_outcomes_and_retry_delays():
    from lifeline.messages import ShredSummary

    ok, msg, epochs = shred.outcome(ShredSummary.model_validate({"v": 1, "op": "shred", "ok": [
        {"d": "local", "epoch": "e1", "at": "t", "actor": "a", "points": ["p"]}, {"d": "s3", "already": True}],
        "failed": []}), "")
    assert ok and epochs == ["e1"] and "already shredded" in msg
    ok, msg, _ = shred.outcome(ShredSummary.model_validate(
        {"v": 1, "op": "shred", "ok": [], "failed": [{"d": "s3", "error": "denied"}]}), "")
    assert not ok and msg == "s3: denied"
    assert shred.outcome(None, "exited 2") == (False, "the shred Job left no summary (exited 2)", [])
    assert shred.outcome(None, "exited 0", "the agent's summary was cut off") == (
        False, "the agent's summary was cut off (exited 0)", [])
    from datetime import datetime, timezone
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    delays = [(shred.retry_after(t0, n) - t0).total_seconds() for n in (1, 2, 3, 20)]
    assert delays == [30, 60, 120, shred.RETRY_MAX]
