"""The pure parts: CronJob rendering, schedule arithmetic, the status planner, summaries."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import kubernetes_validate
import pytest

from lifeline.messages import BackupSummary, CopyStored, DestinationFailed, render
from lifeline.planning import backup, backup_points, backup_status
from lifeline.planning.backup_schedule import longest_gap
from lifeline.planning.backup_status import Inputs, Ref

from .conftest import policy

FACTS = backup.Facts("ghcr.io/lifeline-dr/lifeline:1.2.3")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def body(**spec) -> dict:
    b = policy(**spec)
    b["metadata"].update(namespace="hospital", uid="uid-1", generation=1, creationTimestamp="2026-11-23T10:00:00Z")
    return b


def by_name(docs):
    return {d["metadata"]["name"]: d for d in docs}


def pod(doc):
    return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


# ---- names and shape ---------------------------------------------------------------------------


def test_one_cronjob_per_schedule_kind_plus_prune_and_maintenance_with_owner_and_labels():
    docs = by_name(backup.plan(body(), FACTS))
    assert list(docs) == ["pacs-full", "pacs-incremental", "pacs-prune", "pacs-maintenance"]
    full = docs["pacs-full"]
    assert full["metadata"]["ownerReferences"] == [
        {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy", "name": "pacs", "uid": "uid-1",
         "controller": True}]
    assert full["metadata"]["labels"] == {
        "app.kubernetes.io/name": "lifeline", "app.kubernetes.io/instance": "pacs",
        "app.kubernetes.io/component": "backup", "app.kubernetes.io/managed-by": "lifeline",
        "app.kubernetes.io/part-of": "lifeline", "dr.lifeline.io/policy": "pacs", "dr.lifeline.io/backup-type": "full"}
    assert docs["pacs-prune"]["metadata"]["labels"]["app.kubernetes.io/component"] == "prune"
    assert docs["pacs-maintenance"]["metadata"]["labels"]["app.kubernetes.io/component"] == "maintenance"
    spec = docs["pacs-incremental"]["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"], spec["suspend"]) == ("*/15 * * * *", "Forbid", False)
    assert spec["startingDeadlineSeconds"] == 300 and spec["jobTemplate"]["spec"]["backoffLimit"] == 1
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 900, "an incremental may run for its interval"
    for doc in docs.values():
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_long_policy_names_are_cut_to_the_cronjob_limit_with_a_hash():
    b = body()
    b["metadata"]["name"] = "radiology-picture-archive-and-communication-system-primary-site"
    names = [d["metadata"]["name"] for d in backup.plan(b, FACTS)]
    assert all(len(n) <= 52 for n in names), names
    assert names[0].endswith("-full") and names[0].startswith("radiology-picture-archive")
    assert len(set(names)) == 4
    other = dict(b, metadata=dict(b["metadata"], name=b["metadata"]["name"] + "-b"))
    assert backup.plan(other, FACTS)[0]["metadata"]["name"] != names[0], "the hash keeps cut names apart"
    labels = backup.plan(b, FACTS)[0]["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())


def test_the_pod_is_hardened_and_mounts_the_source_read_only():
    b = body(pod={"nodeSelector": {"topology.kubernetes.io/zone": "a"}, "priorityClassName": "backup",
                  "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "backup",
                                   "effect": "NoSchedule", "tolerationSeconds": 30}],
                  "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}},
                  "serviceAccountName": "backup", "runAsUser": 1001})
    p = pod(backup.plan(b, FACTS)[0])
    assert p["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    [agent] = p["containers"]
    assert agent["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert agent["image"] == "ghcr.io/lifeline-dr/lifeline:1.2.3"
    assert {"name": "source", "mountPath": "/source", "readOnly": True} in agent["volumeMounts"]
    assert {"name": "source", "persistentVolumeClaim": {"claimName": "pacs-data", "readOnly": True}} in p["volumes"]
    assert {"name": "tmp", "emptyDir": {}} in p["volumes"]
    assert agent["resources"] == {"requests": {"cpu": "1"}, "limits": {"memory": "3Gi"}}
    assert (p["nodeSelector"], p["priorityClassName"], p["serviceAccountName"]) == (
        {"topology.kubernetes.io/zone": "a"}, "backup", "backup")
    assert p["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "backup",
                                 "effect": "NoSchedule", "tolerationSeconds": 30}]
    assert p["automountServiceAccountToken"] is False and p["restartPolicy"] == "Never"
    plan = json.loads(next(e["value"] for e in agent["env"] if e["name"] == "LIFELINE_JOB_PLAN"))
    assert plan["source"] == {"kind": "pvc", "path": "/source", "name": "hospital/pacs"}
    assert [d["repository"] for d in plan["destinations"]] == [
        "file:///destinations/local/repos/pacs", "file:///destinations/offsite/pacs"]
    assert plan["key"] == {"ref": "secret://pacs-key/key", "file": "/etc/lifeline/key/key"}


def test_a_dump_source_streams_through_a_fifo_between_two_images():
    b = body(source={"command": {"image": "postgres:16", "command": ["pg_dump", "-Fc", "lab"],
                                 "env": [{"name": "PGPASSWORD", "valueFromSecret": {"name": "db", "key": "pw"}}]}})
    p = pod(backup.plan(b, FACTS)[0])
    [prepare] = p["initContainers"]
    assert prepare["args"] == ["prepare", "--fifo", "/dump/stream"]
    dump, agent = p["containers"]
    assert dump["image"] == "postgres:16"
    assert dump["command"][:2] == ["/bin/sh", "-c"] and dump["command"][3:] == ["lifeline-dump", "pg_dump", "-Fc", "lab"]
    assert "> /dump/stream" in dump["command"][2] and "/dump/exit-code" in dump["command"][2]
    assert {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}} in dump["env"]
    assert dump["securityContext"]["readOnlyRootFilesystem"] is True
    assert not any(v["name"] == "source" for v in p["volumes"]), "no PVC for a dump source"
    plan = json.loads(agent["env"][0]["value"])
    assert plan["source"] == {"kind": "command", "path": "/dump/stream", "name": "hospital/pacs",
                              "stream": {"exitCode": "/dump/exit-code", "name": "pg_dump.out"}}


def test_suspend_and_time_zone_and_s3_credentials_reach_the_cronjob():
    b = body(suspend=True, destinations=[{"name": "s3", "offSite": True, "s3": {
        "bucket": "dr-bucket", "prefix": "/pacs/", "credentialsSecret": "creds", "endpoint": "https://s3.example"}}])
    b["spec"]["schedule"]["timeZone"] = "Europe/Amsterdam"
    full = backup.plan(b, FACTS)[0]
    assert full["spec"]["suspend"] is True and full["spec"]["timeZone"] == "Europe/Amsterdam"
    env = {e["name"]: e for e in pod(full)["containers"][0]["env"]}
    assert env["LIFELINE_S3_0_ACCESS_KEY_ID"]["valueFrom"] == {
        "secretKeyRef": {"name": "creds", "key": "AWS_ACCESS_KEY_ID"}}
    plan = json.loads(env["LIFELINE_JOB_PLAN"]["value"])
    assert plan["destinations"][0]["repository"] == "s3://dr-bucket/pacs"
    assert "creds" not in env["LIFELINE_JOB_PLAN"]["value"], "the plan names no secret"


def test_a_path_that_climbs_out_of_its_volume_is_refused():
    b = body(source={"pvc": {"claimName": "pacs-data", "path": "/../../etc"}})
    with pytest.raises(backup.PlanError) as err:
        backup.plan(b, FACTS)
    assert (err.value.condition, err.value.reason) == ("SourceAvailable", "InvalidPath")


def test_the_spec_hash_changes_with_the_schedule_only():
    a = backup.plan(body(), FACTS)[1]
    b = backup.plan(body(incremental="*/10 * * * *"), FACTS)[1]
    assert a["metadata"]["annotations"]["dr.lifeline.io/spec-hash"] != b["metadata"]["annotations"][
        "dr.lifeline.io/spec-hash"]
    assert backup.plan(body(), FACTS)[1] == a, "deterministic"


def test_on_demand_job_is_named_by_the_request():
    j1 = backup.on_demand_job(body(), FACTS, "before-upgrade")
    j2 = backup.on_demand_job(body(), FACTS, "before-upgrade")
    j3 = backup.on_demand_job(body(), FACTS, "again", "full")
    assert j1["metadata"]["name"] == j2["metadata"]["name"] != j3["metadata"]["name"]
    assert j1["metadata"]["labels"]["dr.lifeline.io/trigger"] == "on-demand"
    assert j1["metadata"]["annotations"]["dr.lifeline.io/backup-now"] == "before-upgrade"
    assert j3["metadata"]["labels"]["dr.lifeline.io/backup-type"] == "full"
    kubernetes_validate.validate(j1, "1.30", strict=True)


# ---- schedule arithmetic -------------------------------------------------------------------------


def test_the_longest_gap_of_all_schedules_together():
    assert longest_gap((("incremental", "*/15 * * * *"),)).seconds == 900
    assert longest_gap((("full", "0 1 * * *"),)).seconds == 86400
    gap = longest_gap((("full", "0 1 * * *"), ("incremental", "*/15 8-17 * * *")))
    assert (gap.seconds, gap.after) == (7 * 3600 + 15 * 60, "incremental"), "17:45 -> 01:00 is the longest"
    weekly = longest_gap((("full", "0 2 * * 0"), ("incremental", "0 * * * 1-5")))
    assert (weekly.seconds, weekly.after) == (27 * 3600, "incremental"), "Friday 23:00 -> Sunday 02:00"


# ---- the status planner --------------------------------------------------------------------------


def plan(b, now=NOW, **inputs):
    inputs.setdefault("cron_jobs", [("pacs-full", "0 1 * * *")])
    return backup_status.plan_status(b, Inputs(now=now, **inputs))


def conds(patch):
    return {c["type"]: c for c in patch["conditions"]}


def test_a_schedule_that_cannot_meet_the_rpo_is_accepted_but_loud():
    result = plan(body(rpo="1m"))
    c = conds(result.patch)
    assert c["Ready"]["status"] == "True"
    assert (c["RPOAchievable"]["status"], c["RPOAchievable"]["reason"]) == ("False", "ScheduleTooSparse")
    assert c["RPOAchievable"]["message"].startswith(
        "the longest gap between scheduled backups is 15m (900s), after the incremental run '*/15 * * * *'; "
        "the RPO is 1m (60s): up to 15m of data could be lost, 15.0x the objective")
    assert ("Warning", "ScheduleTooSparse") in [(e.type, e.reason) for e in result.events]
    assert result.achievable is False


def test_tier_a_is_told_that_only_log_shipping_meets_ten_seconds():
    b = body(rpo="10s", incremental="* * * * *")
    text = conds(plan(b).patch)["RPOAchievable"]["message"]
    assert "1m (60s)" in text and "only a continuous (log-shipping) source can meet an RPO of 10s" in text


def test_rpo_met_flips_when_time_passes_and_writes_nothing_in_between():
    b = body()
    points = [{"name": "pacs-1", "phase": "Available", "start": "2026-11-23T10:00:00Z",
               "completion": "2026-11-23T10:00:30Z", "copies": [("local", "a"), ("offsite", "b")]}]
    first = plan(b, points=points)
    assert conds(first.patch)["RPOMet"]["reason"] == "WithinRPO"
    b["status"] = first.patch
    for minutes in (1, 3, 14):  # only currentRPOSeconds may move, and only by a quarter of the RPO or more
        again = plan(b, now=NOW + timedelta(minutes=minutes), points=points)
        if again.patch:
            assert set(again.patch) == {"currentRPOSeconds"}, again.patch
            b["status"] = {**b["status"], **again.patch}
    breached = plan(b, now=NOW + timedelta(minutes=16), points=points)
    c = conds(breached.patch)
    assert (c["RPOMet"]["status"], c["RPOMet"]["reason"]) == ("False", "RPOBreached")
    assert c["RPOMet"]["message"] == ("the newest recovery point holds data as of 2026-11-23T10:00:00Z: the RPO of "
                                      "15m (900s) ran out at 2026-11-23T10:15:00Z. Look at the latest backup Jobs "
                                      "and the policy's Events")
    assert breached.patch["currentRPOSeconds"] == 960
    assert [(e.type, e.reason) for e in breached.events] == [("Warning", "RPOBreached")]
    b["status"] = {**b["status"], **breached.patch}
    assert plan(b, now=NOW + timedelta(minutes=16), points=points).patch is None, "no change, no write"


def test_missing_references_are_named_with_what_to_do():
    refs = {"pvc/pacs-data": Ref(False), "pvc/backup-local": Ref(True), "pvc/backup-offsite": Ref(False),
            "secret/pacs-key": Ref(True, frozenset({"other"}))}
    c = conds(plan(body(), refs=refs).patch)
    assert (c["SourceAvailable"]["status"], c["SourceAvailable"]["reason"]) == ("False", "PVCNotFound")
    assert c["SourceAvailable"]["message"] == ("source: PersistentVolumeClaim hospital/pacs-data does not exist: "
                                               "create it, or fix spec.source.pvc.claimName")
    assert (c["DestinationsReachable"]["status"], c["DestinationsReachable"]["reason"]) == ("False", "PVCNotFound")
    assert "destination offsite: PersistentVolumeClaim hospital/backup-offsite" in c["DestinationsReachable"]["message"]
    assert (c["KeysAvailable"]["status"], c["KeysAvailable"]["reason"]) == ("False", "SecretKeyMissing")
    assert "Secret hospital/pacs-key has no key key (it has: other)" in c["KeysAvailable"]["message"]
    assert c["Ready"]["status"] == "True", "the policy is accepted; its conditions say what is missing"


def test_an_invalid_spec_keeps_ready_false_and_touches_nothing_else():
    b = body()
    b["spec"]["tier"] = "Z"
    result = plan(b)
    assert set(result.patch) == {"observedGeneration", "conditions"}
    assert conds(result.patch)["Ready"]["reason"] == "InvalidSpec"


def test_last_backup_and_destinations_come_from_recorded_jobs():
    job = {"name": "pacs-full-1", "uid": "j1", "operation": "backup", "type": "full", "trigger": "Schedule",
           "start": "2026-11-23T10:00:00Z", "created": "2026-11-23T10:00:00Z", "completion": "2026-11-23T10:01:00Z",
           "phase": "Succeeded", "recorded": "pacs-1",
           "result": {"o": "Succeeded", "rp": "pacs-1", "ok": ["local"], "failed": {"offsite": "bucket gone"},
                      "type": "full"}}
    status = plan(body(), jobs=[job]).patch
    assert status["lastBackup"] == {"job": "pacs-full-1", "trigger": "Schedule", "startTime": "2026-11-23T10:00:00Z",
                                    "type": "full", "outcome": "Succeeded", "completionTime": "2026-11-23T10:01:00Z",
                                    "recoveryPoint": "pacs-1",
                                    "message": "stored at local; failed at offsite: bucket gone"}
    assert status["destinations"] == [
        {"name": "local", "offSite": False, "lastOutcome": "Succeeded", "lastAttemptTime": "2026-11-23T10:01:00Z",
         "lastSuccessTime": "2026-11-23T10:01:00Z"},
        {"name": "offsite", "offSite": True, "lastOutcome": "Failed", "lastAttemptTime": "2026-11-23T10:01:00Z",
         "message": "bucket gone"}]


# ---- summaries -----------------------------------------------------------------------------------


def test_the_combined_summary_always_fits_a_termination_message():
    ok = [CopyStored(destination=f"dest-{i}", snapshot_id="a" * 32, type="full", repository="s3://bucket/" + "p" * 80,
                     stored_bytes=10, chunks=(1, 1), manifest_checksum="blake3:" + "0" * 64, start="2026", end="2026",
                     seconds=1.0) for i in range(30)]
    summary = BackupSummary(copies=ok, failures=[DestinationFailed(destination="x", exit_code=1, error="e" * 5000)])
    text = render(summary)
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert data["truncated"] is True and data["ok"] and len(data["failed"][0]["error"]) <= 200


def test_a_pod_report_reads_the_agent_message_and_says_how_the_dump_ended():
    message = json.dumps({"v": 1, "op": "backup", "ok": [], "failed": [], "error": "dump exited 3"})
    pods = [{"metadata": {"name": "p1"}, "status": {"containerStatuses": [
        {"name": "dump", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}},
        {"name": "agent", "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": message,
                                                   "finishedAt": "2026-11-23T10:00:05Z"}}}]}}]
    summary, report, problem = backup_points.pod_report(pods)
    assert summary.error == "dump exited 3" and problem is None
    assert report == "agent exited 1 (Error); dump exited 3 (Error)"
    assert backup_points.pod_report([])[0] is None


# ---- volumeSnapshot sources and the Vault CA bundle ----------------------------------------------


def snapshot_body(**source) -> dict:
    b = body()
    b["spec"]["source"] = {"volumeSnapshot": {"claimName": "lis-data", **source}}
    return b


def test_a_snapshot_policy_schedules_triggers_and_its_mover_mounts_the_snapshot_pvc_read_only():
    from lifeline.planning import snapshot

    b = snapshot_body(path="/db")
    docs = by_name(backup.plan(b, FACTS))
    trigger_pod = pod(docs["pacs-full"])
    assert [c["name"] for c in trigger_pod["containers"]] == ["trigger"] and "volumes" not in trigger_pod
    assert docs["pacs-full"]["spec"]["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/component"] == "snapshot"
    assert docs["pacs-prune"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["prune"]
    trig = {"name": "pacs-full-1", "uid": "u", "type": "full", "trigger": "OnDemand"}
    mover = snapshot.mover_job(b, FACTS, trig, "pacs-full-1-data")
    spec = mover["spec"]["template"]["spec"]
    assert {"name": "source", "persistentVolumeClaim": {"claimName": "pacs-full-1-data", "readOnly": True}} \
        in spec["volumes"]
    plan = json.loads(next(e["value"] for e in spec["containers"][0]["env"] if e["name"] == "LIFELINE_JOB_PLAN"))
    assert plan["source"]["path"] == "/source/db" and plan["type"] == "full"
    assert mover["metadata"]["labels"][backup.LABEL_TRIGGER] == "on-demand"
    assert mover["metadata"]["ownerReferences"][0]["kind"] == "BackupPolicy"
    kubernetes_validate.validate(mover, "1.30", strict=True)


def test_where_a_snapshot_stands_and_which_ones_are_pruned():
    from lifeline.planning import snapshot

    snap = {"metadata": {"name": "s"}, "status": {}}
    assert snapshot.snapshot_state(None, NOW, NOW, "10m").phase == "Missing"
    assert snapshot.snapshot_state(snap, NOW, NOW + timedelta(minutes=9), "10m").phase == "Pending"
    late = snapshot.snapshot_state(snap, NOW, NOW + timedelta(minutes=11), "10m")
    assert late.phase == "TimedOut" and "readyTimeout" in late.message
    snap["status"] = {"creationTime": "x"}
    assert snapshot.snapshot_state(snap, NOW, NOW, "10m").cut
    snap["status"] = {"creationTime": "x", "readyToUse": True}
    assert snapshot.snapshot_state(snap, NOW, NOW + timedelta(days=1), "10m").phase == "Ready"
    snap["status"] = {"error": {"message": "quota"}}
    assert snapshot.snapshot_state(snap, NOW, NOW, "10m") == snapshot.SnapshotState("Failed", "VolumeSnapshot s failed: quota")
    snaps = [{"metadata": {"name": n, "creationTimestamp": t}} for n, t in
             (("a", "2026-11-20T00:00:00Z"), ("b", "2026-11-21T00:00:00Z"), ("c", "2026-11-22T00:00:00Z"),
              ("d", "2026-11-23T00:00:00Z"))]
    assert snapshot.snapshots_to_delete(snaps, 2, running={"d"}) == ["a"]
    assert snapshot.snapshots_to_delete(snaps, 0, running=set()) == ["d", "c", "b", "a"]


@pytest.mark.parametrize("ca,volume", [
    ({"secret": "vault-ca", "key": "bundle.pem"},
     {"name": "vault-ca", "secret": {"secretName": "vault-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]}}),
    ({"configMap": "root-ca"},
     {"name": "vault-ca", "configMap": {"name": "root-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}),
])
def test_the_vault_ca_bundle_is_mounted_and_named_by_vault_cacert(ca, volume):
    b = body()
    b["spec"]["encryption"] = {"keyRef": "vault-transit://pacs?mount=transit", "caBundle": ca}
    spec = pod(by_name(backup.plan(b, FACTS))["pacs-full"])
    assert volume in spec["volumes"]
    agent = spec["containers"][0]
    path = f"/etc/lifeline/vault-ca/{ca.get('key', 'ca.crt')}"
    assert {"name": "VAULT_CACERT", "value": path} in agent["env"]
    assert {"name": "vault-ca", "mountPath": "/etc/lifeline/vault-ca", "readOnly": True} in agent["volumeMounts"]
    b["spec"]["encryption"]["keyRef"] = "secret://pacs-key/key"  # no Vault, no CA bundle
    assert "vault-ca" not in json.dumps(backup.plan(b, FACTS))
