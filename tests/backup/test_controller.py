"""The BackupPolicy controller against the emulator: CronJobs follow the spec, status follows the
facts, failures are loud, RPO breaches show when (injected) time passes, and a resync writes nothing."""
from __future__ import annotations

import asyncio

import kmock

from lifeline.cli import main
from lifeline.observability import audit
from tests.integration.operator_harness import metric, running_operator, until

from .conftest import NS, cond, points, policy, seed_pvc, seed_secret, settled, stored, wait_event

CRONJOBS = "batch/v1/cronjobs"


def cronjob(emulator, name):
    return emulator.stored(CRONJOBS, NS, name)


def jobs(emulator):
    return [o for (r, _, _), o in emulator._objects_of() if r == kmock.resource("batch/v1/jobs")]


async def test_cronjobs_follow_the_spec_through_update_suspend_and_delete(emulator, kubeconfig, api, cluster):
    async with running_operator(kubeconfig, emulator):
        await api.create(policy())
        obj = await settled(emulator)
        names = ("pacs-full", "pacs-incremental", "pacs-prune")
        await emulator.wait_for(lambda: all(cronjob(emulator, n) for n in names))
        assert obj["status"]["cronJobs"] == list(names)
        assert (cond(obj, "Ready")["status"], cond(obj, "Ready")["reason"]) == ("True", "SpecValid")
        assert emulator.count_writes(subresource="status") == 1, "one status write for a new policy"
        failed = [(w.method, w.path, w.status) for w in emulator.writes if (w.status or 500) >= 400]
        assert failed == []
        uid = cronjob(emulator, "pacs-incremental")["metadata"]["uid"]

        # a schedule change replaces the CronJob in place (same object, new schedule)
        before = len(emulator.writes)
        await api.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"incremental": "*/5 * * * *"}}})
        await emulator.wait_for(lambda: cronjob(emulator, "pacs-incremental")["spec"]["schedule"] == "*/5 * * * *")
        changed = cronjob(emulator, "pacs-incremental")
        assert changed["metadata"]["uid"] == uid
        assert changed["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 600
        await settled(emulator, generation=2)
        assert emulator.count_writes(CRONJOBS, since=before, method="PUT") == 1
        assert emulator.count_writes(CRONJOBS, since=before, method="POST") == 0

        # a schedule kind that leaves the spec takes its CronJob with it
        await api.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"incremental": None}}})
        await emulator.wait_for(lambda: cronjob(emulator, "pacs-incremental") is None)
        obj = await settled(emulator, generation=3)
        assert obj["status"]["cronJobs"] == ["pacs-full", "pacs-prune"]

        # suspend reaches every CronJob; running Jobs are not touched
        await api.patch("BackupPolicy", "pacs", {"spec": {"suspend": True}})
        await emulator.wait_for(lambda: all(cronjob(emulator, n)["spec"]["suspend"] for n in ("pacs-full", "pacs-prune")))
        obj = await settled(emulator, generation=4)
        assert "suspended" in cond(obj, "Ready")["message"]

        # a CronJob deleted by hand comes back; one edited by hand is put right
        await asyncio.to_thread(_delete_cronjob, api, "pacs-full")
        await emulator.wait_for(lambda: cronjob(emulator, "pacs-full") is not None)
        await asyncio.to_thread(_patch_cronjob, api, "pacs-prune", {"spec": {"suspend": False}})
        await emulator.wait_for(lambda: cronjob(emulator, "pacs-prune")["spec"]["suspend"] is True)

        # deleting the policy lets the garbage collector take its CronJobs
        await api.delete("BackupPolicy", "pacs")
        await emulator.wait_for(lambda: not any(cronjob(emulator, n) for n in names))


def _patch_cronjob(api, name, patch):
    import kubernetes

    kubernetes.client.BatchV1Api(api.client).patch_namespaced_cron_job(name, NS, patch)


def _delete_cronjob(api, name):
    import kubernetes

    kubernetes.client.BatchV1Api(api.client).delete_namespaced_cron_job(name, NS)


async def test_a_resync_of_unchanged_policies_writes_nothing(emulator, kubeconfig, api, cluster, runner, clock):
    his = policy("his", rpo="5m", incremental="*/5 * * * *")
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(policy())
        await api.create(his)
        await settled(emulator)
        await settled(emulator, "his")
        result = await runner.trigger(NS, "pacs-full")
        assert result.phase == "Succeeded"
        await emulator.wait_for(lambda: stored(emulator)["status"].get("recoveryPoints") == 1
                                and points(emulator)[0].get("status", {}).get("phase") == "Available"
                                and (stored(emulator)["status"].get("lastBackup") or {}).get("outcome") == "Succeeded",
                                timeout=20)
        await asyncio.sleep(0.3)  # let the last watch events (our own writes) come back and be handled
    before = len(emulator.writes)
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        unchanged = lambda: metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="unchanged")
        await until(lambda: unchanged() >= 6, timeout=20)  # the listing, CronJob/Job events and timer rounds
        await until(lambda: metric(ctx, "lifeline_reconciles_total", kind="RecoveryPoint", result="unchanged") >= 1)
        assert emulator.count_writes(since=before) == 0, [(w.method, w.path) for w in emulator.writes[before:]]
        assert metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="written") == 0


