"""`lifeline drill run` and `lifeline drill report` against the real API server and the real operator:
the command asks for a run, follows it to its end and exits by its outcome; the report prints what the
operator recorded."""
from __future__ import annotations

import asyncio
import json

from lifeline import cli
from lifeline.commands.drill import ANN_RUN_NOW

from .conftest import DRILLS, backed_up, drill, drill_status, last_run


def lifeline(capsys, *argv: str):
    """Run the real CLI in a thread (it blocks on the API); a task giving (code, out, err)."""
    async def go():
        code = await asyncio.to_thread(cli.main, list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return asyncio.create_task(go())


async def scheduled(kube, body: dict) -> None:
    """Create a drill and wait until the operator has planned it (its next run time, or its conditions)."""
    kube.create(body)
    await kube.wait_for(lambda: drill_status(kube, body["metadata"]["name"]).get("conditions"), timeout=20)


async def test_drill_run_follows_the_run_and_report_prints_its_history(seeded, kube, clock, capsys):
    config = str(kube.cluster.kubeconfig)
    async with kube.operator(clock=clock):
        await backed_up(kube)
        await scheduled(kube, drill(mode="Scheduled"))  # quarterly: nothing runs until asked
        assert drill_status(kube)["nextRunTime"]
        assert last_run(kube) == {}

        code, out, err = await asyncio.wait_for(
            lifeline(capsys, "drill", "run", "pacs-drill", "-n", kube.namespace, "--kubeconfig", config,
                     "--poll", "0.05"), 120)
        assert code == 0, out + err
        stored = kube.stored(DRILLS, None, "pacs-drill")
        run = stored["status"]["lastRun"]
        value = stored["metadata"]["annotations"][ANN_RUN_NOW]
        assert f"{ANN_RUN_NOW}={value}" in out
        assert run["trigger"] == f"run-now:{value}"
        assert f"run {run['name']}: Restoring" in out and "elapsed" in out
        final = stored["status"]["history"][0]
        line = next(ln for ln in out.splitlines() if ln.startswith(f"run {run['name']}: Succeeded"))
        assert "(Verified)" in line and "RTO met" in line
        assert f"total {final['totalSeconds']:.2f}s against an RTO of 30m" in line
        assert f"{final['bytesRestored']} bytes restored" in line

        code, out, err = await lifeline(capsys, "drill", "report", "pacs-drill", "-n", kube.namespace,
                                        "--kubeconfig", config)
        assert code == 0, err
        header, row = out.splitlines()[1:3]
        assert header.split()[:3] == ["START", "POINT", "RESTORE"]
        assert row.split()[:3] == [final["startTime"], final["recoveryPoint"], f"{final['restoreSeconds']:.2f}s"]
        assert f"{final['totalSeconds']:.2f}s/30m" in row and " yes " in row and "Succeeded/Verified" in row

        code, out, err = await lifeline(capsys, "drill", "report", "pacs-drill", "-n", kube.namespace, "-o", "json",
                                        "--kubeconfig", config)
        assert code == 0, err
        report = json.loads(out)
        assert report["policy"] == "pacs" and report["history"] == stored["status"]["history"]


async def test_a_failed_run_exits_1_with_the_reason(seeded, kube, clock, capsys):
    config = str(kube.cluster.kubeconfig)
    async with kube.operator(clock=clock):
        await backed_up(kube)
        body = drill(mode="Scheduled")
        body["spec"]["verify"]["command"]["expectOutput"] = '{"studies": 2}'
        await scheduled(kube, body)
        code, out, err = await asyncio.wait_for(
            lifeline(capsys, "drill", "run", "pacs-drill", "-n", kube.namespace, "--kubeconfig", config,
                     "--poll", "0.05"), 120)
        assert code == 1, out + err
        assert "Failed (UnexpectedOutput)" in out
        assert "the drill failed: UnexpectedOutput: the verify command printed" in err

        code, out, err = await lifeline(capsys, "drill", "report", "pacs-drill", "-n", kube.namespace,
                                        "--kubeconfig", config)
        assert code == 0 and "Failed/UnexpectedOutput" in out and " yes " in out


async def test_no_wait_a_drill_that_cannot_run_and_a_missing_drill(kube, clock, capsys):
    config = str(kube.cluster.kubeconfig)
    async with kube.operator(clock=clock):
        await scheduled(kube, drill(mode="Scheduled", policyName="nowhere"))
        code, out, err = await lifeline(capsys, "drill", "run", "pacs-drill", "-n", kube.namespace, "--no-wait",
                                        "--kubeconfig", config)
        assert code == 0 and "asked for a run" in out
        assert ANN_RUN_NOW in kube.stored(DRILLS, None, "pacs-drill")["metadata"]["annotations"]

        code, out, err = await asyncio.wait_for(
            lifeline(capsys, "drill", "run", "pacs-drill", "-n", kube.namespace, "--poll", "0.05",
                     "--kubeconfig", config), 60)
        assert code == 1
        assert (f"the drill cannot run: PolicyNotFound: BackupPolicy {kube.namespace}/nowhere does not exist"
                in err), err

        code, out, err = await lifeline(capsys, "drill", "run", "no-such-drill", "-n", kube.namespace, "--no-wait",
                                        "--kubeconfig", config)
        assert code == 2 and "404" in err, err
        code, out, err = await lifeline(capsys, "drill", "report", "no-such-drill", "-n", kube.namespace,
                                        "--kubeconfig", config)
        assert code == 2
