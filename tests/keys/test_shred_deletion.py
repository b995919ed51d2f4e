"""Deletion that shreds, through the operator and the agent, with keys in OpenBao.

A policy with ``deletionPolicy: Shred``: its RecoveryPoints carry the shred finalizer; deleting
one waits while another point still shares its key epoch, then a shred Job (run by the job
runner as the kubelet would) destroys the wrapped key, the finalizer goes, and a restore says
when and by whom the key was destroyed. A failed shred keeps the object, says why in an Event,
and is retried after its delay on the injected clock.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from lifeline.keys import health
from lifeline.observability import audit
from lifeline.planning import recoverypoint_shred as shred
from tests.backup.conftest import (NS, api, clock, cluster, emulator, events, fast_timers,  # noqa: F401
                                   key_text, policy, runner, volumes, wait_event)
from tests.integration.operator_harness import running_operator
from tests.keys.conftest import make_transit

POINTS = "dr.lifeline.io/v1alpha1/recoverypoints"


def points(emulator) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for (r, _, _), o in emulator._objects_of() if r.plural == "recoverypoints"}


@pytest.fixture
def records():
    got: list[dict] = []
    audit.add_sink(got.append)
    yield got
    audit.remove_sink(got.append)


@pytest.fixture
def vault_policy(openbao, monkeypatch):
    transit = make_transit(openbao)
    health.clear_cache()
    monkeypatch.setenv("VAULT_ADDR", transit.addr)  # the operator's (and so the Jobs') Vault address
    monkeypatch.setenv("VAULT_TOKEN", transit.token)
    monkeypatch.setenv("LIFELINE_VAULT_RETRIES", "1")
    return transit, policy("pacs", encryption={"keyRef": transit.ref}, deletionPolicy="Shred")


async def _backup(emulator, runner, cron: str, count: int) -> dict:
    result = await runner.trigger(NS, cron)
    assert result.phase == "Succeeded", result.containers["agent"].log.read_text()
    return await emulator.wait_for(lambda: len(points(emulator)) == count and points(emulator), timeout=30)


async def _finalized(emulator, name: str) -> dict:
    return await emulator.wait_for(
        lambda: shred.FINALIZER in ((points(emulator).get(name) or {}).get("metadata", {}).get("finalizers") or [])
        and points(emulator)[name], timeout=20)


def _restore(repo: str, snapshot: str, key: str, env: dict, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.agent", "restore", snapshot, "--repo", repo, "--key", key,
                           "--to", str(out)], capture_output=True, text=True, env=env, timeout=120)


async def test_deleting_points_shreds_their_epoch_once_none_of_it_is_left(
        emulator, kubeconfig, api, cluster, runner, clock, vault_policy, volumes, records, tmp_path):
    transit, body = vault_policy
    runner.env["VAULT_TOKEN"] = transit.token
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(body)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "pacs-full"), timeout=20)
        await _backup(emulator, runner, "pacs-full", 1)
        clock.advance(900)
        (volumes["pacs-data"] / "new.txt").write_text("more")
        both = await _backup(emulator, runner, "pacs-incremental", 2)
        full = next(n for n, p in both.items() if p["spec"]["type"] == "full")
        incr = next(n for n in both if n != full)
        for name in both:
            await _finalized(emulator, name)
        snapshot = {c["destination"]: c["snapshotId"] for c in both[full]["spec"]["copies"]}
        repo = f"file://{volumes['backup-local']}/repos/pacs"
        env = {**transit.env}
        assert _restore(repo, snapshot["local"], transit.ref, env, tmp_path / "before").returncode == 0

        # the full alone: its key also protects the incremental, so nothing is destroyed yet
        await api.delete("RecoveryPoint", full)
        waiting = await wait_event(emulator, full, "ShredWaiting", timeout=20)
        assert incr in waiting[0]["message"]
        assert points(emulator)[full]["metadata"].get("deletionTimestamp")
        assert not await runner.run_pending(NS, shred.LABEL_FOR)

        # now the incremental too: the epoch goes, and both points with it
        await api.delete("RecoveryPoint", incr)
        jobs = await emulator.wait_for(
            lambda: [o for (r, _, _), o in emulator._objects_of() if r.plural == "jobs"
                     and shred.LABEL_FOR in (o["metadata"].get("labels") or {})] or None, timeout=20)
        job = jobs[0]
        assert job["metadata"]["ownerReferences"][0]["kind"] == "RecoveryPoint"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(job["metadata"]["labels"])
        results = await runner.run_pending(NS, shred.LABEL_FOR)
        while True:  # the second point's Job appears once the first is done
            assert all(r.phase == "Succeeded" for r in results), [r.containers["agent"].log.read_text()
                                                                  for r in results]
            if not points(emulator):
                break
            await emulator.wait_for(lambda: not points(emulator) or [
                o for (r, _, _), o in emulator._objects_of() if r.plural == "jobs"
                and shred.LABEL_FOR in (o["metadata"].get("labels") or {})
                and not (o.get("status") or {}).get("startTime")], timeout=20)
            results = await runner.run_pending(NS, shred.LABEL_FOR)
        await emulator.wait_for(lambda: not points(emulator), timeout=20)
        shredded = events(emulator, full, "Shredded") + events(emulator, incr, "Shredded")
        assert len(shredded) == 2, [e["message"] for e in events(emulator, full) + events(emulator, incr)]

    failed = _restore(repo, snapshot["local"], transit.ref, env, tmp_path / "after")
    assert failed.returncode != 0
    assert "destroyed (crypto-shredded) at" in failed.stderr
    assert f"by system:serviceaccount:{NS}:default" in failed.stderr
    assert f"RecoveryPoint {NS}/" in failed.stderr and "deletionPolicy Shred" in failed.stderr
    # the audit trail: one successful key-shred per point, with who and which epoch
    mine = [r for r in records if r["action"] == "key-shred" and r["subject"].get("kind") == "RecoveryPoint"]
    assert sorted(r["subject"]["name"] for r in mine if r["outcome"] == "succeeded") == sorted([full, incr])
    assert all(r["actor"] == f"system:serviceaccount:{NS}:default" for r in mine)
    assert any(r["details"]["epochs"] for r in mine)


async def test_a_failed_shred_keeps_the_point_and_is_retried_after_its_delay(
        emulator, kubeconfig, api, cluster, runner, clock, vault_policy, volumes, records):
    transit, body = vault_policy
    body["spec"]["destinations"] = body["spec"]["destinations"][:1]
    runner.env["VAULT_TOKEN"] = transit.token
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(body)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "pacs-full"), timeout=20)
        name = next(iter(await _backup(emulator, runner, "pacs-full", 1)))
        await _finalized(emulator, name)
        repo_dir = volumes["backup-local"] / "repos" / "pacs"
        hidden = repo_dir.with_name("pacs-away")
        repo_dir.rename(hidden)  # the repository cannot be reached: the shred must fail

        await api.delete("RecoveryPoint", name)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/jobs", NS, shred.job_name(name, 1)), timeout=20)
        [first] = await runner.run_pending(NS, shred.LABEL_FOR)
        assert first.phase == "Failed"
        failed = await wait_event(emulator, name, "ShredFailed", timeout=20)
        assert "retrying after" in failed[0]["message"] and "local:" in failed[0]["message"]
        stored = points(emulator)[name]
        assert stored["metadata"]["annotations"][shred.ANN_ATTEMPT] == "2"
        assert shred.FINALIZER in stored["metadata"]["finalizers"]  # the object stays
        assert [r["outcome"] for r in records if r["action"] == "key-shred"] == ["failed"]

        hidden.rename(repo_dir)
        assert emulator.stored("batch/v1/jobs", NS, shred.job_name(name, 2)) is None  # not before the delay
        clock.advance(shred.RETRY_BASE + 1)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/jobs", NS, shred.job_name(name, 2)), timeout=20)
        [second] = await runner.run_pending(NS, shred.LABEL_FOR)
        assert second.phase == "Succeeded", second.containers["agent"].log.read_text()
        await emulator.wait_for(lambda: name not in points(emulator), timeout=20)
        assert [r["outcome"] for r in records if r["action"] == "key-shred"
                and r["subject"].get("kind") == "RecoveryPoint"] == ["failed", "succeeded"]


async def test_the_finalizer_follows_the_policys_deletion_policy(
        emulator, kubeconfig, api, cluster, runner, clock, vault_policy):
    transit, body = vault_policy
    runner.env["VAULT_TOKEN"] = transit.token
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(body)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "pacs-full"), timeout=20)
        name = next(iter(await _backup(emulator, runner, "pacs-full", 1)))
        point = await _finalized(emulator, name)
        assert '"destinations"' in point["metadata"]["annotations"][shred.ANN_PLAN]
        await api.patch("BackupPolicy", "pacs", {"spec": {"deletionPolicy": "Retain"}})
        await emulator.wait_for(lambda: shred.FINALIZER not in (
            points(emulator)[name]["metadata"].get("finalizers") or []), timeout=20)
        await api.delete("RecoveryPoint", name)
        await emulator.wait_for(lambda: name not in points(emulator), timeout=20)
        assert not events(emulator, name, "Shredding")


def test_shred_job_without_a_plan_is_refused(monkeypatch):
    from lifeline.keys import shred_job

    monkeypatch.setenv("LIFELINE_JOB_PLAN", '{"v": 1, "operation": "backup"}')
    assert shred_job.main() == 2


async def test_deleting_the_policy_shreds_all_its_points(
        emulator, kubeconfig, api, cluster, runner, clock, vault_policy, volumes, tmp_path):
    transit, body = vault_policy
    runner.env["VAULT_TOKEN"] = transit.token
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(body)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "pacs-full"), timeout=20)
        made = await _backup(emulator, runner, "pacs-full", 1)
        name = next(iter(made))
        point = await _finalized(emulator, name)
        assert point["metadata"]["ownerReferences"][0]["kind"] == "BackupPolicy"  # collected with the policy
        snapshot = point["spec"]["copies"][0]["snapshotId"]

        await api.delete("BackupPolicy", "pacs")
        await emulator.wait_for(lambda: emulator.stored("batch/v1/jobs", NS, shred.job_name(name, 1)), timeout=20)
        [run] = await runner.run_pending(NS, shred.LABEL_FOR)
        assert run.phase == "Succeeded", run.containers["agent"].log.read_text()
        await emulator.wait_for(lambda: not points(emulator), timeout=20)
    repo = f"file://{volumes['backup-local']}/repos/pacs"
    failed = _restore(repo, snapshot, transit.ref, transit.env, tmp_path / "out")
    assert failed.returncode != 0 and "crypto-shredded" in failed.stderr and "BackupPolicy pacs" in failed.stderr
