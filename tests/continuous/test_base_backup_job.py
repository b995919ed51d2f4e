"""The continuous PostgreSQL policy's backup Job: the copy pg_basebackup left (init container) is
stored at every destination as a base backup that restore-pitr finds, and the termination message
is the summary the operator records; a missing or foreign copy fails loudly, never as a point."""
from __future__ import annotations

import json

from lifeline.agent import base_backup_job
from lifeline.agent.wal_pitr import base_points, choose_base
from lifeline.repository.backend import open_backend
from lifeline.repository.repo import Repository

from .helpers import new_repo

LABEL = ("START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n"
         "CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n")


def _copy(root):
    data = root / "basebackup" / "data"
    (data / "base" / "1").mkdir(parents=True)
    (data / "backup_label").write_text(LABEL)
    (data / "PG_VERSION").write_text("16\n")
    (data / "base" / "1" / "16384").write_bytes(b"heap page " * 5000)
    return data


def _plan(data, repos, key_ref):
    return {"v": 1, "operation": "backup", "namespace": "icu", "policy": "charting", "type": "full",
            "source": {"kind": "continuous", "path": str(data), "name": "icu/charting", "baseBackup": True},
            "tags": ["policy=icu/charting"], "key": {"ref": key_ref},
            "destinations": [{"name": f"d{i}", "repository": url} for i, url in enumerate(repos)]}


def test_the_copy_becomes_a_base_backup_at_every_destination(tmp_path):
    data = _copy(tmp_path)
    first, key_ref = new_repo(tmp_path, "site-a")
    second = f"file://{tmp_path / 'site-b'}"  # not created yet: the Job initialises it
    log = tmp_path / "termination-log"
    rc = base_backup_job.main(["backup", "--plan", json.dumps(_plan(data, [first, second], key_ref)),
                               "--termination-log", str(log)])
    assert rc == 0
    summary = json.loads(log.read_text())
    assert [c["d"] for c in summary["ok"]] == ["d0", "d1"] and summary["failed"] == []
    assert summary["ok"][0]["t"] == "full"
    for url in (first, second):
        base = choose_base(base_points(Repository.open(open_backend(url))), None)
        assert set(base.header["tags"]) >= {"base-backup", "wal-start=000000010000000000000005",
                                            "policy=icu/charting"}
        assert base.header["source"]["name"] == "icu/charting"


def test_no_copy_is_a_failed_backup_that_says_why(tmp_path):
    url, key_ref = new_repo(tmp_path, "site-a")
    log = tmp_path / "termination-log"
    rc = base_backup_job.main(["--plan", json.dumps(_plan(tmp_path / "nothing", [url], key_ref)),
                               "--termination-log", str(log)])
    summary = json.loads(log.read_text())
    assert rc == 1 and summary["ok"] == []
    assert "pg_basebackup left no" in summary["error"] and "init container" in summary["error"]
    assert base_points(Repository.open(open_backend(url))) == []


def test_a_directory_without_a_backup_label_start_is_refused(tmp_path):
    data = _copy(tmp_path)
    (data / "backup_label").write_text("not a label\n")
    url, key_ref = new_repo(tmp_path, "site-a")
    log = tmp_path / "termination-log"
    assert base_backup_job.main(["--plan", json.dumps(_plan(data, [url], key_ref)),
                                 "--termination-log", str(log)]) == 1
    assert "no START WAL LOCATION" in json.loads(log.read_text())["error"]
