"""How many cores the agent may use: not the node's count (``os.cpu_count``), which a Job limited to one
CPU on a large node would take for many, but its CPU affinity, capped by its cgroup's quota (what a
Kubernetes CPU limit sets: ``cpu.max`` under cgroup v2, ``cpu.cfs_quota_us`` under v1)."""
from __future__ import annotations

import math
import os

CGROUP = "/sys/fs/cgroup"


def usable_cores(cgroup: str = CGROUP) -> int:
    """At least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _quota(cgroup)
    return max(1, min(n, math.ceil(quota)) if quota else n)


def _quota(cgroup: str) -> float | None:
    """The cgroup's CPU quota in cores, None when it has none (or it cannot be read)."""
    try:
        with open(os.path.join(cgroup, "cpu.max")) as f:
            limit, period = f.read().split()[:2]
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(cgroup, "cpu", "cpu.cfs_quota_us")) as f:
            limit = int(f.read())
        with open(os.path.join(cgroup, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        return None if limit <= 0 or period <= 0 else limit / period
    except (OSError, ValueError):
        return None
