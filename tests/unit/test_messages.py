"""The messages between the operator and its Jobs' agents (lifeline.messages): plans the agent refuses
when they are wrong, summaries that fit a termination message, and summaries the operator reads back
as a sentence for the status when they are cut off, malformed or of another version, never as a
KeyError."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from lifeline.agent import jobs, restore_task
from lifeline.messages import (EXIT_BAD_PLAN, MAX_MESSAGE, BackupPlan, BackupSummary, CopyShredded, CopyStored,
                               DestinationFailed, DestinationPlan, FingerprintResult, KeyPlan, PrunePlan, PruneReport,
                               RestorePlan, RestoreSummary, ShredSummary, SourcePlan, UnreadableMessage, VerifyReport,
                               read_plan, read_summary, render)
from lifeline.planning import backup, backup_points, backup_status
from tests.backup.conftest import policy

NOW = "2026-11-23T10:00:00Z"


def copy(i: int = 0, **kw) -> CopyStored:
    return CopyStored(**{"destination": f"dest-{i}", "snapshot_id": f"{i:032x}", "type": "full",
                         "repository": f"s3://bucket/pacs-{i}", "stored_bytes": 10, "chunks": (3, 1),
                         "manifest_checksum": "blake3:" + "0" * 64, "start": NOW, "end": NOW, "seconds": 1.5, **kw})


def backup_summary(n: int = 2) -> BackupSummary:
    return BackupSummary(requested_type="incremental", key_ref="secret://k/key", start=NOW, end=NOW,
                         size_bytes=1 << 20, files=12, copies=[copy(i) for i in range(n)],
                         failures=[DestinationFailed(destination="offsite", exit_code=1, error="bucket gone")],
                         fingerprint=FingerprintResult(output="137"))


def plan() -> BackupPlan:
    return BackupPlan(namespace="hospital", policy="pacs", type="full", key=KeyPlan(ref="secret://k/key"),
                      destinations=[DestinationPlan(name="local", repository="file:///destinations/local")],
                      source=SourcePlan(kind="pvc", path="/source", name="hospital/pacs"))


# ---- the wire form ---------------------------------------------------------------------------------


def test_the_wire_keys_are_the_ones_the_agents_have_always_written():
    wire = json.loads(render(backup_summary(1)))
    assert wire["v"] == 1 and wire["op"] == "backup" and wire["fp"] == {"out": "137"}
    assert wire["ok"] == [{"d": "dest-0", "id": "0" * 32, "t": "full", "repo": "s3://bucket/pacs-0", "stored": 10,
                           "chunks": [3, 1], "sum": "blake3:" + "0" * 64, "s": NOW, "e": NOW, "dur": 1.5,
                           "skipped": 0}]
    assert wire["failed"] == [{"d": "offsite", "rc": 1, "error": "bucket gone"}]
    assert "p" not in wire["ok"][0], "nothing that is None is written: every byte counts"


def test_a_summary_written_by_an_agent_reads_back_as_the_same_model():
    for summary, kind in ((backup_summary(), BackupSummary),
                          (PruneReport(forgotten={"local": ["ab" * 8]}, kept={"local": 3}), PruneReport),
                          (RestoreSummary(ok=True, bytes_restored=5, restore_seconds=1.0, checksum_seconds=0.25),
                           RestoreSummary),
                          (ShredSummary(point="p", shredded=[CopyShredded(destination="a", epoch="e1", points=["x"])]),
                           ShredSummary)):
        assert read_summary(render(summary), kind) == (summary, None)


def test_the_summary_always_fits_a_termination_message_and_says_when_it_was_cut():
    summary = backup_summary(60)
    summary.failures = [DestinationFailed(destination=f"f{i}", exit_code=1, error="e" * 5000) for i in range(5)]
    text = render(summary)
    assert len(text.encode()) <= MAX_MESSAGE
    read, problem = read_summary(text, BackupSummary)
    assert problem is None and read.truncated and read.copies and all(len(f.error) <= 200 for f in read.failures)


# ---- reading what is wrong -------------------------------------------------------------------------


def test_a_summary_cut_anywhere_is_a_cut_off_summary_never_an_exception():
    text = render(backup_summary(3))
    for n in range(1, len(text)):
        summary, problem = read_summary(text[:n], BackupSummary)
        assert summary is None and problem.startswith("the agent's summary was cut off after"), (n, problem)
    assert "4096" in problem


def test_a_malformed_summary_says_it_is_not_valid_json():
    summary, problem = read_summary('{"v":1,"op":"backup",,"ok":[]}', BackupSummary)
    assert summary is None and problem.startswith("the agent's summary is not valid JSON: ")
    assert read_summary("[1, 2]", BackupSummary) == (None, None), "not an object: not a summary at all"


def test_a_summary_of_another_version_says_which():
    wire = json.loads(render(backup_summary()))
    for version in (2, None, "1"):
        summary, problem = read_summary(json.dumps(dict(wire, v=version)), BackupSummary)
        assert summary is None
        assert problem == (f"the agent's summary is version {version!r}, and this release reads version 1 "
                           "(do the agent image and the operator come from the same release?)")


def test_a_summary_missing_what_the_operator_needs_names_the_key():
    wire = json.loads(render(backup_summary()))
    del wire["ok"][0]["id"]
    wire["failed"][0]["d"] = 7
    summary, problem = read_summary(json.dumps(wire), BackupSummary)
    assert summary is None and problem.startswith("the agent's summary is not valid: ")
    assert "ok.0.id: Field required" in problem and "failed.0.d" in problem
    summary, problem = read_summary(render(RestoreSummary(ok=True)), BackupSummary, PruneReport)
    assert problem == "the agent's summary is a 'restore' summary where a backup or prune summary was expected"


def test_log_output_is_no_summary_and_no_problem():
    """FallbackToLogsOnError: a crashed agent's message is its log's tail; the caller shows it as such."""
    assert read_summary("Traceback (most recent call last):\n  ...", BackupSummary) == (None, None)
    assert read_summary(None, BackupSummary) == (None, None) == read_summary("  ", BackupSummary)


def test_an_unknown_key_from_a_newer_agent_is_ignored():
    wire = dict(json.loads(render(backup_summary())), compression="zstd")
    assert read_summary(json.dumps(wire), BackupSummary).summary == backup_summary()


def test_a_cut_off_summary_becomes_the_backups_failure_reason_in_the_status():
    text = render(backup_summary())
    pods = [{"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "agent", "state": {"terminated": {
        "exitCode": 0, "reason": "Completed", "message": text[:100], "finishedAt": NOW}}}]}}]
    summary, report, problem = backup_points.pod_report(pods, BackupSummary)
    assert summary is None and problem.startswith("the agent's summary was cut off")
    assert report.startswith(problem) and report.endswith("agent exited 0 (Completed)")
    job = {"name": "pacs-full-1", "uid": "j1", "operation": "backup", "type": "full", "trigger": "Schedule",
           "start": NOW, "created": NOW, "completion": NOW, "phase": "Succeeded", "recorded": "Failed"}
    job["result"] = dict(backup_points.result_of(job, summary, report, None, problem), o="Failed")
    body = policy()
    body["metadata"].update(namespace="hospital", uid="u", generation=1, creationTimestamp=NOW)
    later = datetime(2026, 11, 23, 10, 5, tzinfo=timezone.utc)
    status = backup_status.plan_status(body, backup_status.Inputs(now=later, jobs=[job])).patch
    assert status["lastBackup"]["outcome"] == "Failed"
    assert status["lastBackup"]["message"].startswith("the agent's summary was cut off after 100 bytes")


# ---- plans -------------------------------------------------------------------------------------------


def test_the_plan_the_operator_renders_is_the_plan_the_agent_reads():
    spec = backup.parse_spec(policy())
    for operation, kind in (("backup", BackupPlan), ("prune", PrunePlan)):
        rendered = backup.job_plan("hospital", "pacs", spec, operation, "full")
        assert read_plan(rendered.to_json(), kind) == rendered
        assert json.loads(rendered.to_json())["v"] == 1


@pytest.mark.parametrize("text, says", [
    ("", "no job plan: LIFELINE_JOB_PLAN is empty"),
    ("{not json", "the job plan is not valid JSON"),
    ('{"v": 2, "operation": "backup"}', "the job plan is version 2, and this release reads version 1"),
    ('{"v": 1, "operation": "prune"}', "the job plan is for 'prune', and this command runs 'backup'"),
    ('{"v": 1, "operation": "backup", "namespace": "h", "policy": "p", "destinations": [], "key": {"ref": "x"},'
     ' "source": {"kind": "pvc", "path": "/s", "name": "h/p"}}', "destinations: List should have at least 1 item"),
    ('{"v": 1, "operation": "backup", "namespace": "h", "policy": "p", "key": {"ref": "x"},'
     ' "destinations": [{"name": "a", "repository": "file:///r"}],'
     ' "source": {"kind": "command", "path": "/dump/stream", "name": "h/p", "stream": {"name": "pg_dump.out"}}}',
     "source.stream.exitCode: Field required"),
])
def test_a_bad_plan_is_refused_with_what_is_wrong(text, says):
    with pytest.raises(UnreadableMessage, match=says.replace("(", r"\(")):
        read_plan(text, BackupPlan)


def test_the_agents_exit_with_their_own_code_on_a_bad_plan_and_do_nothing(tmp_path, capsys):
    log = tmp_path / "termination-log"
    assert jobs.main(["backup", "--plan", '{"v": 1, "operation": "prune"}', "--termination-log", str(log)]) \
        == EXIT_BAD_PLAN == 78
    assert "the job plan is for 'prune', and this command runs 'backup'; nothing was done" in capsys.readouterr().err
    assert jobs.main(["prune", "--plan", "@" + str(tmp_path / "missing"), "--termination-log", str(log)]) \
        == EXIT_BAD_PLAN
    assert restore_task.main(["restore", "--plan", plan().to_json(), "--termination-log", str(log)]) == EXIT_BAD_PLAN
    assert not log.exists(), "a refused plan leaves no summary: the message is the log's tail"


def test_a_restore_plan_keeps_its_single_destination_and_writes_overwrite_only_when_asked():
    base = dict(namespace="h", policy="p", snapshot_id="s", key=KeyPlan(ref="x"),
                destinations=[DestinationPlan(name="a", repository="file:///r")])
    dir_plan = RestorePlan(**base, target={"kind": "pvc", "path": "/target"})
    assert "overwrite" not in json.loads(dir_plan.to_json())["target"]
    with pytest.raises(ValueError, match="at most 1 item"):
        RestorePlan(**dict(base, destinations=base["destinations"] * 2), target={"kind": "pvc", "path": "/t"})


def test_the_verify_containers_text_header():
    report = VerifyReport.parse("lifeline-verify rc=0 ns=1500000000\n 137 \n")
    assert (report.exit_code, report.seconds, report.output) == (0, 1.5, "137")
    assert VerifyReport.parse("no header") is None


# ---- the operator's own record on a finished Job ----------------------------------------------------


def test_the_record_on_a_job_reads_what_earlier_releases_wrote():
    from lifeline.planning.job_record import JobRecord

    written = {"o": "Failed", "op": "backup", "msg": "agent exited 1 (Error)", "start": None, "end": None,
               "ok": [], "failed": {"s3": "key refused"}, "rc": {"s3": 4}, "rp": None}
    record = JobRecord.of({"result": written})
    assert (record.outcome, record.failures, record.exit_codes, record.recovery_point) == (
        "Failed", {"s3": "key refused"}, {"s3": 4}, None)
    assert json.loads(record.to_annotation()) == {k: v for k, v in written.items() if v is not None}
    assert JobRecord.of({"result": None}) is None and JobRecord.of({"result": {"ok": "not a list"}}) is None
