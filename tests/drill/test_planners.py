"""The drill planners, pure: which point, when, what the sandbox holds, what the restore pod may do.
And the schedule through the real operator on the real API server: moving the injected clock past
the next run time starts exactly one run."""
from __future__ import annotations

import random
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest

from lifeline.api.restoredrill import PointSelector, RestoreDrillSpec
from lifeline.planning import backup, drill_points, drill_sandbox, drill_schedule, restore_job, restore_pitr
from lifeline.clock import rfc3339
from lifeline.clock import parse_time

from .conftest import backed_up, drill, drill_status, events, last_run, policy, run_drill

NS = "hospital"  # the pure tests' namespace: no API is involved
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
FACTS = backup.Facts("ghcr.io/lifeline-dr/lifeline:test")


def point(name: str, age: timedelta, policy_name: str = "pacs", phase: str = "Available") -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"policyName": policy_name, "type": "full", "completionTime": (NOW - age).isoformat(),
                     "manifestChecksum": "sha256:" + "0" * 64,
                     "copies": [{"destination": "local", "snapshotId": "a" * 64, "repository": "file:///x"}]},
            "status": {"phase": phase}}


POINTS = [point("old", timedelta(days=20)), point("week", timedelta(days=5)), point("day", timedelta(days=1)),
          point("damaged", timedelta(hours=1), phase="Damaged"), point("other", timedelta(minutes=1), "lab")]


class Recorder:
    """A random source that records what it was offered and picks the first."""

    def __init__(self):
        self.offered = None

    def choice(self, items):
        self.offered = [p["metadata"]["name"] for p in items]
        return items[0]


def test_latest_is_the_newest_usable_point_of_the_policy():
    chosen = drill_points.select_point(POINTS, PointSelector(strategy="Latest"), "pacs", NOW, random.Random(1))
    assert chosen["metadata"]["name"] == "day"  # not the damaged one, not the other policy's


def test_random_chooses_only_within_the_window_with_the_injected_source():
    rng = Recorder()
    chosen = drill_points.select_point(POINTS, PointSelector(strategy="Random", window="7d"), "pacs", NOW, rng)
    assert rng.offered == ["week", "day"] and chosen["metadata"]["name"] == "week"
    seen = {drill_points.select_point(POINTS, PointSelector(strategy="Random", window="30d"), "pacs", NOW,
                                      random.Random(seed))["metadata"]["name"] for seed in range(30)}
    assert seen == {"old", "week", "day"}


def test_named_and_none_available():
    assert drill_points.select_point(POINTS, PointSelector(strategy="Named", name="old"), "pacs", NOW,
                                     None)["metadata"]["name"] == "old"
    cases = [(PointSelector(strategy="Named", name="gone"), "NoRecoveryPoint"),
             (PointSelector(strategy="Named", name="other"), "PointOfOtherPolicy"),
             (PointSelector(strategy="Named", name="damaged"), "PointUnusable"),
             (PointSelector(strategy="Random", window="1h"), "NoRecoveryPoint")]
    for selector, reason in cases:
        with pytest.raises(backup.PlanError) as err:
            drill_points.select_point(POINTS, selector, "pacs", NOW, random.Random(1))
        assert err.value.reason == reason, selector
    with pytest.raises(backup.PlanError) as err:
        drill_points.select_point([], PointSelector(), "pacs", NOW, random.Random(1))
    assert err.value.reason == "NoRecoveryPoint" and "lifeline backup now pacs" in err.value.message


@pytest.mark.parametrize("tier, first, second", [
    ("A", "2026-12-01T03:00:00+00:00", "2027-01-01T03:00:00+00:00"),  # monthly
    ("B", "2027-01-01T03:00:00+00:00", "2027-04-01T03:00:00+00:00"),  # quarterly
    ("C", "2027-01-01T03:00:00+00:00", "2027-07-01T03:00:00+00:00"),  # half-yearly
])
def test_schedule_defaults_per_tier_and_the_next_run_time(tier, first, second):
    spec = RestoreDrillSpec(policy_name="pacs")
    trigger, nxt = drill_schedule.due(spec, tier, {}, NOW, NOW)
    assert trigger is None and nxt.isoformat() == first  # creating a drill is not a request to run it
    trigger, nxt = drill_schedule.due(spec, tier, {"nextRunTime": first}, datetime.fromisoformat(first), NOW)
    assert trigger == "schedule" and nxt.isoformat() == second
    assert drill_schedule.max_interval_seconds(spec, tier) == {"A": 32, "B": 93, "C": 185}[tier] * 86400


