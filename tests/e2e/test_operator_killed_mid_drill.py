"""Path 5 of issue 9: the operator is SIGKILLed while a drill's restore Job is active in its
sandbox; the Job ends while no operator runs; a new operator process picks the drill up from its
persisted status and completes it exactly once: one run in the history, one DrillSucceeded Event,
one restore Job and one verify Job created, and the sandbox deleted when its TTL has passed on the
shared clock.

The real Job controller would run the restore at once; the scheduler is held (stopped) until the
operator is dead, so the Job is active, not yet ended, when the kill comes. The sandbox counts as deleted once the operator has
deleted its namespace (the namespace controller then takes seconds to empty it)."""
from __future__ import annotations

import asyncio

import pytest

from lifeline.devstack import live

from .conftest import backed_up, created, drill, events, last_run
from .operator_process import SharedClock, operator_for

pytestmark = pytest.mark.usefixtures("drill_timer")


@pytest.fixture
def clock(tmp_path) -> SharedClock:  # overrides tests/backup's: the operator process reads it too
    return SharedClock.at_real_now(tmp_path / "clock")


@pytest.fixture
def scheduler_held(kube):
    """Stop the scheduler (pods stay Pending); the test starts it again, and so does the teardown."""
    kube.cluster.stop_component("scheduler")
    yield
    kube.cluster.start_component("scheduler")


def deleting(namespace: dict | None) -> bool:
    return namespace is None or bool(namespace["metadata"].get("deletionTimestamp"))


def restore_job(kube, sandbox: str) -> dict | None:
    return kube.stored("jobs", sandbox, "restore")


async def test_operator_killed_mid_drill_completes_it_exactly_once(seeded, kube, clock, tmp_path, request):
    first = await operator_for(kube, clock, tmp_path / "operator-1.log")
    try:
        await backed_up(kube)
        request.getfixturevalue("scheduler_held")
        kube.create(drill())
        run = await kube.wait_for(lambda: (r := last_run(kube)).get("sandbox") and r, timeout=30)
        sandbox = run["sandbox"]
        await kube.wait_for(lambda: ((restore_job(kube, sandbox) or {}).get("status") or {}).get("active") == 1,
                            timeout=30)
        first.kill()  # the restore Job is active; the operator is gone
    finally:
        await first.stop()
    assert last_run(kube)["phase"] == "Restoring"
    await asyncio.to_thread(kube.cluster.start_component, "scheduler")
    end = await kube.wait_for(lambda: live.job_end(restore_job(kube, sandbox)), timeout=90)
    assert end == "Succeeded", live.job_log(kube.cluster, sandbox, "restore")
    assert last_run(kube)["phase"] == "Restoring", "nobody has looked at the Job's end yet"

    second = await operator_for(kube, clock, tmp_path / "operator-2.log")
    try:
        done = await kube.wait_for(
            lambda: (r := last_run(kube)).get("outcome") not in (None, "Running") and r, timeout=90)
        assert done["outcome"] == "Succeeded", done
        assert done["name"] == run["name"] and done["sandbox"] == sandbox, "the same run, resumed"
        await kube.wait_for(lambda: events(kube, "pacs-drill", "DrillSucceeded"), timeout=20)
        clock.advance(3601)  # the sandbox's TTL (1h by default)
        # deleted by the operator: gone, or on its way out (the namespace controller empties it first)
        await kube.wait_for(lambda: deleting(kube.stored("namespaces", None, sandbox)), timeout=30)
        await kube.wait_for(lambda: last_run(kube).get("sandboxDeleted") is True, timeout=30)
        second.kill()  # done: its graceful shutdown is not what this test is about
    finally:
        await second.stop()
    status = kube.stored("restoredrills", None, "pacs-drill")["status"]
    assert [r["name"] for r in status["history"]] == [run["name"]], "one run in the history"
    assert len(events(kube, "pacs-drill", "DrillSucceeded")) == 1, "one Event"
    assert created(kube, "jobs", namespace=sandbox) == 2, "one restore Job and one verify Job, none twice"
    assert kube.count_writes("namespaces", name=sandbox, method="DELETE") >= 1
