"""The maintenance CronJob on the real control plane: a policy's repositories after a prune that left
packs mostly garbage are repacked by ``lifeline agent repack`` in a real Job, and the policy's
status (``lastMaintenance``), an Event and the metrics say how large each repository was before and
after. The repacked repositories still hold the kept point whole."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.operator_harness import metric

from .conftest import points, policy, settled, stored, wait_event

KEEP_ONE = {"keepLast": 1, "keepDaily": 0, "keepWeekly": 0, "keepMonthly": 0, "keepYearly": 0}
MiB = 1 << 20
# Quiet schedules: the session's cluster runs no CronJob controller, and these do not fire anyway
QUIET = {"full": "0 1 * * *", "incremental": "30 1 * * *"}


def _size(repo) -> int:
    return sum(f.stat().st_size for sub in ("data", "index") for f in (repo / sub).rglob("*") if f.is_file())


async def test_the_maintenance_cronjob_repacks_a_pruned_repository(seeded, kube, clock, volumes, key_text, tmp_path):
    repos = {"local": volumes["backup-local"] / "repos" / "pacs", "offsite": volumes["backup-offsite"] / "pacs"}
    data = volumes["pacs-data"]
    for i in range(6):
        (data / f"f{i}").write_bytes(os.urandom(MiB))
    async with kube.operator(clock=clock) as ctx:
        kube.create(policy(retention=KEEP_ONE, maintenance={"maxUnused": 10}, **QUIET))
        obj = await settled(kube)
        assert "pacs-maintenance" in obj["status"]["cronJobs"]
        cron = kube.stored("cronjobs", None, "pacs-maintenance")
        assert cron["spec"]["schedule"].endswith(" * * 0"), "weekly, on Sunday"

        # a full, then an incremental that replaced two of the six files: once prune forgets the full,
        # a third of its pack is used by no point, and prune keeps the pack (the rest is live)
        for n, kind in enumerate(("full", "incremental")):
            if n:
                for i in (0, 1):
                    (data / f"f{i}").write_bytes(os.urandom(MiB))
            result = await kube.run_cronjob(f"pacs-{kind}")
            assert result.phase == "Succeeded", kube.job_log(result.job)
            await kube.wait_for(lambda: len(points(kube)) == n + 1, timeout=30)
        prune = await kube.run_cronjob("pacs-prune")
        assert prune.phase == "Succeeded", kube.job_log(prune.job)
        first = points(kube)[0]["metadata"]["name"]
        await kube.wait_for(lambda: (kube.stored("recoverypoints", None, first).get("status") or {}).get("phase")
                            == "Pruned", timeout=30)
        before = {name: _size(repo) for name, repo in repos.items()}

        run = await kube.run_cronjob("pacs-maintenance", timeout=180)
        assert run.phase == "Succeeded", kube.job_log(run.job)
        obj = await kube.wait_for(lambda: ((stored(kube)["status"].get("lastMaintenance") or {}).get("job")
                                           == run.job and stored(kube)["status"]["lastMaintenance"].get("outcome")
                                           != "Running" and stored(kube)), timeout=30)
        last = obj["status"]["lastMaintenance"]
        assert last["outcome"] == "Succeeded", last
        by_name = {d["name"]: d for d in last["destinations"]}
        assert set(by_name) == {"local", "offsite"}
        for name, repo in repos.items():
            d = by_name[name]
            assert d["bytesBefore"] == before[name], (d, before)
            assert d["bytesAfter"] == _size(repo) < d["bytesBefore"] - 3 * MiB // 2, (d, _size(repo))
            assert d["packsRewritten"] >= 1, d
        assert last["bytesBefore"] == sum(before.values()) and last["bytesAfter"] < last["bytesBefore"]
        assert last["completionTime"] and last["startTime"]
        assert "local:" in last["message"] and "packs rewritten" in last["message"]
        assert "lastBackup" in obj["status"] and obj["status"]["lastBackup"]["job"] != run.job, "no backup"

        await wait_event(kube, "pacs", "Repacked")
        for name, repo in repos.items():
            labels = {"namespace": kube.namespace, "policy": "pacs", "tier": "B", "destination": name}
            assert metric(ctx, "lifeline_repository_bytes", **labels) == _size(repo)
            assert metric(ctx, "lifeline_maintenance_freed_bytes_total", **labels) == before[name] - _size(repo)

    # the kept point is whole and readable after the repack
    key = tmp_path / "key"
    key.write_text(key_text)
    key.chmod(0o600)
    for repo in repos.values():
        check = subprocess.run([sys.executable, "-m", "lifeline.agent", "check", "--read-data", "--repo",
                                f"file://{repo}", "--key", f"file://{key}"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_the_maintenance_job_says_what_it_did_at_each_destination(tmp_path):
    """The Job's entry point on its own (no cluster): a repository repacked, one not made yet (left out),
    and a store out of reach (a failure, not "no repository yet")."""
    from lifeline.keys import create_key_file
    from lifeline.messages import MaintenanceSummary, read_summary

    key = create_key_file(tmp_path / "key")
    data = tmp_path / "data"
    data.mkdir()
    repo = tmp_path / "repo"
    agent = [sys.executable, "-m", "lifeline.agent"]
    subprocess.run([*agent, "init", "--repo", f"file://{repo}", "--key", f"file://{key}"], check=True,
                   capture_output=True)
    for n in range(2):
        (data / "f").write_bytes(os.urandom(64 * 1024))
        subprocess.run([*agent, "backup", str(data), "--repo", f"file://{repo}", "--key", f"file://{key}"],
                       check=True, capture_output=True)
    plan = {"v": 1, "operation": "maintenance", "namespace": "hospital", "policy": "pacs", "maxUnused": 0,
            "lockWait": 5, "key": {"ref": f"file://{key}"}, "destinations": [
                {"name": "local", "repository": f"file://{repo}"},
                {"name": "new", "repository": f"file://{tmp_path / 'not-yet'}"},
                {"name": "away", "repository": "s3://bucket/pacs", "endpoint": "http://127.0.0.1:9",
                 "credentialsEnv": "LIFELINE_S3_2_"}]}
    env = {**os.environ, "LIFELINE_S3_2_ACCESS_KEY_ID": "id", "LIFELINE_S3_2_SECRET_ACCESS_KEY": "secret",
           "LIFELINE_JOB_PLAN": json.dumps(plan), "LIFELINE_TERMINATION_LOG": str(tmp_path / "termination")}
    done = subprocess.run([sys.executable, "-m", "lifeline.agent.jobs", "maintenance"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary, problem = read_summary((tmp_path / "termination").read_text(), MaintenanceSummary)
    assert problem is None
    [local] = summary.repacked
    assert local.destination == "local" and local.bytes_before > 0 and local.packs_before >= 1
    assert [(f.destination, f.exit_code) for f in summary.failures] == [("away", 1)]
    assert "127.0.0.1:9" in summary.failures[0].error, summary.failures[0].error
    assert "new: no repository yet" in done.stderr