def test_own_schedule_suspend_and_once():
    spec = RestoreDrillSpec(policy_name="pacs", schedule="30 2 * * 0")
    assert drill_schedule.due(spec, "A", {}, NOW, NOW)[1].isoformat() == "2026-11-29T02:30:00+00:00"
    late = NOW + timedelta(days=30)
    assert drill_schedule.due(RestoreDrillSpec(policy_name="pacs", suspend=True), "A", {}, late, NOW)[0] is None
    once = RestoreDrillSpec(policy_name="pacs", mode="Once")
    assert drill_schedule.due(once, "A", {}, NOW, NOW) == ("once", None)
    assert drill_schedule.due(once, "A", {"history": [{"name": "r"}]}, NOW, NOW) == (None, None)


def _drill_body(**spec) -> dict:
    body = drill(**spec)
    body["metadata"]["namespace"] = NS
    return body


def _sandbox(**spec) -> list[dict]:
    secrets = {"pacs-key": {"metadata": {"name": "pacs-key", "namespace": NS}, "data": {"key": "a2V5"}}}
    body = policy()
    body["metadata"]["namespace"] = NS
    return drill_sandbox.sandbox_objects(_drill_body(**spec), body, POINTS[2], "pacs-drill-1", "sbx", FACTS, secrets)


