"""The cores the agent may use: its affinity, capped by its cgroup's CPU quota (a Kubernetes limit)."""
from __future__ import annotations

import os

import pytest

from lifeline.agent.cores import usable_cores


@pytest.mark.parametrize("cpu_max, cores", [("100000 100000", 1), ("50000 100000", 1), ("150000 100000", 2),
                                            ("max 100000", None), ("garbage", None)])
def test_a_cgroup_v2_quota_caps_the_cores(tmp_path, cpu_max, cores):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    mine = len(os.sched_getaffinity(0))
    assert usable_cores(str(tmp_path)) == (min(cores, mine) if cores else mine)


def test_a_cgroup_v1_quota_caps_the_cores_and_none_leaves_the_affinity(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(str(tmp_path)) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cores(str(tmp_path)) == len(os.sched_getaffinity(0))
    assert usable_cores(str(tmp_path / "missing")) == len(os.sched_getaffinity(0))


def test_without_an_affinity_the_node_count_is_the_start(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cores(str(tmp_path)) == 6
    (tmp_path / "cpu.max").write_text("200000 100000\n")
    assert usable_cores(str(tmp_path)) == 2


@pytest.mark.parametrize("cores, savers, fetchers, writers", [(1, 2, 4, 1), (3, 3, 12, 3), (64, 4, 16, 4)])
def test_the_backup_and_the_restore_start_workers_for_the_cores_they_may_use(
        repo, tmp_path, monkeypatch, cores, savers, fetchers, writers):
    """A Job limited to one CPU on a large node starts the workers for one core, not the node's."""
    from lifeline.agent import backup, restore
    from lifeline.agent.backup import dir_source, run_backup
    from lifeline.agent.restore import Restorer
    from lifeline.repository.repo import Repository

    from .maintenance_helpers import open_repo

    monkeypatch.setattr(backup, "usable_cores", lambda: cores)
    monkeypatch.setattr(restore, "usable_cores", lambda: cores)
    monkeypatch.delenv("LIFELINE_RESTORE_WRITERS", raising=False)
    asked = []
    real = Repository.blob_saver
    monkeypatch.setattr(Repository, "blob_saver",
                        lambda self, keys, known, *, workers: asked.append(workers) or real(self, keys, known, workers=workers))
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100))
    r, provider = open_repo(repo)
    point = run_backup(r, provider, dir_source(str(src)))["point_id"]
    assert asked == [savers]
    assert Restorer(r, provider, point).workers == fetchers
    assert restore._writer_count(restore.WRITERS_FROM, restore.WRITERS_FROM) == writers
