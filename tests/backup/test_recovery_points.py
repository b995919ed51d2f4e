"""Real backups end to end: a CronJob's Job runs the real agent (through the job runner) and the
operator records what it did as a RecoveryPoint, in the policy's status, Events and metrics."""
from __future__ import annotations

from tests.integration.operator_harness import metric, running_operator

from .conftest import NS, cond, points, policy, settled, stored, wait_event


async def test_a_scheduled_backup_becomes_a_recovery_point_and_an_incremental_follows(
        emulator, kubeconfig, api, cluster, runner, clock):
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(policy())
        await settled(emulator)
        assert cond(stored(emulator), "RPOMet")["reason"] == "AwaitingFirstBackup"

        full = await runner.trigger(NS, "pacs-full")
        assert full.phase == "Succeeded", full.containers["agent"].log.read_text()
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and
                                      (o["status"].get("recoveryPoints") == 1) and
                                      (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded" and o,
                                      timeout=20)
        [rp] = points(emulator)
        spec = rp["spec"]
        assert (spec["type"], spec["policyName"], spec["keyRef"]) == ("full", "pacs", "secret://pacs-key/key")
        assert rp["metadata"]["name"] == "pacs-20261123-100000"
        assert [c["destination"] for c in spec["copies"]] == ["local", "offsite"]
        assert spec["copies"][0]["repository"].endswith("/backup-local/repos/pacs")
        assert spec["sizeBytes"] == 4 + 256 * 400 + len('{"studies": 1}')
        assert spec["files"] == 2 and spec["manifestChecksum"].startswith("blake3:")
        assert spec["startTime"].startswith("2026-11-23T10:00:00")
        assert "ownerReferences" not in rp["metadata"], "deletionPolicy Retain: the point outlives its policy"
        rp = await emulator.wait_for(lambda: (p := points(emulator)[0]) and p.get("status", {}).get("phase") and p)
        assert rp["status"]["phase"] == "Available"

        status = obj["status"]
        assert status["lastBackup"]["recoveryPoint"] == rp["metadata"]["name"]
        assert status["lastSuccessfulBackupTime"].startswith("2026-11-23T10:00")
        assert status["currentRPOSeconds"] == 0
        for type_, reason in (("RPOMet", "WithinRPO"), ("DestinationsReachable", "LatestBackupsStored"),
                              ("OffSiteCopy", "OffSiteCopyStored"), ("KeysAvailable", "KeySecretFound")):
            assert (cond(obj, type_)["status"], cond(obj, type_)["reason"]) == ("True", reason), cond(obj, type_)
        assert [d["lastOutcome"] for d in status["destinations"]] == ["Succeeded", "Succeeded"]

        labels = {"namespace": NS, "policy": "pacs", "tier": "B"}
        assert metric(ctx, "lifeline_backup_bytes_total", **labels, destination="offsite") > 0
        assert metric(ctx, "lifeline_backup_last_success_timestamp_seconds", **labels, destination="local") > 0
        assert metric(ctx, "lifeline_backup_duration_seconds_count", **labels, destination="local", type="full") == 1
        assert metric(ctx, "lifeline_rpo_target_seconds", **labels) == 900

        # fifteen minutes later the incremental runs; it is relative to the full
        clock.advance(900)
        incr = await runner.trigger(NS, "pacs-incremental")
        assert incr.phase == "Succeeded", incr.containers["agent"].log.read_text()
        await emulator.wait_for(lambda: stored(emulator)["status"].get("recoveryPoints") == 2, timeout=20)
        first, second = points(emulator)
        assert second["spec"]["type"] == "incremental"
        assert second["spec"]["parent"] == first["metadata"]["name"]
        assert second["spec"]["copies"][0]["parentSnapshotId"] == first["spec"]["copies"][0]["snapshotId"]
        await wait_event(emulator, "pacs", "BackupSucceeded")


async def test_a_failed_destination_is_reported_without_hiding_the_other(
        emulator, kubeconfig, api, cluster, runner, clock, volumes):
    # the off-site repository's directory is a regular file: every write there fails at once
    (volumes["backup-offsite"] / "pacs").write_text("not a directory")
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(policy())
        await settled(emulator)
        result = await runner.trigger(NS, "pacs-full")
        assert result.phase == "Succeeded", "one destination took the backup: the Job succeeds"
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and o["status"].get("recoveryPoints") == 1
                                      and (o["status"].get("lastBackup") or {}).get("outcome") == "Succeeded"
                                      and o, timeout=20)
        [rp] = points(emulator)
        assert [c["destination"] for c in rp["spec"]["copies"]] == ["local"]
        assert cond(obj, "Ready")["status"] == "True"
        reach = cond(obj, "DestinationsReachable")
        assert (reach["status"], reach["reason"]) == ("False", "DestinationFailed")
        assert reach["message"].startswith("offsite: the latest backup failed there: ")
        assert cond(obj, "OffSiteCopy")["reason"] == "NoOffSiteCopy"
        assert cond(obj, "RPOMet")["status"] == "True", "the local copy still meets the RPO"
        by_name = {d["name"]: d for d in obj["status"]["destinations"]}
        assert by_name["local"]["lastOutcome"] == "Succeeded" and by_name["offsite"]["lastOutcome"] == "Failed"
        await emulator.wait_for(lambda: metric(ctx, "lifeline_backup_failures_total", namespace=NS, policy="pacs",
                                               tier="B", destination="offsite", reason="DestinationFailed") == 1)
        await wait_event(emulator, "pacs", "DestinationFailed")
        await wait_event(emulator, "pacs", "NoOffSiteCopy")


async def test_retention_prunes_the_repositories_and_the_catalogue_follows(
        emulator, kubeconfig, api, cluster, runner, clock):
    body = policy(retention={"keepLast": 1, "keepDaily": 0, "keepWeekly": 0, "keepMonthly": 0, "keepYearly": 0})
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(body)
        await settled(emulator)
        for kind in ("full", "incremental"):
            assert (await runner.trigger(NS, f"pacs-{kind}")).phase == "Succeeded"
            clock.advance(900)
        await emulator.wait_for(lambda: stored(emulator)["status"].get("recoveryPoints") == 2, timeout=20)
        pruned = await runner.trigger(NS, "pacs-prune")
        assert pruned.phase == "Succeeded", pruned.containers["agent"].log.read_text()
        obj = await emulator.wait_for(lambda: (o := stored(emulator)) and o["status"].get("recoveryPoints") == 1
                                      and o, timeout=20)
        old, new = points(emulator)
        assert old["status"]["phase"] == "Pruned" and new["status"]["phase"] == "Available"
        assert obj["status"]["lastBackup"]["recoveryPoint"] == new["metadata"]["name"]
        await wait_event(emulator, old["metadata"]["name"], "Pruned")
