"""Drill tests reuse the backup tests' set-up: the frozen clock shared by emulator, operator and job
runner, the namespace with its PVCs and key Secret, and the runner playing kubelet."""
from __future__ import annotations

import pytest

from tests.backup.conftest import (  # noqa: F401 - fixtures, re-exported for this directory
    NS, api, b64, clock, cluster, emulator, events, fast_timers, key_text, policy, runner, seed_pvc, seed_secret,
    volumes, wait_event,
)


@pytest.fixture(autouse=True)
def drill_timer(monkeypatch):
    # the drill controller re-reads its drills every 50 ms of real time; what it compares is the frozen clock
    monkeypatch.setenv("LIFELINE_DRILL_INTERVAL", "0.05")
