"""Deletion that shreds, through the operator and the agent, with keys in OpenBao.

A policy with ``deletionPolicy: Shred``: its RecoveryPoints carry the shred finalizer; deleting
one waits while another point still shares its key epoch, then a shred Job (a Pod of the real Job
controller, logged in to Vault as its own ServiceAccount) destroys the wrapped key, the finalizer goes, and a restore says
when and by whom the key was destroyed. A failed shred keeps the object, says why in an Event,
and is retried after its delay on the injected clock.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
import urllib.error

import pytest

from lifeline.devstack import install
from lifeline.devstack.cluster import ADMIN
from lifeline.planning import recoverypoint_shred as shred
from lifeline.planning import shred_approval
from tests.backup.conftest import (clock, events, fast_timers, key_text, policy, seeded,  # noqa: F401
                                   volumes, wait_event)

POINTS = "recoverypoints"


def points(kube) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in kube.objects(POINTS)}


def shred_jobs(kube) -> list[dict]:
    return kube.objects("jobs", selector=shred.LABEL_FOR)


async def shreds_finished(kube, timeout: float = 60) -> list:
    """Wait for every shred Job now in the namespace to end."""
    return await kube.run_pending(shred.LABEL_FOR, timeout=timeout)


class Transit:
    """A transit key on ``transit/`` (the mount the agents' Vault policy opens) and how to reach it."""

    def __init__(self, vault):
        self.key = "lifeline-" + secrets.token_hex(3)
        vault.create_transit_key(self.key)
        self.ref, self.env = f"vault-transit://{self.key}", vault.env()


@pytest.fixture
def vault_policy(operator_logs_in_to_vault):
    transit = Transit(operator_logs_in_to_vault)
    return transit, policy("pacs", encryption={"keyRef": transit.ref}, deletionPolicy="Shred")


async def _backup(kube, cron: str, count: int) -> dict:
    result = await kube.run_cronjob(cron)
    assert result.phase == "Succeeded", kube.job_log(result.job)
    return await kube.wait_for(lambda: len(got := points(kube)) == count and got, timeout=30)


async def _finalized(kube, name: str) -> dict:
    return await kube.wait_for(
        lambda: shred.FINALIZER in (((got := points(kube)).get(name) or {}).get("metadata", {}).get("finalizers")
                                    or []) and got[name], timeout=20)


@pytest.fixture
def reviewers(kube):
    """The people's RoleBindings in the test's namespace: frank (it-management) reviews shreds."""
    install.bind_people(kube.request, kube.namespace)


def annotate(kube, name: str, key: str, value: str, user: str = ADMIN):
    return kube.request("PATCH", f"/apis/dr.lifeline.io/v1alpha1/namespaces/{kube.namespace}/{POINTS}/{name}",
                        {"metadata": {"annotations": {key: value}}}, user=user,
                        content_type="application/merge-patch+json")


def review(kube, name: str) -> None:
    """The admin asks for the shred, frank (a shred reviewer) approves it."""
    annotate(kube, name, shred_approval.ANN_REQUEST, "retention: study data past its period")
    annotate(kube, name, shred_approval.ANN_APPROVE, "checked", user="frank")


async def _one_point(kube, body: dict) -> str:
    """Apply the policy, back up once, and return the point once it carries the shred finalizer."""
    kube.create(body)
    await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "pacs-full"), timeout=20)
    name = next(iter(await _backup(kube, "pacs-full", 1)))
    await _finalized(kube, name)
    return name


def _restore(repo: str, snapshot: str, key: str, env: dict, out) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.agent", "restore", snapshot, "--repo", repo, "--key", key,
                           "--to", str(out)], capture_output=True, text=True, env=env, timeout=120)