def test_sandbox_manifests_labels_quota_and_deny_egress():
    objects = _sandbox()
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert objects[0]["kind"] == "Namespace" and objects[-1]["kind"] == "Job"
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["dr.lifeline.io/sandbox"] == "true" and labels["app.kubernetes.io/managed-by"] == "lifeline"
        assert labels["dr.lifeline.io/drill"] == "pacs-drill" and "app.kubernetes.io/name" in labels
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == "sbx"
    assert by[("Namespace", "sbx")]["metadata"]["annotations"]["dr.lifeline.io/drill"] == f"{NS}/pacs-drill"
    assert by[("ResourceQuota", "drill")]["spec"]["hard"] == drill_sandbox.QUOTA
    deny = by[("NetworkPolicy", "default-deny")]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"} and "egress" not in deny
    secret = by[("Secret", "pacs-key")]
    assert secret["data"] == {"key": "a2V5"} and secret["metadata"]["annotations"]["dr.lifeline.io/copied-from"] \
        == f"{NS}/pacs-key"
    assert by[("PersistentVolumeClaim", "restored")]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mirror = by[("PersistentVolumeClaim", "backup-local")]
    assert mirror["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert mirror["metadata"]["annotations"]["dr.lifeline.io/mirror-of"] == f"{NS}/backup-local"
    with pytest.raises(backup.PlanError) as err:
        drill_sandbox.sandbox_objects(_drill_body(), {**policy(), "metadata": {"name": "pacs", "namespace": NS}},
                                      POINTS[2], "r", "sbx", FACTS, {})
    assert err.value.reason == "SecretMissing"


def test_a_repository_claim_is_mirrored_read_only_on_the_same_storage_and_never_deleted_with_it():
    source = {"metadata": {"name": "pvc-1234"},
              "spec": {"capacity": {"storage": "500Gi"}, "accessModes": ["ReadWriteMany"],
                       "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "nfs",
                       "claimRef": {"namespace": NS, "name": "backup-local", "uid": "u-1"},
                       "nfs": {"server": "nas.hospital.internal", "path": "/exports/backup"},
                       "mountOptions": ["nfsvers=4.1"]}}
    secrets = {"pacs-key": {"metadata": {"name": "pacs-key", "namespace": NS}, "data": {"key": "a2V5"}}}
    body = policy()
    body["metadata"]["namespace"] = NS
    objects = drill_sandbox.sandbox_objects(_drill_body(), body, POINTS[2], "pacs-drill-1", "sbx", FACTS, secrets,
                                            volumes={"backup-local": source})
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    [pv] = [o for o in objects if o["kind"] == "PersistentVolume"]
    claim = by[("PersistentVolumeClaim", "backup-local")]
    assert objects.index(pv) < objects.index(claim), "the volume exists before the claim that names it"
    assert pv["spec"]["nfs"] == {"server": "nas.hospital.internal", "path": "/exports/backup", "readOnly": True}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain", "deleting the mirror never deletes backups"
    assert pv["spec"]["claimRef"] == {"namespace": "sbx", "name": "backup-local"}
    assert pv["spec"]["accessModes"] == ["ReadOnlyMany"] and pv["spec"]["storageClassName"] == ""
    assert pv["spec"]["mountOptions"] == ["nfsvers=4.1"] and pv["spec"]["capacity"] == {"storage": "500Gi"}
    assert pv["metadata"]["labels"]["dr.lifeline.io/sandbox-namespace"] == "sbx"
    assert pv["metadata"]["labels"]["dr.lifeline.io/sandbox"] == "true"
    assert claim["spec"]["volumeName"] == pv["metadata"]["name"] and claim["spec"]["storageClassName"] == ""
    assert source["spec"]["nfs"].get("readOnly") is None, "the source volume is not changed"
    # without the source's volume, the claim stays the unbound one an admin binds
    plain = {(o["kind"], o["metadata"]["name"]): o for o in _sandbox()}
    assert "volumeName" not in plain[("PersistentVolumeClaim", "backup-local")]["spec"]
    assert not [o for o in plain.values() if o["kind"] == "PersistentVolume"]


def test_restore_job_runs_a_hardened_pod():
    job = next(o for o in _sandbox() if o["kind"] == "Job")
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] >= 600
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]} and c["resources"]["limits"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["key"]["readOnly"] and mounts["repository"]["readOnly"] and "readOnly" not in mounts["target"]
    # the key is a read-only mounted file, never an environment variable
    assert not [e for e in pod["containers"][0]["env"] if "valueFrom" in e]
    assert {"name": "key", "secret": {"secretName": "pacs-key", "defaultMode": 0o444,
                                      "items": [{"key": "key", "path": "key"}]}} in pod["volumes"]


def test_a_dump_point_restores_through_the_load_container():
    body = policy(source={"command": {"image": "postgres:16", "command": ["pg_dump", "-Fc", "his"]}})
    body["metadata"]["namespace"] = NS
    target = restore_job.RestoreTarget(image="postgres:16", command=("pg_restore", "-d", "postgres"))
    job = restore_job.restore_job(POINTS[2], body, target, namespace="sbx", name="restore", facts=FACTS)
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["prepare"]
    assert [c["name"] for c in pod["containers"]] == ["agent", "load"]
    assert pod["containers"][1]["command"][-3:] == ["pg_restore", "-d", "postgres"]
    with pytest.raises(ValueError):
        restore_job.RestoreTarget(image="x")  # neither a claim nor a command


def next_noon(after: datetime) -> datetime:
    noon = after.replace(hour=12, minute=0, second=0, microsecond=0)
    return noon if noon > after else noon + timedelta(days=1)


async def test_a_scheduled_drill_starts_exactly_one_run_when_the_clock_passes_its_time(seeded, kube, clock):
    async with kube.operator(clock=clock):
        await backed_up(kube)
        kube.create(drill(mode="Scheduled", schedule="0 12 * * *"))
        status = await kube.wait_for(lambda: (st := drill_status(kube)).get("nextRunTime") and st)
        # the first run is the first scheduled time after the drill was created (the API server's time)
        created = parse_time(kube.stored("restoredrills", None, "pacs-drill")["metadata"]["creationTimestamp"])
        planned = next_noon(created)
        assert status["nextRunTime"] == rfc3339(planned) and last_run(kube) == {}
        clock.advance((planned - clock.now()).total_seconds() + 1)
        run = await run_drill(kube)
        assert run["trigger"] == "schedule" and run["startTime"] == rfc3339(planned + timedelta(seconds=1))
        assert run["outcome"] == "Succeeded", run
        # an hour later (still before tomorrow's time) the sandbox's TTL is up: the operator has
        # reconciled past the run time again, and started nothing more
        clock.advance(3601)
        await kube.wait_for(lambda: last_run(kube).get("sandboxDeleted") is True, timeout=20)
        status = drill_status(kube)
        assert [r["name"] for r in status["history"]] == [run["name"]]
        assert status["nextRunTime"] == rfc3339(planned + timedelta(days=1))
        assert len(events(kube, "pacs-drill", "DrillStarted")) == 1
        assert kube.count_writes("namespaces", method="POST") == 1, "one sandbox"


def test_a_point_in_time_drill_restores_with_restore_pitr_and_prefetches_the_wal_into_the_sandbox():
    secrets = {"pacs-key": {"metadata": {"name": "pacs-key", "namespace": NS}, "data": {"key": "a2V5"}}}
    continuous = policy(source={"continuous": {"claimName": "icu-db-wal", "path": "/wal-archive",
                                               "postgres": {"image": "postgres:16"}}}, incremental=None)
    continuous["metadata"]["namespace"] = NS
    body = _drill_body(point={"strategy": "Latest", "targetTime": "latest"})
    objects = drill_sandbox.sandbox_objects(body, continuous, POINTS[2], "pacs-drill-1", "sbx", FACTS, secrets)
    job = objects[-1]
    agent = next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == backup.AGENT)
    assert agent["command"] == restore_pitr.command()
    args = agent["args"]
    assert args[args.index("--target-time") + 1] == "latest"
    assert restore_pitr.PREFETCH in args and "--no-archive" in args  # self-contained, never archives
    assert args[-1] == restore_job.TARGET_MOUNT + drill_sandbox.PITR_DATA  # not the root: lost+found
    assert any(o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == drill_sandbox.RESTORED_CLAIM
               for o in objects)
    # a dump policy has no WAL to replay: refused with what to do, not silently restored without it
    dump = policy(source={"command": {"image": "postgres:16", "command": ["pg_dump", "-Fc", "his"]}})
    dump["metadata"]["namespace"] = NS
    with pytest.raises(backup.PlanError) as err:
        drill_sandbox.sandbox_objects(body, dump, POINTS[2], "pacs-drill-1", "sbx", FACTS, secrets)
    assert err.value.reason == "NotContinuous"


