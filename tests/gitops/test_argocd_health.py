"""Argo CD health checks (deploy/argocd/health/*.lua) under a real Lua runtime, one state at a time."""
from __future__ import annotations

import pytest

from .argo import KINDS, health, script
from .samples import INVALID, READY, cond, obj


@pytest.mark.parametrize("kind", KINDS)
def test_no_status_yet_is_progressing(kind):
    assert health(kind, obj(kind, observed=None))["status"] == "Progressing"


@pytest.mark.parametrize("kind", KINDS)
def test_a_generation_the_operator_has_not_observed_is_progressing_whatever_the_status_says(kind):
    # the status below would be Healthy (or Degraded) at generation 1; the spec changed since
    for conditions in ((READY,), INVALID):
        got = health(kind, obj(kind, *conditions, generation=2, observed=1, phase="Available"))
        assert got == {"status": "Progressing", "message": "generation 2 not observed yet"}


@pytest.mark.parametrize("kind", KINDS)
def test_an_invalid_spec_is_degraded_with_the_reason(kind):
    got = health(kind, obj(kind, *INVALID))
    assert got["status"] == "Degraded"
    assert got["message"].startswith("InvalidSpec: spec.tier")


# ---- BackupPolicy


def test_backuppolicy_healthy_suspended_degraded_progressing():
    ready = cond("Ready", "True", "SpecValid", "BackupPolicy spec is valid; scheduled: pacs-full (0 1 * * *)")
    assert health("BackupPolicy", obj("BackupPolicy", ready)) == {"status": "Healthy", "message": ready["message"]}
    suspended = health("BackupPolicy", obj("BackupPolicy", ready, spec={"suspend": True}))
    assert suspended["status"] == "Suspended"
    for type_, reason in (("KeysAvailable", "KeyMissing"), ("DestinationsReachable", "DestinationFailed"),
                          ("RPOMet", "NoSuccessfulBackup"), ("SourceAvailable", "PVCNotFound")):
        got = health("BackupPolicy", obj("BackupPolicy", ready, cond(type_, "False", reason, "what to fix")))
        assert got == {"status": "Degraded", "message": f"{type_} ({reason}): what to fix"}
    # a schedule that cannot meet the RPO is accepted (loud in its own condition), not Degraded
    sparse = cond("RPOAchievable", "False", "ScheduleTooSparse", "the longest gap is 1 day")
    assert health("BackupPolicy", obj("BackupPolicy", ready, sparse))["status"] == "Healthy"
    # a transient failure (the API refused a CronJob) is still being reconciled
    apply_failed = (cond("Ready", "False", "ApplyFailed", "CronJob pacs-full: 500"),
                    cond("Reconciling", "True", "ApplyFailed", "CronJob pacs-full: 500"))
    assert health("BackupPolicy", obj("BackupPolicy", *apply_failed)) == {
        "status": "Progressing", "message": "CronJob pacs-full: 500"}


# ---- RecoveryPoint


def test_recoverypoint_phases():
    assert health("RecoveryPoint", obj("RecoveryPoint", READY, phase="Available"))["status"] == "Healthy"
    assert health("RecoveryPoint", obj("RecoveryPoint", READY, phase="Damaged"))["status"] == "Degraded"
    for phase in ("Pruned", "Shredded"):
        got = health("RecoveryPoint", obj("RecoveryPoint", READY, phase=phase))
        assert got["status"] == "Suspended" and phase in got["message"]
    assert health("RecoveryPoint", obj("RecoveryPoint"))["status"] == "Progressing"


# ---- RestoreDrill


def test_restoredrill_runs():
    drill = "RestoreDrill"
    assert health(drill, obj(drill, READY)) == {"status": "Healthy", "message": "no drill has run yet"}
    passed = {"outcome": "Succeeded", "rtoMet": True, "totalSeconds": 42, "rtoSeconds": 300}
    assert health(drill, obj(drill, READY, lastRun=passed))["status"] == "Healthy"
    assert health(drill, obj(drill, READY, lastRun={"outcome": "Running"}))["status"] == "Progressing"
    failed = health(drill, obj(drill, READY, lastRun={"outcome": "Failed", "message": "row count 0, expected > 0"}))
    assert failed == {"status": "Degraded", "message": "the last drill failed: row count 0, expected > 0"}
    slow = health(drill, obj(drill, READY, lastRun=dict(passed, rtoMet=False, totalSeconds=400)))
    assert slow == {"status": "Degraded", "message": "the last drill took 400 s, over the RTO of 300 s"}
    assert health(drill, obj(drill, READY, lastRun=passed, spec={"suspend": True}))["status"] == "Suspended"


# ---- Restore


def test_restore_phases():
    def phase(p, **more):
        return health("Restore", obj("Restore", READY, phase=p, **more))

    assert phase("PendingApproval", approvals=[{"user": "alice"}]) == {
        "status": "Suspended", "message": "waiting for approval (1 of 2)"}
    assert phase("Approved")["status"] == "Progressing"
    assert phase("Running", message="restoring 3 of 9 files")["message"] == "restoring 3 of 9 files"
    assert phase("Succeeded")["status"] == "Healthy"
    assert phase("Failed", message="key shredded")== {"status": "Degraded", "message": "Failed: key shredded"}
    assert phase("Rejected", message="rejected by bob")["status"] == "Degraded"


# ---- FailoverPlan


def test_failoverplan_phases():
    def plan(p, *more):
        return health("FailoverPlan", obj("FailoverPlan", READY, *more, phase=p, activeSite="site-a"))

    assert plan("Monitoring") == {"status": "Healthy", "message": "Monitoring: serving from site-a"}
    assert plan("FailedOver")["status"] == "Healthy"
    assert plan("Degraded") == {"status": "Degraded", "message": "the active site site-a fails its health checks"}
    assert plan("FailingOver")["status"] == "Progressing"
    assert plan("FailingBack")["status"] == "Progressing"
    waiting = cond("FailoverRecommended", "True", "ManualMode", "run lifeline failover approve icu")
    assert plan("Degraded", waiting) == {"status": "Suspended", "message": "ManualMode: run lifeline failover approve icu"}
    not_waiting = cond("FailoverRecommended", "False", "NoBreach", "")
    assert plan("Monitoring", not_waiting)["status"] == "Healthy"


# ---- the lines every check repeats (argocd-cm takes each file whole, so they cannot be shared)


def _shared_head(kind: str) -> str:
    """From ``local hs`` through the Stalled verdict: the part that must read the same in every file."""
    lines = script(kind).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("local hs = "))
    stalled = next(i for i, line in enumerate(lines) if line.startswith("if stalled ~= nil"))
    return "\n".join(line for line in lines[start:stalled + 4] if not line.startswith("local stalled"))


def test_the_condition_reading_lines_are_the_same_in_every_check():
    first, *rest = KINDS
    for kind in rest:
        assert _shared_head(kind) == _shared_head(first), f"{kind.lower()}.lua drifted from {first.lower()}.lua"
