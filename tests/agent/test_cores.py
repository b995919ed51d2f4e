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