def test_the_point_in_time_drill_example_plans_a_prefetching_restore_of_the_continuous_example():
    import yaml

    root = Path(__file__).resolve().parents[2]
    body = yaml.safe_load((root / "examples" / "restoredrill-icu-charting-pitr.yaml").read_text())
    pol = yaml.safe_load((root / "examples" / "backuppolicy-icu-charting-continuous.yaml").read_text())
    for obj in (body, pol):
        obj["metadata"]["namespace"] = NS
    pt = point("icu-charting-20261123-0100", timedelta(hours=3), "icu-charting")
    pt["spec"]["copies"][0]["destination"] = pol["spec"]["destinations"][0]["name"]
    secrets = {name: {"metadata": {"name": name, "namespace": NS}, "data": {"k": "dg=="}}
               for name in restore_job.secrets_needed(backup.parse_spec(pol), pt["spec"]["copies"][0])}
    objects = drill_sandbox.sandbox_objects(body, pol, pt, "icu-pitr-1", "sbx", FACTS, secrets)
    args = objects[-1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--target-time") + 1] == "latest" and restore_pitr.PREFETCH in args
    verify = drill_sandbox.verify_job(body, pol, "icu-pitr-1", "sbx")
    assert "$LIFELINE_RESTORED" + drill_sandbox.PITR_DATA in verify["spec"]["template"]["spec"]["containers"][0][
        "command"][-1]