async def test_deleting_points_shreds_their_epoch_once_none_of_it_is_left(
        kube, seeded, clock, vault_policy, volumes, audit_records, tmp_path, reviewers):
    transit, body = vault_policy
    async with kube.operator(clock=clock):
        kube.create(body)
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "pacs-full"), timeout=20)
        await _backup(kube, "pacs-full", 1)
        clock.advance(900)
        (volumes["pacs-data"] / "new.txt").write_text("more")
        both = await _backup(kube, "pacs-incremental", 2)
        full = next(n for n, p in both.items() if p["spec"]["type"] == "full")
        incr = next(n for n in both if n != full)
        for name in both:
            await _finalized(kube, name)
        snapshot = {c["destination"]: c["snapshotId"] for c in both[full]["spec"]["copies"]}
        repo = f"file://{volumes['backup-local']}/repos/pacs"
        env = {**transit.env}
        assert _restore(repo, snapshot["local"], transit.ref, env, tmp_path / "before").returncode == 0

        # the full alone: its key also protects the incremental, so nothing is destroyed yet
        kube.delete("RecoveryPoint", full)
        review(kube, full)
        waiting = await wait_event(kube, full, "ShredWaiting", timeout=20)
        assert incr in waiting[0]["message"]
        assert points(kube)[full]["metadata"].get("deletionTimestamp")
        assert not shred_jobs(kube)

        # now the incremental too: the epoch goes, and both points with it
        kube.delete("RecoveryPoint", incr)
        review(kube, incr)
        jobs = await kube.wait_for(lambda: shred_jobs(kube), timeout=20)
        job = jobs[0]
        assert job["metadata"]["ownerReferences"][0]["kind"] == "RecoveryPoint"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(job["metadata"]["labels"])
        # the full's Job first, then the incremental's (they share the epoch's key objects); each Job
        # goes with its point (the garbage collector), what it said stays in the point's Events
        await kube.wait_for(lambda: not points(kube), timeout=90)
        shredded = events(kube, full, "Shredded") + events(kube, incr, "Shredded")
        assert len(shredded) == 2, [e["message"] for e in events(kube, full) + events(kube, incr)]

    failed = _restore(repo, snapshot["local"], transit.ref, env, tmp_path / "after")
    assert failed.returncode != 0
    assert "destroyed (crypto-shredded) at" in failed.stderr
    assert f"by system:serviceaccount:{kube.namespace}:default" in failed.stderr
    assert f"RecoveryPoint {kube.namespace}/" in failed.stderr and "deletionPolicy Shred" in failed.stderr
    # the audit trail: one successful key-shred per point, with who and which epoch
    mine = [r for r in audit_records if r["action"] == "key-shred" and r["subject"].get("kind") == "RecoveryPoint"]
    assert sorted(r["subject"]["name"] for r in mine if r["outcome"] == "succeeded") == sorted([full, incr])
    assert all((r["actor"], r["details"]["approvedBy"]) == (ADMIN, "frank") for r in mine)
    assert all(r["details"]["shredder"] == f"system:serviceaccount:{kube.namespace}:default" for r in mine)
    assert any(r["details"]["epochs"] for r in mine)


async def test_a_failed_shred_keeps_the_point_and_is_retried_after_its_delay(
        kube, seeded, clock, vault_policy, volumes, audit_records, reviewers):
    transit, body = vault_policy
    body["spec"]["destinations"] = body["spec"]["destinations"][:1]
    async with kube.operator(clock=clock):
        name = await _one_point(kube, body)
        repo_dir = volumes["backup-local"] / "repos" / "pacs"
        hidden = repo_dir.with_name("pacs-away")
        repo_dir.rename(hidden)  # the repository cannot be reached: the shred must fail

        kube.delete("RecoveryPoint", name)
        review(kube, name)
        await kube.wait_for(lambda: kube.stored("batch/v1/jobs", None, shred.job_name(name, 1)), timeout=20)
        [first] = await shreds_finished(kube)
        assert first.phase == "Failed"
        failed = await wait_event(kube, name, "ShredFailed", timeout=20)
        assert "retrying after" in failed[0]["message"] and "local:" in failed[0]["message"]
        stored = points(kube)[name]
        assert stored["metadata"]["annotations"][shred.ANN_ATTEMPT] == "2"
        assert shred.FINALIZER in stored["metadata"]["finalizers"]  # the object stays
        assert [r["outcome"] for r in audit_records if r["action"] == "key-shred"] == ["failed"]

        hidden.rename(repo_dir)
        assert kube.stored("batch/v1/jobs", None, shred.job_name(name, 2)) is None  # not before the delay
        clock.advance(shred.RETRY_BASE + 1)
        await kube.wait_for(lambda: kube.stored("batch/v1/jobs", None, shred.job_name(name, 2)), timeout=20)
        await kube.wait_for(lambda: name not in points(kube), timeout=60)  # its Job goes with it
        assert events(kube, name, "Shredded"), [e["message"] for e in events(kube, name)]
        assert [r["outcome"] for r in audit_records if r["action"] == "key-shred"
                and r["subject"].get("kind") == "RecoveryPoint"] == ["failed", "succeeded"]


async def test_the_finalizer_follows_the_policys_deletion_policy(
        kube, seeded, clock, vault_policy):
    transit, body = vault_policy
    async with kube.operator(clock=clock):
        kube.create(body)
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "pacs-full"), timeout=20)
        name = next(iter(await _backup(kube, "pacs-full", 1)))
        point = await _finalized(kube, name)
        assert '"destinations"' in point["metadata"]["annotations"][shred.ANN_PLAN]
        kube.patch("BackupPolicy", "pacs", {"spec": {"deletionPolicy": "Retain"}})
        await kube.wait_for(lambda: shred.FINALIZER not in (
            points(kube)[name]["metadata"].get("finalizers") or []), timeout=20)
        kube.delete("RecoveryPoint", name)
        await kube.wait_for(lambda: name not in points(kube), timeout=20)
        assert not events(kube, name, "Shredding")


