"""spec.fingerprint in pieces: the planner's container, what the agent keeps of the output (a count
or checksum, never a page of data), the tags the operator records; and the load command's reason
a failed database restore reports (never a line that may quote rows)."""
from __future__ import annotations

from lifeline.agent.jobs import FINGERPRINT_MAX, read_fingerprint
from lifeline.agent.restore_task import load_error
from lifeline.messages import FingerprintPlan, FingerprintResult
from lifeline.planning import backup
from lifeline.planning.backup_points import fingerprint_tags
from tests.backup.conftest import policy

FACTS = backup.Facts(agent_image="ghcr.io/lifeline-dr/lifeline:0.1.0")


def body(**spec) -> dict:
    out = policy("his", **spec)
    out["metadata"].update(namespace="hospital", uid="u-1")
    return out


def pod_of(b: dict) -> dict:
    cron = next(c for c in backup.plan(b, FACTS) if c["metadata"]["name"] == "his-full")
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_a_dump_source_fingerprint_runs_with_the_dump_environment_its_own_winning():
    b = body(fingerprint={"image": "postgres:16", "command": ["psql", "-tAc", "select 1"],
                          "env": [{"name": "PGUSER", "value": "reader"}]})
    b["spec"]["source"] = {"command": {"image": "postgres:16", "command": ["pg_dump", "his"],
                                       "env": [{"name": "PGHOST", "value": "db"}, {"name": "PGUSER", "value": "backup"}]}}
    pod = pod_of(b)
    fp = next(c for c in pod["containers"] if c["name"] == "fingerprint")
    assert fp["command"][-3:] == ["psql", "-tAc", "select 1"]
    assert {e["name"]: e.get("value") for e in fp["env"]} == {"PGHOST": "db", "PGUSER": "reader", "HOME": "/tmp"}
    assert fp["securityContext"]["readOnlyRootFilesystem"] is True
    agent = next(c for c in pod["containers"] if c["name"] == backup.AGENT)
    assert {"name": "fingerprint", "mountPath": "/fingerprint", "readOnly": True} in agent["volumeMounts"]


def test_a_volume_source_fingerprint_sees_the_source_read_only_and_none_without_the_field():
    pod = pod_of(body(fingerprint={"image": "busybox", "command": ["sh", "-c", "find /source | wc -l"]}))
    fp = next(c for c in pod["containers"] if c["name"] == "fingerprint")
    assert {"name": "source", "mountPath": "/source", "readOnly": True} in fp["volumeMounts"]
    assert [c["name"] for c in pod_of(body())["containers"]] == [backup.AGENT]


def _files(tmp_path, output: bytes, rc: str = "0") -> FingerprintPlan:
    (tmp_path / "output").write_bytes(output)
    (tmp_path / "exit-code").write_text(rc + "\n")
    return FingerprintPlan(output=str(tmp_path / "output"), exit_code=str(tmp_path / "exit-code"))


def test_the_agent_keeps_a_short_trimmed_value(tmp_path):
    got = read_fingerprint(_files(tmp_path, b"  137\n"), wait=0)
    assert got == FingerprintResult(output="137") and got.to_wire() == {"out": "137"}


def test_a_long_output_is_refused_not_recorded(tmp_path):
    got = read_fingerprint(_files(tmp_path, b"patient 1, Jane Doe\n" * 50), wait=0)
    assert got.output is None and "count or a checksum" in got.error
    # the bound the docs promise: a sha256 fits, one character more does not
    assert read_fingerprint(_files(tmp_path, b"a" * FINGERPRINT_MAX), wait=0).output == "a" * FINGERPRINT_MAX
    assert read_fingerprint(_files(tmp_path, b"a" * (FINGERPRINT_MAX + 1)), wait=0).error


def test_a_failed_or_missing_fingerprint_is_an_error(tmp_path):
    assert read_fingerprint(_files(tmp_path, b"", rc="2"), wait=0) == FingerprintResult(
        error="the fingerprint command exited with status 2")
    missing = FingerprintPlan(output=str(tmp_path / "x"), exit_code=str(tmp_path / "y"))
    assert "never appeared" in read_fingerprint(missing, wait=0).error


def test_tags_carry_the_value_or_why_it_is_missing():
    assert fingerprint_tags(FingerprintResult(output="137")) == {"verifyOutput": "137"}
    assert fingerprint_tags(FingerprintResult(error="the fingerprint command exited with status 2")) == {
        "verifyOutputError": "the fingerprint command exited with status 2"}
    assert fingerprint_tags(None) == {}


def test_the_load_reason_is_the_last_error_line_and_never_a_quoted_row(tmp_path):
    err = tmp_path / "load-errors"
    err.write_text('pg_restore: error: could not execute query: ERROR:  duplicate key value violates unique '
                   'constraint "patients_pkey"\nDETAIL:  Key (id)=(7) already exists.\n'
                   "CONTEXT:  COPY patients, line 1: \"7\tJane Doe\"\nCommand was: COPY public.patients FROM stdin;\n")
    reason = load_error(str(err))
    assert reason.startswith("pg_restore: error: could not execute query") and "Jane" not in reason
    assert load_error(str(tmp_path / "absent")) == "" and load_error(None) == ""
