"""Prune keeps every segment a kept base backup needs, and no more; the log epoch survives."""
from __future__ import annotations

from lifeline.agent.backup import dir_source, run_backup
from lifeline.agent.prune import run_prune
from lifeline.messages import RetentionPlan
from lifeline.agent.verify import run_check

from .helpers import make_segment, new_repo, store, wal_name


def base_backup(s, tmp_path, start_seq: int, at: float) -> str:
    data = tmp_path / f"pgdata-{start_seq}"
    data.mkdir()
    (data / "PG_VERSION").write_text("15\n")
    summary = run_backup(s.repo, s.provider, dir_source(str(data), "icu"), kind="full", at=at,
                         tags=["base-backup", f"wal-start={wal_name(start_seq)}"])
    return summary["point_id"]


def test_prune_deletes_only_segments_older_than_the_oldest_kept_base_backup(tmp_path):
    url, key = new_repo(tmp_path)
    s = store(url, key)
    for seq in range(1, 11):
        s.push(str(make_segment(tmp_path / "wal", seq)))
    (tmp_path / "wal" / "00000002.history").write_text("1\t0/3000000\tno recovery target specified\n")
    s.push(str(tmp_path / "wal" / "00000002.history"))
    base_backup(s, tmp_path, 3, 1_700_000_000.0)
    base_backup(s, tmp_path, 7, 1_700_086_400.0)

    report = run_prune(s.repo, s.provider, RetentionPlan(last=2))
    assert report["wal_segments_deleted"] == 2  # 1 and 2: before the older base backup
    assert store(url, key).list()["00000001"] == [wal_name(i) for i in range(3, 11)]

    report = run_prune(s.repo, s.provider, RetentionPlan(last=1))
    assert report["wal_segments_deleted"] == 4  # 3..6: only the newer base backup is left
    listing = store(url, key).list()
    assert listing["00000001"] == [wal_name(i) for i in range(7, 11)]
    assert listing["aux"] == ["00000002.history"]
    fresh = store(url, key)
    assert fresh.fetch(wal_name(10))[1] == (tmp_path / "wal" / wal_name(10)).read_bytes()  # key kept
    assert "unused_epoch_keys" not in run_check(fresh.repo, fresh.provider).leftovers


def test_without_a_base_backup_prune_deletes_no_segment(tmp_path):
    url, key = new_repo(tmp_path)
    s = store(url, key)
    for seq in (1, 2):
        s.push(str(make_segment(tmp_path / "wal", seq)))
    assert run_prune(s.repo, s.provider, RetentionPlan(last=1))["wal_segments_deleted"] == 0
    assert store(url, key).fetch(wal_name(2))[1] == (tmp_path / "wal" / wal_name(2)).read_bytes()
