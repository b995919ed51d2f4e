"""The embedded stack the end-to-end tests drive: the honest emulator over HTTP, the real kopf
operator, the job runner playing kubelet for the real agent, and real OpenBao / moto S3 where a
test needs them. One frozen clock for all of it (tests/backup's fixtures), so no test waits for time."""
from __future__ import annotations

import pytest

from lifeline.api import BY_KIND
from tests.backup.conftest import (  # noqa: F401  (fixtures, and the readers the tests here share)
    NS, api, clock, cluster, cond, emulator, fast_timers, key_text, points, policy, runner, seed_secret, stored,
    volumes,
)

POINT = BY_KIND["RecoveryPoint"].resource


async def settled(emulator, name: str = "pacs", timeout: float = 20) -> dict:
    """The policy once its status is about its latest generation and its CronJobs exist."""
    def check():
        o = stored(emulator, name)
        st = (o or {}).get("status") or {}
        return o if o and st.get("observedGeneration") == o["metadata"]["generation"] and st.get("cronJobs") else None
    return await emulator.wait_for(check, timeout=timeout)


async def recorded(emulator, job: str, name: str = "pacs", timeout: float = 20) -> dict:
    """The policy once its lastBackup is the finished Job ``job``."""
    def check():
        o = stored(emulator, name)
        lb = ((o or {}).get("status") or {}).get("lastBackup") or {}
        return o if lb.get("job") == job and lb.get("outcome") not in (None, "Running") else None
    return await emulator.wait_for(check, timeout=timeout)


@pytest.fixture
def drill_timer(monkeypatch):
    """The drill controller re-reads its drills every 50 ms of real time (what it compares is the
    frozen clock); set in the environment, so an operator process started by the test inherits it."""
    monkeypatch.setenv("LIFELINE_DRILL_INTERVAL", "0.05")