async def test_a_failed_job_keeps_ready_and_says_why(emulator, kubeconfig, api, runner, clock, volumes):
    for claim in ("pacs-data", "backup-local", "backup-offsite"):
        seed_pvc(emulator, claim)
    seed_secret(emulator, "pacs-key", {"key": "lifeline-key-v1 not-a-key"})  # a key the provider refuses
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(policy())
        await settled(emulator)
        result = await runner.trigger(NS, "pacs-full")
        assert result.phase == "Failed"
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Failed" and o,
                                      timeout=20)
        assert cond(obj, "Ready")["status"] == "True"
        keys = cond(obj, "KeysAvailable")
        assert (keys["status"], keys["reason"]) == ("False", "KeyRefused"), keys
        assert "the latest backup could not use the key secret://pacs-key/key" in keys["message"]
        assert obj["status"]["lastBackup"]["job"] == result.job
        assert obj["status"].get("recoveryPoints", 0) == 0 and points(emulator) == []
        for dest in ("local", "offsite"):
            assert metric(ctx, "lifeline_backup_failures_total", namespace=NS, policy="pacs", tier="B",
                          destination=dest, reason="BackupFailed") == 1
        [event] = await wait_event(emulator, "pacs", "BackupFailed")
        assert event["type"] == "Warning"
        assert "key file" in event["message"] and "agent exited 1" in event["message"], event["message"]
        job = emulator.stored("batch/v1/jobs", NS, result.job)
        assert job["metadata"]["annotations"]["dr.lifeline.io/recorded"] == "Failed"


async def test_rpo_breach_and_recovery_follow_the_clock(emulator, kubeconfig, api, cluster, runner, clock):
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(policy())
        await settled(emulator)
        await runner.trigger(NS, "pacs-full")
        await emulator.wait_for(lambda: cond(stored(emulator), "RPOMet").get("reason") == "WithinRPO", timeout=20)

        clock.advance(16 * 60)  # past the 15-minute RPO: the timer sees it, nobody writes the policy
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and
                                      cond(o, "RPOMet").get("status") == "False" and o, timeout=10)
        met = cond(obj, "RPOMet")
        assert met["reason"] == "RPOBreached" and "ran out at 2026-11-23T10:15:00Z" in met["message"]
        assert met["lastTransitionTime"] == "2026-11-23T10:16:00Z"
        assert obj["status"]["currentRPOSeconds"] == 960
        await until(lambda: metric(ctx, "lifeline_rpo_seconds", namespace=NS, policy="pacs", tier="B") == 960)
        breach = await wait_event(emulator, "pacs", "RPOBreached")
        assert len(breach) == 1 and breach[0]["type"] == "Warning"

        await runner.trigger(NS, "pacs-incremental")
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and
                                      cond(o, "RPOMet").get("status") == "True" and o, timeout=20)
        assert obj["status"]["currentRPOSeconds"] == 0
        recovered = await wait_event(emulator, "pacs", "RPORecovered")
        assert len(recovered) == 1 and recovered[0]["type"] == "Normal"


