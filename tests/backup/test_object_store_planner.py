"""The pure parts of azure and gcs destinations and of the maintenance (repack) CronJob: what the
planners render, what the status says, and what a destination's agent is handed."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import kubernetes_validate
import pytest

from lifeline.api.validation import problems_in_manifest
from lifeline.messages import (DestinationFailed, DestinationPlan, MaintenanceSummary, Repacked, read_summary, render)
from lifeline.messages.destination import destination_env
from lifeline.planning import backup, backup_points, backup_status, drill_sandbox, restore_job
from lifeline.planning.backup_status import Inputs, Ref

from .conftest import policy

FACTS = backup.Facts("ghcr.io/lifeline-dr/lifeline:1.2.3")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
AZURE = {"name": "azure", "offSite": True, "azure": {
    "container": "pacs-dr", "prefix": "/pacs/", "endpoint": "https://hospitaldr.blob.core.windows.net",
    "credentialsSecret": "pacs-azure"}}
GCS = {"name": "gcs", "offSite": True,
       "gcs": {"bucket": "hospital-dr", "prefix": "pacs", "credentialsSecret": "pacs-gcs"}}
LOCAL = {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"}}


def body(**spec) -> dict:
    b = policy(**spec)
    b["metadata"].update(namespace="hospital", uid="uid-1", generation=1, creationTimestamp="2026-11-23T10:00:00Z")
    return b


def by_name(docs):
    return {d["metadata"]["name"]: d for d in docs}


def pod(doc):
    return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def job_plan(doc) -> dict:
    return json.loads(next(e["value"] for e in pod(doc)["containers"][0]["env"] if e["name"] == "LIFELINE_JOB_PLAN"))


# ---- azure and gcs destinations --------------------------------------------------------------------------


def test_azure_credentials_reach_the_pod_from_their_secret_and_the_plan_names_none():
    docs = backup.plan(body(destinations=[LOCAL, AZURE]), FACTS)
    full = docs[0]
    env = {e["name"]: e for e in pod(full)["containers"][0]["env"]}
    assert env["LIFELINE_AZURE_1_ACCOUNT_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "pacs-azure", "key": "AZURE_STORAGE_ACCOUNT_KEY", "optional": True}}
    # the account's name comes from the Secret too, since accountName is left out; a SAS token or a
    # service principal may stand in for the key
    assert {n for n in env if n.startswith("LIFELINE_AZURE_1_")} == {
        f"LIFELINE_AZURE_1_{s}" for s in ("ACCOUNT_NAME", "ACCOUNT_KEY", "SAS_TOKEN", "CLIENT_ID", "CLIENT_SECRET",
                                          "TENANT_ID")}
    dest = job_plan(full)["destinations"][1]
    assert dest == {"name": "azure", "offSite": True, "repository": "azure://pacs-dr/pacs",
                    "endpoint": "https://hospitaldr.blob.core.windows.net", "credentialsEnv": "LIFELINE_AZURE_1_"}
    assert "pacs-azure" not in env["LIFELINE_JOB_PLAN"]["value"], "the plan names no secret"
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_an_azure_account_in_the_spec_is_not_read_from_the_secret():
    dest = json.loads(json.dumps(AZURE))
    dest["azure"]["accountName"] = "hospitaldr"
    full = backup.plan(body(destinations=[dest]), FACTS)[0]
    names = [e["name"] for e in pod(full)["containers"][0]["env"]]
    assert "LIFELINE_AZURE_0_ACCOUNT_NAME" not in names and "LIFELINE_AZURE_0_ACCOUNT_KEY" in names
    assert job_plan(full)["destinations"][0]["account"] == "hospitaldr"


def test_a_gcs_key_is_a_mounted_file_never_an_environment_variable():
    docs = backup.plan(body(destinations=[LOCAL, GCS]), FACTS)
    for doc in docs:  # every Job of the policy reaches the bucket: backups, prune, maintenance
        p = pod(doc)
        agent = p["containers"][0]
        assert {"name": "gcs-1", "mountPath": "/etc/lifeline/gcs/gcs", "readOnly": True} in agent["volumeMounts"]
        assert {"name": "gcs-1", "secret": {"secretName": "pacs-gcs", "defaultMode": 0o444,
                                            "items": [{"key": "key.json", "path": "key.json"}]}} in p["volumes"]
        assert not [e for e in agent["env"] if "GOOGLE" in e["name"] or "valueFrom" in e], agent["env"]
        assert job_plan(doc)["destinations"][1] == {"name": "gcs", "offSite": True,
                                                    "repository": "gs://hospital-dr/pacs",
                                                    "credentialsFile": "/etc/lifeline/gcs/gcs/key.json"}
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_a_missing_container_or_bucket_is_named_by_its_field():
    def problems(dest) -> list[str]:
        return [str(p) for p in problems_in_manifest(body(destinations=[dest]))[2]]

    no_container = {"name": "azure", "azure": {"credentialsSecret": "pacs-azure"}}
    assert problems(no_container) == ["spec.destinations[0].azure.container: is required"]
    no_bucket = {"name": "gcs", "gcs": {"prefix": "pacs", "credentialsSecret": "pacs-gcs"}}
    assert problems(no_bucket) == ["spec.destinations[0].gcs.bucket: is required"]
    bad = {"name": "azure", "azure": {"container": "PACS_DR", "credentialsSecret": "pacs-azure"}}
    assert problems(bad)[0].startswith("spec.destinations[0].azure.container: 'PACS_DR' does not have")
    no_secret = {"name": "gcs", "gcs": {"bucket": "hospital-dr"}}
    assert problems(no_secret) == ["spec.destinations[0].gcs.credentialsSecret: is required"]


def test_a_continuous_source_refuses_azure_and_gcs_destinations():
    b = body(destinations=[LOCAL, GCS])
    b["spec"]["source"] = {"continuous": {"claimName": "wal"}}
    [problem] = problems_in_manifest(b)[2]
    assert "a continuous source ships its segments to s3 and filesystem destinations only; gcs" in str(problem)


def test_the_status_names_a_missing_credentials_secret_and_a_missing_key():
    spec = backup.parse_spec(body(destinations=[AZURE, GCS]))
    assert backup_status.required_refs(spec) == ["pvc/pacs-data", "secret/pacs-azure", "secret/pacs-gcs",
                                                 "secret/pacs-key"]

    def reachable(refs):
        refs = {"pvc/pacs-data": Ref(True), "secret/pacs-key": Ref(True, frozenset({"key"})), **refs}
        patch = backup_status.plan_status(body(destinations=[AZURE, GCS]),
                                          Inputs(now=NOW, refs=refs, cron_jobs=[("pacs-full", "0 1 * * *")])).patch
        return next(c for c in patch["conditions"] if c["type"] == "DestinationsReachable")

    c = reachable({"secret/pacs-azure": Ref(False), "secret/pacs-gcs": Ref(False)})
    assert (c["status"], c["reason"]) == ("False", "SecretNotFound")
    assert c["message"].startswith("destination azure (Azure credentials): Secret hospital/pacs-azure does not exist: "
                                   "create it with the keys AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY")
    assert "destination gcs (GCS service account key): Secret hospital/pacs-gcs does not exist: create it with the " \
           "keys key.json" in c["message"]
    c = reachable({"secret/pacs-azure": Ref(True, frozenset({"AZURE_STORAGE_ACCOUNT_NAME"})),
                   "secret/pacs-gcs": Ref(True, frozenset({"key.json"}))})
    assert (c["reason"], c["message"]) == ("SecretKeyMissing", (
        "destination azure (Azure credentials): Secret hospital/pacs-azure has no credential: give it "
        "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, or AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and "
        "AZURE_TENANT_ID (it has: AZURE_STORAGE_ACCOUNT_NAME)"))
    c = reachable({"secret/pacs-azure": Ref(True, frozenset({"AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_SAS_TOKEN"})),
                   "secret/pacs-gcs": Ref(True, frozenset({"key.json"}))})
    assert c["reason"] == "NotProbedYet", c


def point(*destinations: str) -> dict:
    return {"metadata": {"name": "pacs-20261123-020000"},
            "spec": {"manifestChecksum": "blake3:x",
                     "copies": [{"destination": d, "snapshotId": f"{d}-id"} for d in destinations]}}


def test_a_restore_reads_an_object_store_copy_with_its_own_credentials_only():
    b = body(destinations=[LOCAL, AZURE, GCS])
    spec = backup.parse_spec(b)
    assert restore_job.choose_copy(point("local", "gcs"), spec)["destination"] == "gcs", "readable from anywhere"
    target = restore_job.RestoreTarget(claim_name="restored")
    job = restore_job.restore_job(point("local", "azure", "gcs"), b, target, namespace="sandbox", name="r",
                                  facts=FACTS, destination="gcs")
    p = job["spec"]["template"]["spec"]
    agent = p["containers"][0]
    plan = json.loads(agent["env"][0]["value"])
    assert plan["destinations"] == [{"name": "gcs", "offSite": True, "repository": "gs://hospital-dr/pacs",
                                     "credentialsFile": "/etc/lifeline/gcs/gcs/key.json"}]
    assert {"name": "gcs-2", "mountPath": "/etc/lifeline/gcs/gcs", "readOnly": True} in agent["volumeMounts"]
    assert not [e for e in agent["env"] if e["name"].startswith("LIFELINE_AZURE_")], "only the copy read"
    assert restore_job.secrets_needed(spec, {"destination": "gcs"}) == ["pacs-gcs", "pacs-key"]
    job = restore_job.restore_job(point("azure"), b, target, namespace="sandbox", name="r", facts=FACTS)
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "LIFELINE_AZURE_1_ACCOUNT_KEY" in env and not any(v["name"].startswith("gcs-") for v in
                                                              job["spec"]["template"]["spec"]["volumes"])
    assert restore_job.secrets_needed(spec, {"destination": "azure"}) == ["pacs-azure", "pacs-key"]
    kubernetes_validate.validate(job, "1.30", strict=True)


def test_a_drill_sandbox_lets_the_restore_reach_the_store_and_copies_its_secret():
    b = body(destinations=[LOCAL, AZURE, GCS])
    spec = backup.parse_spec(b)
    assert drill_sandbox.egress_ports(spec, {"destination": "azure"}, None) == [443]
    dest = json.loads(json.dumps(AZURE))
    dest["azure"]["endpoint"] = "http://127.0.0.1:10000/devstoreaccount1"
    spec = backup.parse_spec(body(destinations=[dest]))
    assert drill_sandbox.egress_ports(spec, {"destination": "azure"}, None) == [10000]


def test_each_destination_agent_gets_only_its_own_credentials():
    base = {"PATH": "/bin", "LIFELINE_JOB_PLAN": "{}", "AWS_ACCESS_KEY_ID": "pod-wide",
            "LIFELINE_S3_0_ACCESS_KEY_ID": "s3-id", "LIFELINE_S3_0_SECRET_ACCESS_KEY": "s3-secret",
            "LIFELINE_AZURE_1_ACCOUNT_NAME": "hospitaldr", "LIFELINE_AZURE_1_ACCOUNT_KEY": "az-key",
            "LIFELINE_AZURE_2_SAS_TOKEN": "other-sas", "AZURE_STORAGE_ACCOUNT_KEY": "pod-wide",
            "AZURE_CLIENT_ID": "workload-identity", "LIFELINE_AZURE_ALLOW_HTTP": "1",
            "GOOGLE_APPLICATION_CREDENTIALS": "/elsewhere.json", "GOOGLE_SERVICE_ACCOUNT_KEY": "{...}"}
    azure = DestinationPlan(name="azure", repository="azure://pacs-dr/pacs", credentials_env="LIFELINE_AZURE_1_",
                            endpoint="http://127.0.0.1:10000/devstoreaccount1")
    env = destination_env(azure, base)
    assert {k: v for k, v in env.items() if k.startswith(("AZURE_", "AWS_", "LIFELINE_"))} == {
        "AZURE_STORAGE_ACCOUNT_NAME": "hospitaldr", "AZURE_STORAGE_ACCOUNT_KEY": "az-key",
        "AZURE_STORAGE_ENDPOINT": "http://127.0.0.1:10000/devstoreaccount1", "AZURE_CLIENT_ID": "workload-identity",
        "LIFELINE_AZURE_ALLOW_HTTP": "1"}
    gcs = DestinationPlan(name="gcs", repository="gs://hospital-dr/pacs",
                          credentials_file="/etc/lifeline/gcs/gcs/key.json")
    env = destination_env(gcs, base)
    assert {k: v for k, v in env.items() if k.startswith(("GOOGLE_", "AWS_", "LIFELINE_S3", "LIFELINE_AZURE_1"))} == {
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/lifeline/gcs/gcs/key.json"}
    s3 = DestinationPlan(name="s3", repository="s3://b/p", credentials_env="LIFELINE_S3_0_")
    env = destination_env(s3, base)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("s3-id", "s3-secret")
    assert not any(k.startswith("LIFELINE_AZURE_1") for k in env)


# ---- the maintenance CronJob ---------------------------------------------------------------------


def test_maintenance_runs_weekly_after_prune_at_a_spread_minute_unless_scheduled():
    docs = by_name(backup.plan(body(), FACTS))
    cron = docs["pacs-maintenance"]
    minute, hour, dom, month, dow = cron["spec"]["schedule"].split()
    assert (dom, month, dow) == ("*", "*", "0") and hour in ("6", "7") and 0 <= int(minute) < 60
    prune_hour = int(docs["pacs-prune"]["spec"]["schedule"].split()[1])
    assert prune_hour < int(hour), "the repack comes after the day's prune"
    assert len({backup.maintenance_schedule("hospital", n) for n in ("pacs", "lis", "ris", "his")}) > 1, "spread"
    p = pod(cron)
    assert p["containers"][0]["args"] == ["maintenance"]
    plan = job_plan(cron)
    assert (plan["operation"], plan["maxUnused"], plan["lockWait"]) == ("maintenance", 10, 1800)
    assert plan["destinations"] == job_plan(docs["pacs-full"])["destinations"], "every destination"
    assert cron["spec"]["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/component"] == "maintenance"
    kubernetes_validate.validate(cron, "1.30", strict=True)

    mine = by_name(backup.plan(body(maintenance={"schedule": "30 2 * * 6", "maxUnused": 0}, suspend=True), FACTS))
    cron = mine["pacs-maintenance"]
    assert (cron["spec"]["schedule"], cron["spec"]["suspend"]) == ("30 2 * * 6", True)
    assert job_plan(cron)["maxUnused"] == 0


def test_a_maintenance_summary_of_eight_destinations_fits_the_termination_message():
    big = 10 ** 15
    summary = MaintenanceSummary(
        repacked=[Repacked(destination=f"destination-{i}", bytes_before=big, bytes_after=big - 1, packs_before=10 ** 6,
                           packs_after=10 ** 6, packs_rewritten=10 ** 5, packs_deleted=10 ** 5, bytes_copied=big,
                           damaged=3, seconds=86399.999) for i in range(7)],
        failures=[DestinationFailed(destination="destination-7", exit_code=3, error="x" * 2000)])
    text = render(summary)
    assert len(text.encode()) <= 4096
    back, problem = read_summary(text, MaintenanceSummary)
    assert problem is None and [r.bytes_before for r in back.repacked] == [big] * 7
    assert back.failures[0].destination == "destination-7"


def job(phase: str, **extra) -> dict:
    return {"name": "pacs-maintenance-29401560", "uid": "j", "namespace": "hospital", "policy": "pacs",
            "operation": "maintenance", "trigger": "Schedule", "type": None, "created": "2026-11-22T06:10:00Z",
            "start": "2026-11-22T06:10:00Z", "completion": "2026-11-22T06:12:00Z" if phase != "Running" else None,
            "phase": phase, **extra}


def test_a_recorded_maintenance_job_is_the_policys_last_maintenance():
    facts = backup_points.job_fact({"metadata": {"name": "m", "labels": {
        "app.kubernetes.io/component": "maintenance", "dr.lifeline.io/policy": "pacs"}}})
    assert facts["operation"] == "maintenance"
    summary = MaintenanceSummary(repacked=[Repacked(destination="local", bytes_before=20975444, bytes_after=15731356,
                                                    packs_rewritten=4, packs_deleted=1)],
                                 failures=[DestinationFailed(destination="offsite", exit_code=1,
                                                             error="the repository is locked")])
    record = backup_points.result_of(job("Succeeded"), summary, "agent exited 0", None)
    assert record.operation == "maintenance" and record.repacked == {"local": [20975444, 15731356, 4, 1]}
    done = job("Succeeded", recorded="Succeeded", result=json.loads(record.to_annotation()))
    patch = backup_status.plan_status(body(), Inputs(now=NOW, jobs=[done],
                                                     cron_jobs=[("pacs-full", "0 1 * * *")])).patch
    assert patch["lastMaintenance"] == {
        "job": "pacs-maintenance-29401560", "startTime": "2026-11-22T06:10:00Z", "outcome": "Succeeded",
        "completionTime": "2026-11-22T06:12:00Z", "bytesBefore": 20975444, "bytesAfter": 15731356,
        "destinations": [{"name": "local", "bytesBefore": 20975444, "bytesAfter": 15731356, "packsRewritten": 4,
                          "packsDeleted": 1}],
        "message": "local: 20975444 -> 15731356 bytes (4 packs rewritten, 1 deleted); offsite: failed: the "
                   "repository is locked"}
    assert "lastBackup" not in patch, "a repack is no backup"
    running = backup_status.plan_status(body(), Inputs(now=NOW, jobs=[job("Running")],
                                                       cron_jobs=[("pacs-full", "0 1 * * *")])).patch
    assert running["lastMaintenance"]["outcome"] == "Running"


@pytest.mark.parametrize("kind", ["azure", "gcs"])
def test_the_examples_name_the_new_kinds(kind):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "examples"
    found = [p.name for p in root.glob("backuppolicy-*.yaml")
             if any(kind in d for d in yaml.safe_load(p.read_text())["spec"]["destinations"])]
    assert found, f"no example BackupPolicy has a {kind} destination"