def test_shred_job_without_a_plan_is_refused(monkeypatch, capsys):
    from lifeline.keys import shred_job
    from lifeline.messages import EXIT_BAD_PLAN

    monkeypatch.setenv("LIFELINE_JOB_PLAN", '{"v": 1, "operation": "backup"}')
    assert shred_job.main() == EXIT_BAD_PLAN == 78
    assert "the job plan is for 'backup', and this command runs 'shred'" in capsys.readouterr().err


async def test_deleting_the_policy_shreds_all_its_points(
        kube, seeded, clock, vault_policy, volumes, tmp_path, reviewers):
    transit, body = vault_policy
    async with kube.operator(clock=clock):
        kube.create(body)
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "pacs-full"), timeout=20)
        made = await _backup(kube, "pacs-full", 1)
        name = next(iter(made))
        point = await _finalized(kube, name)
        assert point["metadata"]["ownerReferences"][0]["kind"] == "BackupPolicy"  # collected with the policy
        snapshot = point["spec"]["copies"][0]["snapshotId"]

        kube.delete("BackupPolicy", "pacs")
        await kube.wait_for(lambda: points(kube)[name]["metadata"].get("deletionTimestamp"), timeout=20)
        review(kube, name)  # the garbage collector deleted it; a person still decides on its keys
        await kube.wait_for(lambda: kube.stored("batch/v1/jobs", None, shred.job_name(name, 1)), timeout=20)
        # the Job goes with its point (the garbage collector); what it did stays in the point's Events
        await kube.wait_for(lambda: not points(kube), timeout=60)
        assert events(kube, name, "Shredded"), [e["message"] for e in events(kube, name)]
    repo = f"file://{volumes['backup-local']}/repos/pacs"
    failed = _restore(repo, snapshot, transit.ref, transit.env, tmp_path / "out")
    assert failed.returncode != 0 and "crypto-shredded" in failed.stderr and "BackupPolicy pacs" in failed.stderr


async def test_one_persons_word_never_destroys_keys(kube, seeded, clock, vault_policy, audit_records, reviewers):
    """Reviewed destruction (issue 20): deleting a point holds it, with the key alive, until someone asks
    and a second person with the shred-reviewer role approves; both are audited."""
    transit, body = vault_policy
    body["spec"]["destinations"] = body["spec"]["destinations"][:1]
    async with kube.operator(clock=clock):
        name = await _one_point(kube, body)
        kube.delete("RecoveryPoint", name)
        held = await wait_event(kube, name, "ShredAwaitingApproval", timeout=20)
        assert "shred-reviewer" in held[0]["message"]

        def approval_condition():
            conds = ((points(kube).get(name) or {}).get("status") or {}).get("conditions") or []
            return next((c for c in conds if c["type"] == "ShredApproved"), None)
        cond = await kube.wait_for(approval_condition, timeout=20)
        assert cond["status"] == "False" and "a second person" in cond["message"]

        refused = []
        for key, value, user in ((shred_approval.ANN_APPROVE, "too early", "frank"),  # nobody asked yet
                                 (shred_approval.ANN_REQUEST, "cleanup", "carol"),
                                 (shred_approval.ANN_APPROVE, "mine", "carol"),  # the requester
                                 (shred_approval.ANN_APPROVE, "sure", "alice"),  # may edit points, not shred
                                 (shred_approval.ANN_APPROVE, "sure", "bob"),  # may not even edit them
                                 (shred_approval.ANN_APPROVALS, '[{"user": "frank"}]', ADMIN)):  # forged
            try:
                annotate(kube, name, key, value, user=user)
            except urllib.error.HTTPError as exc:  # the API server's refusal, with the webhook's message
                refused.append((user, str(exc)))
        assert [u for u, _ in refused] == ["frank", "carol", "alice", "bob", ADMIN], refused
        assert "nobody asked" in refused[0][1] and "cannot approve it" in refused[1][1]
        assert "may not approve shreds" in refused[2][1] and "cannot patch" in refused[3][1]
        assert "written by Lifeline's admission webhook" in refused[4][1]
        assert not shred_jobs(kube), "the key is alive while one person has spoken"

        annotate(kube, name, shred_approval.ANN_APPROVE, "checked the retention period", user="frank")
        cond = await kube.wait_for(lambda: (c := approval_condition()) and c["status"] == "True" and c, timeout=20)
        assert cond["message"] == "asked by carol, approved by frank"
        await kube.wait_for(lambda: name not in points(kube), timeout=60)
    [done] = [r for r in audit_records if r["action"] == "key-shred" and r["outcome"] == "succeeded"]
    assert (done["actor"], done["details"]["requestedBy"], done["details"]["approvedBy"]) == ("carol", "carol", "frank")
    assert {r["actor"] for r in audit_records if r["outcome"] == "refused"} >= {"frank", "carol", "alice", ADMIN}
