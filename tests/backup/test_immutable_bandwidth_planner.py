"""Immutable destinations and bandwidth limits in a BackupPolicy (issue 18): the validation, what the
planners hand every Job (backup, prune, maintenance, restore, shred), and what the status says."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import kubernetes_validate
import pytest

from lifeline.agent import jobs
from lifeline.api.validation import problems_in_manifest
from lifeline.crd import crd_for
from lifeline.api.registry import BY_KIND
from lifeline.planning import backup, backup_status, recoverypoint_shred, restore_job
from lifeline.planning.backup_status import Inputs, Ref

from .conftest import policy

FACTS = backup.Facts("ghcr.io/lifeline-dr/lifeline:1.2.3")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
LOCAL = {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"},
         "bandwidth": {"upload": "200MiB"}}
OFFSITE = {"name": "offsite", "offSite": True,
           "s3": {"bucket": "pacs-dr", "prefix": "pacs", "credentialsSecret": "pacs-s3"},
           "immutable": {"mode": "Compliance", "days": 30},
           "bandwidth": {"upload": "50MiB", "download": "800KiB"}}
MUTABLE_OFFSITE = {"name": "cold", "offSite": True, "s3": {"bucket": "pacs-cold", "credentialsSecret": "pacs-s3"}}


def body(**spec) -> dict:
    b = policy(**spec)
    b["metadata"].update(namespace="hospital", uid="uid-1", generation=1, creationTimestamp="2026-11-23T10:00:00Z")
    return b


def plan_of(pod: dict) -> dict:
    return json.loads(next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "LIFELINE_JOB_PLAN"))


# ---- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dest, why", [
    ({"filesystem": {"claimName": "nfs"}}, "a directory on a PVC has no lock"),
    ({"azure": {"container": "pacs-dr", "credentialsSecret": "az"}}, "Azure's immutable storage is not wired in yet"),
    ({"gcs": {"bucket": "dr-bucket", "credentialsSecret": "gcs"}}, "object retention is not wired in yet"),
])
def test_immutable_is_for_s3_destinations_only_and_says_why(dest, why):
    b = body(destinations=[{"name": "dr", "immutable": {"days": 30}, **dest}])
    problems = [str(p) for p in problems_in_manifest(b)[2]]
    assert len(problems) == 1 and "destination dr: immutable needs an s3 destination (a bucket with S3 Object Lock)" \
        in problems[0] and why in problems[0], problems
    assert not problems_in_manifest(body(destinations=[OFFSITE, LOCAL]))[2]


def test_the_crd_carries_the_rules_to_the_api_server():
    spec = crd_for(BY_KIND["BackupPolicy"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    dest = spec["properties"]["destinations"]["items"]
    assert {"rule": "!has(self.immutable) || has(self.s3)",
            "message": "immutable needs an s3 destination on a bucket with S3 Object Lock (docs/immutability.md)"} \
        in dest["x-kubernetes-validations"]
    assert dest["properties"]["immutable"]["properties"]["mode"]["enum"] == ["Compliance", "Governance"]
    assert dest["properties"]["bandwidth"]["properties"]["upload"]["pattern"].startswith("^[0-9]+")
    assert spec["properties"]["objectives"]["properties"]["requireImmutableOffSite"]["type"] == "boolean"


@pytest.mark.parametrize("rate, why", [("50 Mbit/s", "required form"), ("100", "at least 1024"),
                                       ("fast", "required form")])
def test_a_bandwidth_that_is_no_rate_is_refused(rate, why):
    problems = [str(p) for p in problems_in_manifest(body(destinations=[{**LOCAL, "bandwidth": {"download": rate}}]))[2]]
    assert len(problems) == 1 and "bandwidth.download" in problems[0] and why in problems[0], problems


# ---- what every Job is handed ------------------------------------------------------------------------------


def test_the_policys_limits_and_immutability_reach_every_job():
    b = body(destinations=[LOCAL, OFFSITE])
    docs = {d["metadata"]["name"]: d for d in backup.plan(b, FACTS)}
    want = [{"name": "local", "offSite": False, "repository": "file:///destinations/local/repos/pacs",
             "bandwidth": {"upload": "200MiB"}},
            {"name": "offsite", "offSite": True, "repository": "s3://pacs-dr/pacs", "region": "us-east-1",
             "credentialsEnv": "LIFELINE_S3_1_", "immutable": {"mode": "compliance", "days": 30},
             "bandwidth": {"upload": "50MiB", "download": "800KiB"}}]
    for name in ("pacs-full", "pacs-incremental", "pacs-prune", "pacs-maintenance"):
        doc = docs[name]
        kubernetes_validate.validate(doc, "1.30", strict=True)
        assert plan_of(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])["destinations"] == want, name
    assert plan_of(backup.on_demand_job(b, FACTS, "now")["spec"]["template"]["spec"])["destinations"] == want

    # the backup Job hands them to each destination's agent (init, backup, prune, repack, points)
    plan = backup.job_plan("hospital", "pacs", backup.parse_spec(b), "backup", "full")
    task = jobs.Task(plan, "file:///tmp/key")
    local, offsite = plan.destinations
    argv = jobs._backup_args(task, offsite, ["/source"])
    assert argv[argv.index("--limit-upload") + 1] == "50MiB" and argv[argv.index("--limit-download") + 1] == "800KiB"
    argv = jobs._backup_args(task, local, ["/source"])
    assert argv[argv.index("--limit-upload") + 1] == "200MiB" and "--limit-download" not in argv
    assert jobs.limits_of(offsite).download == 800 * 1024 and jobs.limits_of(
        backup.destination_plan(0, backup.parse_spec(body()).destinations[0])) is None

    # a restore (and a drill's) reads through the destination's download limit
    point = {"metadata": {"name": "pacs-20261123-020000"},
             "spec": {"manifestChecksum": "blake3:x", "copies": [{"destination": "offsite", "snapshotId": "id"}]}}
    job = restore_job.restore_job(point, b, restore_job.RestoreTarget(claim_name="restored"), namespace="hospital",
                                  name="r", facts=FACTS)
    assert plan_of(job["spec"]["template"]["spec"])["destinations"] == [want[1]]


def test_the_shred_job_carries_the_key_only_where_a_destination_is_immutable():
    def shred_pod(destinations, key="secret://pacs-key/key"):
        b = body(destinations=destinations, deletionPolicy="Shred", encryption={"keyRef": key})
        point = {"metadata": {"name": "full", "namespace": "hospital", "uid": "u",
                              "annotations": {recoverypoint_shred.ANN_PLAN: recoverypoint_shred.snapshot(b)}},
                 "spec": {"copies": [{"destination": d["name"], "snapshotId": "s"} for d in destinations]}}
        job = recoverypoint_shred.shred_job(point, recoverypoint_shred.ShredFacts("img", (("VAULT_ADDR", "x"),)), 1)
        kubernetes_validate.validate(job, "1.30", strict=True)
        return job["spec"]["template"]["spec"]

    pod = shred_pod([LOCAL, OFFSITE])
    assert {"name": "key", "mountPath": "/etc/lifeline/key", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert any(v["name"] == "key" and v["secret"]["secretName"] == "pacs-key" and v["secret"]["optional"]
               for v in pod["volumes"]), "a Secret gone already: the pod starts, the shred says it needs the key"
    plan = plan_of(pod)
    assert plan["key"] == {"ref": "secret://pacs-key/key", "file": "/etc/lifeline/key/key"}
    assert plan["destinations"][1]["immutable"] == {"mode": "compliance", "days": 30}
    pod = shred_pod([LOCAL, OFFSITE], key="vault-transit://lifeline-pacs")
    assert pod["automountServiceAccountToken"] is True, "Vault's Kubernetes auth unwraps the epoch's key"
    # mutable destinations only: as before, no key at all
    pod = shred_pod([LOCAL, MUTABLE_OFFSITE], key="vault-transit://lifeline-pacs")
    assert pod["automountServiceAccountToken"] is False and not any(v["name"] == "key" for v in pod["volumes"])
    assert plan_of(pod)["key"] == {"ref": "vault-transit://lifeline-pacs"}


def test_the_shred_job_gives_the_key_to_immutable_copies_only(tmp_path):
    from lifeline.keys import shred_job
    from lifeline.messages import DestinationPlan, ImmutablePlan, KeyPlan, ShredPlan

    key = tmp_path / "mounted"
    key.write_text("k")
    key.chmod(0o444)
    locked = DestinationPlan(name="offsite", repository="s3://b/p", immutable=ImmutablePlan(mode="compliance", days=3))
    plain = DestinationPlan(name="local", repository="file:///r")
    plan = ShredPlan(namespace="h", policy="p", recovery_point="rp", copies=[], actor="a", reason="r",
                     destinations=[plain, locked], key=KeyPlan(ref="secret://k/key", file=str(key)))
    ref = shred_job.key_ref_of(plan, tmp_path)
    assert ref == f"file://{tmp_path}/key" and (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    argv = shred_job._argv(locked, "s", plan, ref)
    assert argv[argv.index("--key") + 1] == ref
    assert "--key" not in shred_job._argv(plain, "s", plan, ref)
    assert shred_job.key_ref_of(plan.model_copy(update={"key": KeyPlan(ref="vault-kv://x")}), tmp_path) == "vault-kv://x"


# ---- the status ---------------------------------------------------------------------------------------------


def _status(b, *copies_at: str):
    points = [{"name": "pacs-20261123-020000", "start": "2026-11-23T02:00:00Z", "completion": "2026-11-23T02:05:00Z",
               "copies": [(d, f"{d}-id") for d in copies_at], "phase": "Available"}] if copies_at else []
    refs = {"pvc/pacs-data": Ref(True), "pvc/backup-local": Ref(True), "secret/pacs-key": Ref(True, frozenset({"key"})),
            "secret/pacs-s3": Ref(True, frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}))}
    patch = backup_status.plan_status(b, Inputs(now=NOW, refs=refs, points=points,
                                                cron_jobs=[("pacs-full", "0 1 * * *")])).patch
    return patch, next(c for c in patch["conditions"] if c["type"] == "OffSiteCopy")


def test_the_status_names_the_immutable_destinations():
    patch, off = _status(body(destinations=[LOCAL, OFFSITE, MUTABLE_OFFSITE]), "local", "offsite", "cold")
    assert [d.get("immutable") for d in patch["destinations"]] == [None, "Compliance, 30 days", None]
    assert (off["status"], off["reason"]) == ("True", "OffSiteCopyStored")
    assert off["message"].endswith("has an off-site copy at offsite (immutable: Compliance, 30 days), cold")


def test_an_immutable_off_site_copy_can_be_required():
    required = {"rpo": "15m", "requireImmutableOffSite": True}
    _, off = _status(body(destinations=[LOCAL, MUTABLE_OFFSITE], objectives=required), "local", "cold")
    assert (off["status"], off["reason"]) == ("False", "NoImmutableOffSiteDestination")
    assert off["message"].startswith("spec.objectives.requireImmutableOffSite: no offSite destination is immutable "
                                     "(cold can be deleted by whoever holds their credentials)")
    b = body(destinations=[LOCAL, OFFSITE, MUTABLE_OFFSITE], objectives=required)
    _, off = _status(b, "local", "cold")  # the immutable copy failed, a mutable one is there
    assert (off["status"], off["reason"]) == ("False", "NoImmutableOffSiteCopy")
    assert "has an off-site copy at cold, none on an immutable destination (offsite)" in off["message"]
    _, off = _status(b, "local", "offsite", "cold")
    assert (off["status"], off["reason"]) == ("True", "OffSiteCopyStored")
    assert off["message"].endswith("has an off-site copy at offsite (immutable: Compliance, 30 days)")
    _, off = _status(b)
    assert (off["status"], off["reason"]) == ("Unknown", "NoBackupYet")
    # without the requirement a mutable off-site copy is enough
    _, off = _status(body(destinations=[LOCAL, OFFSITE, MUTABLE_OFFSITE]), "local", "cold")
    assert (off["status"], off["reason"]) == ("True", "OffSiteCopyStored")


def test_a_continuous_source_takes_no_immutable_destination_yet():
    b = body(destinations=[OFFSITE])
    b["spec"]["source"] = {"continuous": {"claimName": "pacs-data"}}
    problems = [str(p) for p in problems_in_manifest(b)[2]]
    assert problems == ["spec: a continuous source's shipper creates its repositories mutable, so offsite cannot be "
                        "immutable with it yet (docs/immutability.md)"], problems
