"""Path 5 of issue 9: the operator is SIGKILLed while a drill's restore Job runs in its sandbox; the
Job ends while no operator runs; a new operator process picks the drill up from its persisted
status and completes it exactly once: one run in the history, one DrillSucceeded Event, one restore
Job, and the sandbox deleted when its TTL has passed on the shared clock."""
from __future__ import annotations

import asyncio

import kmock
import pytest

from lifeline.api import KINDS
from tests.backup.conftest import events
from tests.drill.test_drill_e2e import backed_up, drill, last_run
from tests.integration.operator_harness import START

from .conftest import NS
from .operator_process import OperatorProcess, SharedClock

pytestmark = pytest.mark.usefixtures("drill_timer")

KIND_PLURALS = {k.plural for k in KINDS}


@pytest.fixture
def clock(tmp_path) -> SharedClock:  # overrides tests/backup's: the operator process reads it too
    return SharedClock(START, tmp_path / "clock")


def jobs_in(emulator, sandbox: str) -> list[dict]:
    return [o for _, o in emulator._objects_of(kmock.resource("batch/v1/jobs"))
            if o["metadata"]["namespace"] == sandbox]


async def test_operator_killed_mid_drill_completes_it_exactly_once(
        emulator, kubeconfig, api, cluster, runner, clock, volumes, tmp_path):
    first = await OperatorProcess(kubeconfig, clock, tmp_path / "operator-1.log").ready(emulator, KIND_PLURALS)
    try:
        await backed_up(emulator, runner, api)
        await api.create(drill())
        run = await emulator.wait_for(lambda: (r := last_run(emulator)).get("sandbox") and r, timeout=30)
        sandbox = run["sandbox"]
        await emulator.wait_for(lambda: jobs_in(emulator, sandbox), timeout=30)
        restore = asyncio.create_task(runner.run_pending(sandbox))
        await emulator.wait_for(lambda: any((o.get("status") or {}).get("active") == 1
                                            for o in jobs_in(emulator, sandbox)), timeout=30)
        first.kill()  # the restore Job runs; the operator is gone
    finally:
        await first.stop()
    assert last_run(emulator)["phase"] == "Restoring"
    [result] = await asyncio.wait_for(restore, 60)
    assert result.phase == "Succeeded", result.containers["agent"].log.read_text()[-2000:]
    assert last_run(emulator)["phase"] == "Restoring", "nobody has looked at the Job's end yet"

    second = await OperatorProcess(kubeconfig, clock, tmp_path / "operator-2.log").ready(emulator, KIND_PLURALS)
    try:
        await emulator.wait_for(lambda: last_run(emulator).get("phase") != "Restoring", timeout=30)
        if last_run(emulator).get("phase") == "Verifying":
            await runner.run_pending(sandbox)
        done = await emulator.wait_for(
            lambda: (r := last_run(emulator)).get("outcome") not in (None, "Running") and r, timeout=30)
        assert done["outcome"] == "Succeeded", done
        assert done["name"] == run["name"] and done["sandbox"] == sandbox, "the same run, resumed"
        await emulator.wait_for(lambda: events(emulator, "pacs-drill", "DrillSucceeded"), timeout=20)
        clock.advance(3601)  # the sandbox's TTL (1h by default)
        await emulator.wait_for(lambda: emulator.stored("v1/namespaces", None, sandbox) is None, timeout=30)
        await emulator.wait_for(lambda: last_run(emulator).get("sandboxDeleted") is True, timeout=30)
        second.kill()  # done: its graceful shutdown is not what this test is about
    finally:
        await second.stop()
    status = emulator.stored("dr.lifeline.io/v1alpha1/restoredrills", NS, "pacs-drill")["status"]
    assert [r["name"] for r in status["history"]] == [run["name"]], "one run in the history"
    assert len(events(emulator, "pacs-drill", "DrillSucceeded")) == 1, "one Event"
    created = emulator.count_writes("jobs", namespace=sandbox, method="POST", subresource=None, changed_only=True)
    assert created == 2, "one restore Job and one verify Job, none twice"
