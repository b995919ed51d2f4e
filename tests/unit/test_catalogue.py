"""Adoption's planner: listed copies grouped into points as their backup Jobs made them."""
from __future__ import annotations

import json

from lifeline.messages import CATALOGUE_LINE
from lifeline.planning import backup, catalogue
from tests.backup.conftest import policy


def body() -> dict:
    b = policy()
    b["metadata"].update(namespace="his", uid="11111111-2222-4333-8444-555555555555")
    return b


def row(dest: str, pid: str, start: str, run: str | None, parent: str | None = None, type_: str = "full") -> dict:
    return {"destination": dest, "repository": f"file:///destinations/{dest}/repos/pacs", "point_id": pid,
            "type": type_, "parent_id": parent, "start_time": start, "completion_time": start.replace(":00Z", ":30Z"),
            "size_bytes": 100, "stored_bytes": 40, "files": 2, "key_ref": "file:///tmp/lifeline-job-x/key",
            "manifest_checksum": "blake3:" + pid[0] * 64, "tags": ["policy=his/pacs"] + ([f"run={run}"] if run else [])}


def test_copies_of_one_job_are_one_point_and_parents_are_named():
    rows = [row("local", "a1", "2026-12-01T01:00:00Z", "r1"), row("offsite", "b1", "2026-12-01T01:00:00Z", "r1"),
            row("local", "a2", "2026-12-01T01:15:00Z", "r2", parent="a1", type_="incremental"),
            row("offsite", "b2", "2026-12-01T01:15:00Z", "r2", parent="b1", type_="incremental")]
    made = catalogue.adopt(body(), rows, [])
    assert [m["metadata"]["name"] for m in made] == ["pacs-20261201-010000", "pacs-20261201-011500"]
    first, second = (m["spec"] for m in made)
    assert [(c["destination"], c["snapshotId"]) for c in first["copies"]] == [("local", "a1"), ("offsite", "b1")]
    assert second["parent"] == "pacs-20261201-010000" and second["type"] == "incremental"
    assert first["keyRef"] == "secret://pacs-key/key", "the Job's own key file is never a point's key reference"
    assert made[0]["metadata"]["labels"][backup.LABEL_POLICY] == "pacs"


def test_what_a_point_records_is_not_adopted_again_and_untagged_copies_stand_alone():
    rows = [row("local", "a1", "2026-12-01T01:00:00Z", "r1"), row("offsite", "b1", "2026-12-01T01:00:00Z", "r1"),
            row("local", "a0", "2026-11-30T01:00:00Z", None), row("offsite", "b0", "2026-11-30T01:00:00Z", None),
            row("elsewhere", "c9", "2026-11-29T01:00:00Z", "r9")]  # a destination the policy no longer names
    made = catalogue.adopt(body(), rows, [("pacs-20261201-010000", ["a1", "b1"])])
    assert [[c["snapshotId"] for c in m["spec"]["copies"]] for m in made] == [["a0"], ["b0"]]
    assert [m["metadata"]["name"] for m in made] == ["pacs-20261130-010000", "pacs-20261130-010000-full"]


def test_only_whole_point_lines_of_the_log_are_read():
    good = row("local", "a1", "2026-12-01T01:00:00Z", "r1")
    log = "\n".join(["starting", CATALOGUE_LINE + json.dumps(good), CATALOGUE_LINE + "{not json",
                     CATALOGUE_LINE + json.dumps({"point_id": "x"}), "[local] done"])
    assert catalogue.listed(log) == [good]


def test_a_catalogue_job_is_never_read_as_a_backup_of_the_policy():
    job = catalogue.job(body(), backup.Facts("ghcr.io/lifeline-dr/lifeline:test"), "now-1")
    assert backup.LABEL_POLICY not in job["metadata"]["labels"]
    assert backup.LABEL_POLICY not in job["spec"]["template"]["metadata"]["labels"]
    agent = job["spec"]["template"]["spec"]["containers"][0]
    assert agent["args"] == ["catalogue"]
    plan = json.loads(next(e["value"] for e in agent["env"] if e["name"] == "LIFELINE_JOB_PLAN"))
    assert plan["operation"] == "catalogue" and plan["tag"] == "policy=his/pacs"
    assert job["metadata"]["name"] == catalogue.job_name("pacs", "now-1") and job["metadata"]["ownerReferences"]
