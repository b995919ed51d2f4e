"""Real backups end to end: a CronJob's Job runs the real agent (a Pod of the real Job controller,
run by the process kubelet) and the operator records what it did as a RecoveryPoint, in the policy's
status, Events and metrics."""
from __future__ import annotations

from datetime import datetime, timezone

from lifeline.clock import parse_time
from tests.integration.operator_harness import metric

from .conftest import cond, points, policy, settled, stored, wait_event


async def test_a_scheduled_backup_becomes_a_recovery_point_and_an_incremental_follows(kube, seeded, clock):
    async with kube.operator(clock=clock) as ctx:
        kube.create(policy())
        await settled(kube)
        assert cond(stored(kube), "RPOMet")["reason"] == "AwaitingFirstBackup"

        full = await kube.run_cronjob("pacs-full")
        assert full.phase == "Succeeded", kube.job_log(full.job)
        obj = await kube.wait_for(lambda: (o := stored(kube)) and
                                      (o["status"].get("recoveryPoints") == 1) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded" and o,
                                      timeout=20)
        [rp] = points(kube)
        spec = rp["spec"]
        assert (spec["type"], spec["policyName"], spec["keyRef"]) == ("full", "pacs", "secret://pacs-key/key")
        began = parse_time(spec["startTime"])
        assert clock.now() <= began <= datetime.now(timezone.utc), "the agent's own (real) time"
        assert rp["metadata"]["name"] == f"pacs-{began:%Y%m%d-%H%M%S}"
        assert [c["destination"] for c in spec["copies"]] == ["local", "offsite"]
        assert spec["copies"][0]["repository"].endswith("/backup-local/repos/pacs")
        assert spec["sizeBytes"] == 4 + 256 * 400 + len('{"studies": 1}')
        assert spec["files"] == 2 and spec["manifestChecksum"].startswith("blake3:")
        assert "ownerReferences" not in rp["metadata"], "deletionPolicy Retain: the point outlives its policy"
        rp = await kube.wait_for(lambda: (p := points(kube)[0]) and p.get("status", {}).get("phase") and p)
        assert rp["status"]["phase"] == "Available"

        status = obj["status"]
        assert status["lastBackup"]["recoveryPoint"] == rp["metadata"]["name"]
        assert began.replace(microsecond=0) <= parse_time(status["lastSuccessfulBackupTime"]) <= datetime.now(timezone.utc)
        assert status["currentRPOSeconds"] == 0
        for type_, reason in (("RPOMet", "WithinRPO"), ("DestinationsReachable", "LatestBackupsStored"),
                              ("OffSiteCopy", "OffSiteCopyStored"), ("KeysAvailable", "KeySecretFound")):
            assert (cond(obj, type_)["status"], cond(obj, type_)["reason"]) == ("True", reason), cond(obj, type_)
        assert [d["lastOutcome"] for d in status["destinations"]] == ["Succeeded", "Succeeded"]

        labels = {"namespace": kube.namespace, "policy": "pacs", "tier": "B"}
        assert metric(ctx, "lifeline_backup_bytes_total", **labels, destination="offsite") > 0
        assert metric(ctx, "lifeline_backup_last_success_timestamp_seconds", **labels, destination="local") > 0
        assert metric(ctx, "lifeline_backup_duration_seconds_count", **labels, destination="local", type="full") == 1
        assert metric(ctx, "lifeline_rpo_target_seconds", **labels) == 900

        # fifteen minutes later the incremental runs; it is relative to the full
        clock.advance(900)
        incr = await kube.run_cronjob("pacs-incremental")
        assert incr.phase == "Succeeded", kube.job_log(incr.job)
        await kube.wait_for(lambda: stored(kube)["status"].get("recoveryPoints") == 2, timeout=20)
        first, second = points(kube)
        assert second["spec"]["type"] == "incremental"
        assert second["spec"]["parent"] == first["metadata"]["name"]
        assert second["spec"]["copies"][0]["parentSnapshotId"] == first["spec"]["copies"][0]["snapshotId"]
        await wait_event(kube, "pacs", "BackupSucceeded")


async def test_a_failed_destination_is_reported_without_hiding_the_other(kube, seeded, clock, volumes):
    # the off-site repository's directory is a regular file: every write there fails at once
    (volumes["backup-offsite"] / "pacs").write_text("not a directory")
    async with kube.operator(clock=clock) as ctx:
        kube.create(policy())
        await settled(kube)
        result = await kube.run_cronjob("pacs-full")
        assert result.phase == "Succeeded", "one destination took the backup: the Job succeeds"
        obj = await kube.wait_for(lambda: (o := stored(kube)) and o["status"].get("recoveryPoints") == 1
                                      and (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded"
                                      and o, timeout=20)
        [rp] = points(kube)
        assert [c["destination"] for c in rp["spec"]["copies"]] == ["local"]
        assert cond(obj, "Ready")["status"] == "True"
        reach = cond(obj, "DestinationsReachable")
        assert (reach["status"], reach["reason"]) == ("False", "DestinationFailed")
        assert reach["message"].startswith("offsite: the latest backup failed there: ")
        assert cond(obj, "OffSiteCopy")["reason"] == "NoOffSiteCopy"
        assert cond(obj, "RPOMet")["status"] == "True", "the local copy still meets the RPO"
        by_name = {d["name"]: d for d in obj["status"]["destinations"]}
        assert by_name["local"]["lastOutcome"] == "Succeeded" and by_name["offsite"]["lastOutcome"] == "Failed"
        await kube.wait_for(lambda: metric(ctx, "lifeline_backup_failures_total", namespace=kube.namespace, policy="pacs",
                                               tier="B", destination="offsite", reason="DestinationFailed") == 1)
        await wait_event(kube, "pacs", "DestinationFailed")
        await wait_event(kube, "pacs", "NoOffSiteCopy")


async def test_retention_prunes_the_repositories_and_the_catalogue_follows(kube, seeded, clock):
    body = policy(retention={"keepLast": 1, "keepDaily": 0, "keepWeekly": 0, "keepMonthly": 0, "keepYearly": 0})
    async with kube.operator(clock=clock):
        kube.create(body)
        await settled(kube)
        for kind in ("full", "incremental"):
            assert (await kube.run_cronjob(f"pacs-{kind}")).phase == "Succeeded"
            clock.advance(900)
        await kube.wait_for(lambda: stored(kube)["status"].get("recoveryPoints") == 2, timeout=20)
        pruned = await kube.run_cronjob("pacs-prune")
        assert pruned.phase == "Succeeded", kube.job_log(pruned.job)
        obj = await kube.wait_for(lambda: (o := stored(kube)) and o["status"].get("recoveryPoints") == 1
                                      and o, timeout=20)
        old, new = points(kube)
        assert old["status"]["phase"] == "Pruned" and new["status"]["phase"] == "Available"
        assert obj["status"]["lastBackup"]["recoveryPoint"] == new["metadata"]["name"]
        await wait_event(kube, old["metadata"]["name"], "Pruned")
