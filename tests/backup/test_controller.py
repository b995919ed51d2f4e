"""The BackupPolicy controller against the real API server: CronJobs follow the spec, status follows
the facts, failures are loud, RPO breaches show when (injected) time passes, and a resync writes nothing."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from lifeline.cli import main
from lifeline.clock import rfc3339
from lifeline.clock import parse_time
from lifeline.observability import audit
from tests.integration.operator_harness import metric, until

from .conftest import cond, points, policy, settled, settled_by, stored, unchanged, wait_event

CRONJOBS = "batch/v1/cronjobs"


def cronjob(kube, name):
    return kube.stored(CRONJOBS, None, name)


def jobs(kube):
    return kube.objects("jobs")



async def test_cronjobs_follow_the_spec_through_update_suspend_and_delete(seeded, kube):
    async with kube.operator():
        kube.create(policy())
        obj = await settled(kube)
        names = ("pacs-full", "pacs-incremental", "pacs-prune", "pacs-maintenance")
        await kube.wait_for(lambda: all(cronjob(kube, n) for n in names))
        assert obj["status"]["cronJobs"] == list(names)
        assert (cond(obj, "Ready")["status"], cond(obj, "Ready")["reason"]) == ("True", "SpecValid")
        assert kube.count_writes(subresource="status") == 1, "one status write for a new policy"
        failed = [(w.method, w.path, w.status) for w in kube.writes if (w.status or 500) >= 400]
        assert failed == []
        uid = cronjob(kube, "pacs-incremental")["metadata"]["uid"]

        # a schedule change replaces the CronJob in place (same object, new schedule)
        before = len(kube.writes)
        kube.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"incremental": "*/5 * * * *"}}})
        await kube.wait_for(lambda: cronjob(kube, "pacs-incremental")["spec"]["schedule"] == "*/5 * * * *")
        changed = cronjob(kube, "pacs-incremental")
        assert changed["metadata"]["uid"] == uid
        assert changed["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 600
        await settled(kube, generation=2)
        assert kube.count_writes(CRONJOBS, since=before, method="PUT") == 1
        assert kube.count_writes(CRONJOBS, since=before, method="POST") == 0

        # a schedule kind that leaves the spec takes its CronJob with it
        kube.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"incremental": None}}})
        await kube.wait_for(lambda: cronjob(kube, "pacs-incremental") is None)
        obj = await settled(kube, generation=3)
        assert obj["status"]["cronJobs"] == ["pacs-full", "pacs-prune", "pacs-maintenance"]

        # suspend reaches every CronJob; running Jobs are not touched
        kube.patch("BackupPolicy", "pacs", {"spec": {"suspend": True}})
        await kube.wait_for(lambda: all(cronjob(kube, n)["spec"]["suspend"]
                                        for n in ("pacs-full", "pacs-prune", "pacs-maintenance")))
        obj = await settled(kube, generation=4)
        assert "suspended" in cond(obj, "Ready")["message"]

        # a CronJob deleted by hand comes back; one edited by hand is put right
        kube.delete(CRONJOBS, "pacs-full")
        await kube.wait_for(lambda: cronjob(kube, "pacs-full") is not None)
        kube.patch(CRONJOBS, "pacs-prune", {"spec": {"suspend": False}})
        await kube.wait_for(lambda: cronjob(kube, "pacs-prune")["spec"]["suspend"] is True)

        # deleting the policy lets the garbage collector take its CronJobs
        kube.delete("BackupPolicy", "pacs")
        await kube.wait_for(lambda: not any(cronjob(kube, n) for n in names))


async def test_a_resync_of_unchanged_policies_writes_nothing(seeded, kube, clock):
    his = policy("his", rpo="5m", incremental="*/5 * * * *")
    async with kube.operator(clock=clock) as first:
        kube.create(policy())
        kube.create(his)
        await settled(kube)
        await settled(kube, "his")
        result = await kube.run_cronjob("pacs-full")
        assert result.phase == "Succeeded"
        await kube.wait_for(lambda: stored(kube)["status"].get("recoveryPoints") == 1
                                and points(kube)[0].get("status", {}).get("phase") == "Available"
                                and (stored(kube)["status"].get("lastBackup") or {}).get("outcome") == "Succeeded",
                                timeout=20)
        await settled_by(first)  # our own writes came back through the watch and needed nothing more
    before = len(kube.writes)
    async with kube.operator(clock=clock) as ctx:
        await until(lambda: unchanged(ctx) >= 6, timeout=20)  # the listing, CronJob/Job events and timer rounds
        await until(lambda: metric(ctx, "lifeline_reconciles_total", kind="RecoveryPoint", result="unchanged") >= 1)
        assert kube.count_writes(since=before) == 0, [(w.method, w.path) for w in kube.writes[before:]]
        assert metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="written") == 0


async def test_a_failed_job_keeps_ready_and_says_why(kube, clock, volumes, tmp_path):
    from lifeline.devstack.notice_receiver import NoticeReceiver

    for claim in ("pacs-data", "backup-local", "backup-offsite"):
        kube.claim(claim, volumes[claim])
    kube.secret("pacs-key", {"key": "lifeline-key-v1 not-a-key"})  # a key the provider refuses
    receiver = await NoticeReceiver(tmp_path / "notices.jsonl").start()
    async with kube.operator(clock=clock, notification_targets=json.dumps(receiver.targets())) as ctx:
        kube.create(policy(notify=["ward-screens"]))
        await settled(kube)
        result = await kube.run_cronjob("pacs-full")
        assert result.phase == "Failed"
        obj = await kube.wait_for(lambda: (o := stored(kube)) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o,
                                      timeout=20)
        assert cond(obj, "Ready")["status"] == "True"
        keys = cond(obj, "KeysAvailable")
        assert (keys["status"], keys["reason"]) == ("False", "KeyRefused"), keys
        assert "the latest backup could not use the key secret://pacs-key/key" in keys["message"]
        assert obj["status"]["lastBackup"]["job"] == result.job
        assert obj["status"].get("recoveryPoints", 0) == 0 and points(kube) == []
        for dest in ("local", "offsite"):
            assert metric(ctx, "lifeline_backup_failures_total", namespace=kube.namespace, policy="pacs", tier="B",
                          destination=dest, reason="BackupFailed") == 1
        [event] = await wait_event(kube, "pacs", "BackupFailed")
        assert event["type"] == "Warning"
        assert "key file" in event["message"] and "agent exited 1" in event["message"], event["message"]
        job = kube.stored("batch/v1/jobs", None, result.job)
        assert job["metadata"]["annotations"]["dr.lifeline.io/recorded"] == "Failed"
        await kube.wait_for(lambda: "BackupFailed" in receiver.titles("ward-screens"), timeout=20)  # spec.notify
    await receiver.stop()


async def test_rpo_breach_and_recovery_follow_the_clock(seeded, kube, clock):
    async with kube.operator(clock=clock) as ctx:
        kube.create(policy())
        await settled(kube)
        await kube.run_cronjob("pacs-full")
        obj = await kube.wait_for(lambda: cond(o := stored(kube), "RPOMet").get("reason") == "WithinRPO" and o,
                                  timeout=20)
        # The agent runs on real time: the frozen clock is moved to a millisecond past the RPO, counted
        # from the data's time (the point's start, not the Job's end), so that the next backup, which
        # starts more than a millisecond later in real time (a backup can take less than a second),
        # is within the RPO again.
        backed_up = parse_time(obj["status"]["lastSuccessfulBackupTime"])
        as_of = parse_time(points(kube)[-1]["spec"]["startTime"])
        clock.advance((as_of - clock.now()).total_seconds() + 15 * 60 + 0.001)
        obj = await kube.wait_for(lambda: (o := stored(kube)) and
                                  cond(o, "RPOMet").get("status") == "False" and o, timeout=10)
        met = cond(obj, "RPOMet")
        assert met["reason"] == "RPOBreached"
        assert f"as of {rfc3339(as_of)}: the RPO of 15m (900s) ran out at {rfc3339(as_of + timedelta(minutes=15))}" \
            in met["message"], met["message"]
        assert met["lastTransitionTime"] == rfc3339(clock.now())
        rpo = obj["status"]["currentRPOSeconds"]
        assert rpo == 900, "the data is 900.001 s old by the operator's clock; the status counts whole seconds"
        await until(lambda: metric(ctx, "lifeline_rpo_seconds", namespace=kube.namespace,
                                   policy="pacs", tier="B") == pytest.approx(900.001, abs=1e-6))
        breach = await wait_event(kube, "pacs", "RPOBreached")
        assert len(breach) == 1 and breach[0]["type"] == "Warning"

        incremental = await kube.run_cronjob("pacs-incremental")
        obj = await kube.wait_for(lambda: (o := stored(kube)) and
                                  cond(o, "RPOMet").get("status") == "True" and o, timeout=30)
        assert obj["status"]["lastBackup"]["job"] == incremental.job
        assert parse_time(obj["status"]["lastSuccessfulBackupTime"]) >= backed_up  # to the second: both can be
        assert obj["status"]["currentRPOSeconds"] < 900
        recovered = await wait_event(kube, "pacs", "RPORecovered")
        assert len(recovered) == 1 and recovered[0]["type"] == "Normal"


async def test_backup_now_runs_one_job_per_new_annotation_value(seeded, kube, clock):
    async with kube.operator(clock=clock) as ctx:
        kube.create(policy())
        await settled(kube)
        kube.patch("BackupPolicy", "pacs", {"metadata": {"annotations": {"dr.lifeline.io/backup-now": "one"}}})
        await kube.wait_for(lambda: stored(kube)["status"].get("backupNowHandled") == "one")
        [job] = jobs(kube)
        assert job["metadata"]["labels"]["dr.lifeline.io/trigger"] == "on-demand"
        [run] = await kube.run_pending()
        assert run.phase == "Succeeded"
        obj = await kube.wait_for(lambda: (o := stored(kube)) and o["status"].get("recoveryPoints") == 1
                                      and (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded" and o)
        assert obj["status"]["lastBackup"]["trigger"] == "OnDemand"
        assert points(kube)[0]["spec"]["tags"]["trigger"] == "OnDemand"

        # the same value again (a GitOps re-apply) starts nothing
        seen = unchanged(ctx)
        kube.patch("BackupPolicy", "pacs", {"metadata": {"labels": {"touched": "yes"}}})
        await settled_by(ctx, seen)  # the patch was reconciled, and wrote nothing
        assert len(jobs(kube)) == 1

        # `lifeline backup now` sets a new value: one more Job, a full one
        code = await asyncio.to_thread(main, ["backup", "now", "pacs", "-n", kube.namespace, "--type", "full",
                                              "--kubeconfig", str(kube.cluster.kubeconfig)])
        assert code == 0
        await kube.wait_for(lambda: len(jobs(kube)) == 2)
        new = next(j for j in jobs(kube) if j["metadata"]["name"] != job["metadata"]["name"])
        assert new["metadata"]["labels"]["dr.lifeline.io/backup-type"] == "full"
        await kube.wait_for(lambda: stored(kube)["status"].get("backupNowHandled") ==
                                stored(kube)["metadata"]["annotations"]["dr.lifeline.io/backup-now"])


async def test_deletion_policy_decides_what_happens_to_points(seeded, kube, clock):
    async with kube.operator(clock=clock):
        kube.create(policy())
        await settled(kube)
        await kube.run_cronjob("pacs-full")
        await kube.wait_for(lambda: len(points(kube)) == 1, timeout=20)
        assert "ownerReferences" not in points(kube)[0]["metadata"]

        # Retain -> Delete: the existing point becomes owned by the policy ...
        kube.patch("BackupPolicy", "pacs", {"spec": {"deletionPolicy": "Delete"}})
        await kube.wait_for(lambda: points(kube)[0]["metadata"].get("ownerReferences"))
        owner = stored(kube)["metadata"]["uid"]
        assert [r["uid"] for r in points(kube)[0]["metadata"]["ownerReferences"]] == [owner]
        # ... and goes with it
        kube.delete("BackupPolicy", "pacs")
        await kube.wait_for(lambda: not points(kube))

        # with Retain, points outlive their policy
        kube.create(policy("kept"))
        await settled(kube, "kept")
        await kube.run_cronjob("kept-full")
        await kube.wait_for(lambda: len(points(kube, "kept")) == 1, timeout=20)
        kube.delete("BackupPolicy", "kept")
        await kube.wait_for(lambda: cronjob(kube, "kept-full") is None)
        assert len(points(kube, "kept")) == 1


async def test_bad_references_each_get_their_own_reason(kube, volumes):
    kube.claim("backup-local", volumes["backup-local"])
    body = policy(rpo="1m")  # a 15-minute schedule cannot meet it
    async with kube.operator() as ctx:
        kube.create(body)
        obj = await settled(kube)
        want = {
            "Ready": ("True", "SpecValid"),
            "RPOAchievable": ("False", "ScheduleTooSparse"),
            "SourceAvailable": ("False", "PVCNotFound"),
            "DestinationsReachable": ("False", "PVCNotFound"),
            "KeysAvailable": ("False", "KeySecretNotFound"),
        }
        got = {t: (cond(obj, t)["status"], cond(obj, t)["reason"]) for t in want}
        assert got == want
        gauge = lambda t: ctx.metrics.registry.get_sample_value(  # noqa: E731 - None when the series is absent
            "lifeline_backup_condition", {"namespace": kube.namespace, "name": "pacs", "type": t})
        await until(lambda: gauge("KeysAvailable") == 0)
        assert {t: gauge(t) for t in want} == {"Ready": 1, "RPOAchievable": 0, "SourceAvailable": 0,
                                               "DestinationsReachable": 0, "KeysAvailable": 0}
        assert gauge("RPOMet") == 0 and gauge("OffSiteCopy") == 0, "Unknown counts as not True"
        assert f"Secret {kube.namespace}/pacs-key does not exist" in cond(obj, "KeysAvailable")["message"]
        assert f"destination offsite: PersistentVolumeClaim {kube.namespace}/backup-offsite does not exist" in \
            cond(obj, "DestinationsReachable")["message"]
        assert metric(ctx, "lifeline_rpo_achievable", namespace=kube.namespace, policy="pacs", tier="B") == 0
        await until(lambda: kube.count_writes("events", method="POST") >= 4)
        reasons = sorted(e["reason"] for e in kube.events("pacs"))
        assert reasons == ["KeySecretNotFound", "PVCNotFound", "PVCNotFound", "ScheduleTooSparse"]

        # the missing PVC appears: the next timer round sees it, and says so once
        kube.claim("pacs-data", volumes["pacs-data"])
        obj = await kube.wait_for(lambda: cond(stored(kube), "SourceAvailable").get("status") == "True"
                                      and stored(kube), timeout=10)
        assert cond(obj, "SourceAvailable")["reason"] == "PVCFound"
        await until(lambda: kube.count_writes("events", method="POST") >= 5)
        assert [e["type"] for e in kube.events("pacs", "PVCFound")] == ["Normal"]
        await until(lambda: gauge("SourceAvailable") == 1)

        # deleting the policy drops its series and leaves an audit record
        records = []
        audit.add_sink(records.append)
        try:
            kube.delete("BackupPolicy", "pacs")
            await until(lambda: gauge("Ready") is None and records)
        finally:
            audit.remove_sink(records.append)
        [record] = records
        assert (record["action"], record["subject"]["kind"], record["subject"]["name"]) == (
            "deletion", "BackupPolicy", "pacs")
        assert record["details"]["deletionPolicy"] == "Retain"


async def test_status_command_reports_each_policy(seeded, kube, capsys):
    async with kube.operator():
        kube.create(policy())
        await settled(kube)
        code = await asyncio.to_thread(main, ["backup", "status", "-n", kube.namespace,
                                              "--kubeconfig", str(kube.cluster.kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:2] == ["NAME", "TIER"]
    assert row.split()[:2] == ["pacs", "B"] and "Unknown" in row


async def test_a_policy_that_asks_for_sm4_gets_sm4_repositories(seeded, kube, clock, volumes, key_text):
    """encryption.cipher reaches the agent's init through the Job plan: every destination's repository is
    created with SM4-GCM, and its config (authenticated) says so."""
    import json

    body = policy()
    body["spec"]["encryption"]["cipher"] = "sm4-gcm"
    async with kube.operator(clock=clock):
        kube.create(body)
        await settled(kube)
        kube.patch("BackupPolicy", "pacs", {"metadata": {"annotations": {"dr.lifeline.io/backup-now": "sm4"}}})
        await kube.wait_for(lambda: jobs(kube))
        [run] = await kube.run_pending()
        assert run.phase == "Succeeded", kube.job_log(run.job)
    for config in (volumes["backup-local"] / "repos" / "pacs" / "config", volumes["backup-offsite"] / "pacs" / "config"):
        assert json.loads(config.read_text())["encryption"] == "sm4-gcm"
