"""The point-in-time restore Job (Restore.spec.targetTime): golden manifest for the example, the
agent runs restore-pitr with the target time, and a policy without a continuous source is refused
with a message that says what to do."""
from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lifeline.messages import DestinationPlan, KeyPlan, RestorePlan, RestoreTargetPlan
from lifeline.planning import backup, restore_pitr, restore_run
from lifeline.planning.backup import Facts, PlanError
from tests.backup.conftest import policy

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "restore-icu-pitr-job.yaml"
FACTS = Facts(agent_image="ghcr.io/lifeline-dr/lifeline:0.1.0")


def _restore() -> dict:
    body = yaml.safe_load((ROOT / "examples" / "restore-icu-pitr.yaml").read_text())
    body["metadata"].update(namespace="icu", uid="00000000-0000-4000-8000-000000000010")
    return body


def _policy() -> dict:
    body = yaml.safe_load((ROOT / "examples" / "backuppolicy-icu-charting-continuous.yaml").read_text())
    body["metadata"].update(namespace="icu", uid="00000000-0000-4000-8000-000000000011")
    return body


def _point(destination: str = "site-a-nfs") -> dict:
    return {"metadata": {"name": "icu-charting-20261123-0100", "namespace": "icu"},
            "spec": {"policyName": "icu-charting", "manifestChecksum": "sha256:" + "ab" * 32,
                     "copies": [{"destination": destination, "snapshotId": "0123456789abcdef"}]}}


def _job() -> dict:
    return restore_run.job(_restore(), _point(), _policy(), FACTS)


def test_the_example_renders_exactly_the_golden_job():
    text = yaml.safe_dump(_job(), sort_keys=False, width=100)
    if os.environ.get("LIFELINE_REGENERATE_GOLDEN") or not GOLDEN.exists():
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
        if not os.environ.get("LIFELINE_REGENERATE_GOLDEN"):
            pytest.fail(f"{GOLDEN.name} did not exist: written now, review it")
    assert text == GOLDEN.read_text()


def test_the_agent_runs_restore_pitr_to_the_target_time_into_the_claim():
    job = _job()
    kubernetes_validate.validate(job, "1.30", strict=True)
    pod = job["spec"]["template"]["spec"]
    agent = next(c for c in pod["containers"] if c["name"] == backup.AGENT)
    assert agent["command"] == ["python", "-m", "lifeline.agent.pitr_task"] == restore_pitr.command()
    args = agent["args"]
    assert args[args.index("--target-time") + 1] == "2026-11-23T14:05:00Z"
    assert args[args.index("--repo") + 1] == "file:///destinations/site-a-nfs/icu-charting"
    assert args[args.index("--key") + 1] == "vault-transit://lifeline-icu?mount=transit"
    assert args[-1] == "/target/pgdata" and "--no-archive" in args
    assert args[args.index("--source") + 1] == "icu/icu-charting"  # only this policy's base backups
    # self-contained by default: the WAL goes into the claim; the database pod needs no agent nor key
    assert restore_pitr.PREFETCH in args and "--fetch-command" not in args
    assert not any(e["name"] == "LIFELINE_JOB_PLAN" for e in agent["env"])
    # the emptiness guard still stands in front: restore-pitr needs an empty data directory
    assert pod["initContainers"][0]["name"] == restore_run.GUARD
    claim = next(v for v in pod["volumes"] if v["name"] == "target")
    assert claim["persistentVolumeClaim"]["claimName"] == "icu-db-restored"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "Restore"