async def test_backup_now_runs_one_job_per_new_annotation_value(emulator, kubeconfig, api, cluster, runner, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(policy())
        await settled(emulator)
        await api.patch("BackupPolicy", "pacs", {"metadata": {"annotations": {"dr.lifeline.io/backup-now": "one"}}})
        await emulator.wait_for(lambda: stored(emulator)["status"].get("backupNowHandled") == "one")
        [job] = jobs(emulator)
        assert job["metadata"]["labels"]["dr.lifeline.io/trigger"] == "on-demand"
        [run] = await runner.run_pending(NS)
        assert run.phase == "Succeeded"
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and o["status"].get("recoveryPoints") == 1
                                      and (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded" and o)
        assert obj["status"]["lastBackup"]["trigger"] == "OnDemand"
        assert points(emulator)[0]["spec"]["tags"]["trigger"] == "OnDemand"

        # the same value again (a GitOps re-apply) starts nothing
        await api.patch("BackupPolicy", "pacs", {"metadata": {"labels": {"touched": "yes"}}})
        await asyncio.sleep(0.3)
        assert len(jobs(emulator)) == 1

        # `lifeline backup now` sets a new value: one more Job, a full one
        code = await asyncio.to_thread(main, ["backup", "now", "pacs", "-n", NS, "--type", "full",
                                              "--kubeconfig", str(kubeconfig)])
        assert code == 0
        await emulator.wait_for(lambda: len(jobs(emulator)) == 2)
        new = next(j for j in jobs(emulator) if j["metadata"]["name"] != job["metadata"]["name"])
        assert new["metadata"]["labels"]["dr.lifeline.io/backup-type"] == "full"
        await emulator.wait_for(lambda: stored(emulator)["status"].get("backupNowHandled") ==
                                stored(emulator)["metadata"]["annotations"]["dr.lifeline.io/backup-now"])


async def test_deletion_policy_decides_what_happens_to_points(emulator, kubeconfig, api, cluster, runner, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(policy())
        await settled(emulator)
        await runner.trigger(NS, "pacs-full")
        await emulator.wait_for(lambda: len(points(emulator)) == 1, timeout=20)
        assert "ownerReferences" not in points(emulator)[0]["metadata"]

        # Retain -> Delete: the existing point becomes owned by the policy ...
        await api.patch("BackupPolicy", "pacs", {"spec": {"deletionPolicy": "Delete"}})
        await emulator.wait_for(lambda: points(emulator)[0]["metadata"].get("ownerReferences"))
        owner = stored(emulator)["metadata"]["uid"]
        assert [r["uid"] for r in points(emulator)[0]["metadata"]["ownerReferences"]] == [owner]
        # ... and goes with it
        await api.delete("BackupPolicy", "pacs")
        await emulator.wait_for(lambda: not points(emulator))

        # with Retain, points outlive their policy
        await api.create(policy("kept"))
        await settled(emulator, "kept")
        await runner.trigger(NS, "kept-full")
        await emulator.wait_for(lambda: len(points(emulator, "kept")) == 1, timeout=20)
        await api.delete("BackupPolicy", "kept")
        await emulator.wait_for(lambda: cronjob(emulator, "kept-full") is None)
        assert len(points(emulator, "kept")) == 1


async def test_bad_references_each_get_their_own_reason(emulator, kubeconfig, api):
    seed_pvc(emulator, "backup-local")
    body = policy(rpo="1m")  # a 15-minute schedule cannot meet it
    async with running_operator(kubeconfig, emulator) as ctx:
        await api.create(body)
        obj = await settled(emulator)
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
            "lifeline_backup_condition", {"namespace": NS, "name": "pacs", "type": t})
        await until(lambda: gauge("KeysAvailable") == 0)
        assert {t: gauge(t) for t in want} == {"Ready": 1, "RPOAchievable": 0, "SourceAvailable": 0,
                                               "DestinationsReachable": 0, "KeysAvailable": 0}
        assert gauge("RPOMet") == 0 and gauge("OffSiteCopy") == 0, "Unknown counts as not True"
        assert "Secret hospital/pacs-key does not exist" in cond(obj, "KeysAvailable")["message"]
        assert "destination offsite: PersistentVolumeClaim hospital/backup-offsite does not exist" in \
            cond(obj, "DestinationsReachable")["message"]
        assert metric(ctx, "lifeline_rpo_achievable", namespace=NS, policy="pacs", tier="B") == 0
        await until(lambda: emulator.count_writes("events", method="POST") >= 4)
        reasons = sorted(e.reason for e in await api.events("pacs"))
        assert reasons == ["KeySecretNotFound", "PVCNotFound", "PVCNotFound", "ScheduleTooSparse"]

        # the missing PVC appears: the next timer round sees it, and says so once
        seed_pvc(emulator, "pacs-data")
        obj = await emulator.wait_for(lambda: cond(stored(emulator), "SourceAvailable").get("status") == "True"
                                      and stored(emulator), timeout=10)
        assert cond(obj, "SourceAvailable")["reason"] == "PVCFound"
        await until(lambda: emulator.count_writes("events", method="POST") >= 5)
        assert [e.type for e in await api.events("pacs") if e.reason == "PVCFound"] == ["Normal"]
        await until(lambda: gauge("SourceAvailable") == 1)

        # deleting the policy drops its series and leaves an audit record
        records = []
        audit.add_sink(records.append)
        try:
            await api.delete("BackupPolicy", "pacs")
            await until(lambda: gauge("Ready") is None and records)
        finally:
            audit.remove_sink(records.append)
        [record] = records
        assert (record["action"], record["subject"]["kind"], record["subject"]["name"]) == (
            "deletion", "BackupPolicy", "pacs")
        assert record["details"]["deletionPolicy"] == "Retain"


async def test_status_command_reports_each_policy(emulator, kubeconfig, api, cluster, capsys):
    async with running_operator(kubeconfig, emulator):
        await api.create(policy())
        await settled(emulator)
        code = await asyncio.to_thread(main, ["backup", "status", "-n", NS, "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr().out
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:2] == ["NAME", "TIER"]
    assert row.split()[:2] == ["pacs", "B"] and "Unknown" in row
