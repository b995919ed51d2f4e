"""`lifeline drill run` and `lifeline drill report` against the emulator and the real operator: the
command asks for a run, follows it to its end and exits by its outcome; the report prints what the
operator recorded."""
from __future__ import annotations

import asyncio
import json

from lifeline import cli
from lifeline.commands.drill import ANN_RUN_NOW
from tests.integration.operator_harness import running_operator

from .conftest import NS
from .test_drill_e2e import DRILLS, backed_up, drill, last_run


def lifeline(capsys, *argv: str):
    """Run the real CLI in a thread (it blocks on the API the test's loop serves); (code, out, err)."""
    async def go():
        code = await asyncio.to_thread(cli.main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return asyncio.create_task(go())


async def run_jobs_of_next_run(emulator, runner, name="pacs-drill", before=None):
    """Play kubelet for the run the CLI asked for: its restore Job, then its verify Job."""
    run = await emulator.wait_for(lambda: (r := last_run(emulator, name)).get("sandbox") and
                                  r.get("name") != before and r, timeout=20)
    await runner.run_pending(run["sandbox"])
    await emulator.wait_for(lambda: last_run(emulator, name).get("phase") != "Restoring", timeout=20)
    if last_run(emulator, name).get("phase") == "Verifying":
        await runner.run_pending(run["sandbox"])
    return run


async def test_drill_run_follows_the_run_and_report_prints_its_history(
        emulator, kubeconfig, api, cluster, runner, clock, capsys):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await backed_up(emulator, runner, api)
        await api.create(drill(mode="Scheduled"))  # quarterly: nothing runs until asked
        await emulator.wait_for(lambda: (emulator.stored(DRILLS, NS, "pacs-drill").get("status") or {})
                                .get("nextRunTime"), timeout=20)
        assert last_run(emulator) == {}

        task = lifeline(capsys, "drill", "run", "pacs-drill", "-n", NS, "--kubeconfig", str(kubeconfig),
                        "--poll", "0.05")
        run = await run_jobs_of_next_run(emulator, runner)
        code, out, err = await asyncio.wait_for(task, 60)
        assert code == 0, out + err
        stored = emulator.stored(DRILLS, NS, "pacs-drill")
        value = stored["metadata"]["annotations"][ANN_RUN_NOW]
        assert f"{ANN_RUN_NOW}={value}" in out
        assert stored["status"]["lastRun"]["trigger"] == f"run-now:{value}"
        assert f"run {run['name']}: Restoring" in out and "elapsed" in out
        final = stored["status"]["history"][0]
        line = next(ln for ln in out.splitlines() if ln.startswith(f"run {run['name']}: Succeeded"))
        assert "(Verified)" in line and "RTO met" in line
        assert f"total {final['totalSeconds']:.2f}s against an RTO of 30m" in line
        assert f"{final['bytesRestored']} bytes restored" in line

        code, out, err = await lifeline(capsys, "drill", "report", "pacs-drill", "-n", NS,
                                        "--kubeconfig", str(kubeconfig))
        assert code == 0, err
        header, row = out.splitlines()[1:3]
        assert header.split()[:3] == ["START", "POINT", "RESTORE"]
        assert row.split()[:3] == [final["startTime"], final["recoveryPoint"], f"{final['restoreSeconds']:.2f}s"]
        assert f"{final['totalSeconds']:.2f}s/30m" in row and " yes " in row and "Succeeded/Verified" in row

        code, out, err = await lifeline(capsys, "drill", "report", "pacs-drill", "-n", NS, "-o", "json",
                                        "--kubeconfig", str(kubeconfig))
        assert code == 0, err
        report = json.loads(out)
        assert report["policy"] == "pacs" and report["history"] == stored["status"]["history"]


async def test_a_failed_run_exits_1_with_the_reason(emulator, kubeconfig, api, cluster, runner, clock, capsys):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await backed_up(emulator, runner, api)
        body = drill(mode="Scheduled")
        body["spec"]["verify"]["command"]["expectOutput"] = '{"studies": 2}'
        await api.create(body)
        await emulator.wait_for(lambda: (emulator.stored(DRILLS, NS, "pacs-drill").get("status") or {})
                                .get("nextRunTime"), timeout=20)
        task = lifeline(capsys, "drill", "run", "pacs-drill", "-n", NS, "--kubeconfig", str(kubeconfig),
                        "--poll", "0.05")
        await run_jobs_of_next_run(emulator, runner)
        code, out, err = await asyncio.wait_for(task, 60)
        assert code == 1, out + err
        assert "Failed (UnexpectedOutput)" in out
        assert "the drill failed: UnexpectedOutput: the verify command printed" in err

        code, out, err = await lifeline(capsys, "drill", "report", "pacs-drill", "-n", NS,
                                        "--kubeconfig", str(kubeconfig))
        assert code == 0 and "Failed/UnexpectedOutput" in out and " yes " in out


async def test_no_wait_a_drill_that_cannot_run_and_a_missing_drill(emulator, kubeconfig, api, cluster, clock, capsys):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(drill(mode="Scheduled", policyName="nowhere"))
        await emulator.wait_for(lambda: (emulator.stored(DRILLS, NS, "pacs-drill").get("status") or {})
                                .get("conditions"), timeout=20)
        code, out, err = await lifeline(capsys, "drill", "run", "pacs-drill", "-n", NS, "--no-wait",
                                        "--kubeconfig", str(kubeconfig))
        assert code == 0 and "asked for a run" in out
        assert ANN_RUN_NOW in emulator.stored(DRILLS, NS, "pacs-drill")["metadata"]["annotations"]

        code, out, err = await lifeline(capsys, "drill", "run", "pacs-drill", "-n", NS, "--poll", "0.05",
                                        "--kubeconfig", str(kubeconfig))
        assert code == 1
        assert "the drill cannot run: PolicyNotFound: BackupPolicy hospital/nowhere does not exist" in err

        code, out, err = await lifeline(capsys, "drill", "run", "no-such-drill", "-n", NS, "--no-wait",
                                        "--kubeconfig", str(kubeconfig))
        assert code == 2 and "404" in err
        code, out, err = await lifeline(capsys, "drill", "report", "no-such-drill", "-n", NS,
                                        "--kubeconfig", str(kubeconfig))
        assert code == 2