def test_the_s3_copy_is_read_with_its_endpoint_and_credentials_under_index_0():
    body = _restore()
    body["spec"]["destination"] = "site-b-s3"
    job = restore_run.job(body, _point("site-b-s3"), _policy(), FACTS)
    agent = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in agent["env"]}
    assert env["LIFELINE_S3_0_ENDPOINT"]["value"] == "https://s3.site-b.hospital.example"
    assert env["LIFELINE_S3_0_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "site-b-s3"
    assert not any(n.startswith("LIFELINE_S3_1_") for n in env)
    assert "s3://icu-wal-site-b/icu-charting" in agent["args"]


def test_a_secret_key_is_passed_as_a_key_file_the_agent_copies_private():
    body = policy()
    body["metadata"]["namespace"] = "icu"
    body["spec"]["source"] = _policy()["spec"]["source"]
    restore = _restore()
    point = _point("local")
    job = restore_run.job(restore | {"spec": {**restore["spec"], "destination": "local"}}, point, body, FACTS)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--key-file") + 1] == "/etc/lifeline/key/key" and "--key" not in args


def test_a_policy_without_a_continuous_source_is_refused_with_what_to_do():
    body = policy()
    body["metadata"]["namespace"] = "icu"
    restore = _restore()
    with pytest.raises(PlanError) as err:
        restore_run.job(restore | {"spec": {**restore["spec"], "destination": "local"}}, _point("local"), body, FACTS)
    assert err.value.reason == "NotContinuous" and "without targetTime" in err.value.message


def _plan(target: str) -> RestorePlan:
    return RestorePlan(namespace="icu", policy="charting", snapshot_id="0123", key=KeyPlan(ref="file:///k"),
                       destinations=[DestinationPlan(name="a", repository="file:///r")],
                       target=RestoreTargetPlan(kind="pvc", path=target))


def test_restore_pitr_is_given_the_plans_repository_key_and_source():
    args = restore_pitr.args(_plan("/target"), "latest")
    assert json.dumps(args) and args[args.index("--source") + 1] == "icu/charting"
    assert args[args.index("--repo") + 1] == "file:///r" and args[-1] == "/target"
    old_shape = restore_pitr.args(_plan("/t"), "latest", prefetch=False)
    assert restore_pitr.PREFETCH not in old_shape
    assert old_shape[old_shape.index("--fetch-command") + 1] == restore_pitr.FETCH_PREFIX


def test_overwrite_reaches_the_agent_only_when_the_restore_asks_for_it():
    """The agent refuses a non-empty target unless its plan says overwrite (tests/security/test_restore_escape)."""
    def plan_of(**spec) -> dict:
        body = _restore()
        body["spec"].pop("targetTime", None)
        body["spec"].update(spec)
        job = restore_run.job(body, _point(), _policy(), FACTS)
        env = {e["name"]: e.get("value") for c in job["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
        return json.loads(env["LIFELINE_JOB_PLAN"])

    assert "overwrite" not in plan_of()["target"]
    assert plan_of(overwrite=True)["target"]["overwrite"] is True


def test_a_wal_gap_is_a_failed_restore_that_names_the_hole():
    from lifeline.agent.pitr_task import summary_of

    out = json.dumps({"bytes": 9, "files": 2, "base_backup": "b1", "recovery_target_time": "T",
                      "wal": {"last_good": "000000010000000000000007", "gaps": ["08..0A"]}})
    gap = summary_of(3, out, "")
    assert (gap.ok, gap.reason, gap.bytes_restored) == (False, "WALGap", 9)
    assert gap.last_segment == "000000010000000000000007"
    assert gap.error == ("the shipped WAL has a hole before the target: 08..0A; "
                         "the directory recovers only to 000000010000000000000007")
    failed = summary_of(1, "not json", "restore-pitr: error: no base backup before T\n")
    assert (failed.reason, failed.error) == ("RestoreFailed", "restore-pitr: error: no base backup before T")
    assert summary_of(0, out, "").ok


def test_the_guard_refuses_a_target_that_holds_anything(tmp_path, monkeypatch):
    from lifeline.agent import target_guard
    from lifeline.messages import RestoreSummary, read_summary

    log = tmp_path / "termination-log"
    monkeypatch.setenv("LIFELINE_TERMINATION_LOG", str(log))
    (tmp_path / "target" / "lost+found").mkdir(parents=True)
    assert target_guard.main([str(tmp_path / "target"), "db:/"]) == 0 and not log.exists()
    (tmp_path / "target" / "PG_VERSION").write_text("16")
    assert target_guard.main([str(tmp_path / "target"), "db:/"]) == 2
    summary, problem = read_summary(log.read_text(), RestoreSummary)
    assert problem is None and (summary.ok, summary.reason) == (False, "TargetNotEmpty")
    assert "target db:/ is not empty (1 entries: PG_VERSION)" in summary.error
