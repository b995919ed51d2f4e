"""Nothing of a container outlives it: the job runner kills each container's whole process group.

In Kubernetes a container's processes all die with it. Here a container is a local process, so a
child it started (an agent's worker, a shell's background job) must be killed with it: when the
main process exits, when the Job's deadline passes, when the run is cancelled and at cleanup().
Each container below leaves a child that records its pid and would run for minutes.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lifeline.devstack.job_runner import JobRunner

NS = "default"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def until_dead(pid: int, timeout: float = 10.0) -> bool:
    async with asyncio.timeout(timeout):
        while alive(pid):
            await asyncio.sleep(0.02)  # polls the kernel for the kill to land; no time is meant to pass
    return True


def job(name: str, script: str, deadline: int | None = None) -> dict:
    spec = {"template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "agent", "image": "busybox",
                                                  "command": ["sh", "-c", script]}]}}}
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def child_script(pidfile: Path, then: str) -> str:
    """Start a long-lived child in the background, record its pid, then ``then``."""
    return f"sleep 300 & echo $! > {pidfile}; {then}"


async def child_pid(pidfile: Path) -> int:
    async with asyncio.timeout(10):
        while not (pidfile.exists() and pidfile.read_text().strip()):
            await asyncio.sleep(0.02)
    return int(pidfile.read_text())


@pytest.fixture
async def runner(kube_url, tmp_path):
    async with JobRunner(kube_url, workdir=tmp_path / "pods") as r:
        yield r
        r.cleanup()


async def test_a_child_that_outlives_its_container_is_killed_with_it(emulator, runner, tmp_path):
    pidfile = tmp_path / "child.pid"
    emulator.seed("batch/v1/jobs", job("leaves-a-child", child_script(pidfile, "exit 0")))
    result = await runner.run(NS, "leaves-a-child")
    assert result.phase == "Succeeded"
    assert await until_dead(await child_pid(pidfile))


async def test_a_killed_main_process_takes_its_children_along(emulator, runner, tmp_path):
    pidfile = tmp_path / "child.pid"
    emulator.seed("batch/v1/jobs", job("main-killed", child_script(pidfile, "kill -9 $$")))
    result = await runner.run(NS, "main-killed")
    assert result.phase == "Failed"
    assert result.containers["agent"].exit_code == -9
    assert await until_dead(await child_pid(pidfile))


async def test_a_cancelled_run_kills_the_whole_container(emulator, runner, tmp_path):
    pidfile = tmp_path / "child.pid"
    emulator.seed("batch/v1/jobs", job("cancelled", child_script(pidfile, "wait")))
    task = asyncio.create_task(runner.run(NS, "cancelled"))
    child = await child_pid(pidfile)
    assert alive(child)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await until_dead(child)
    assert runner._groups == set()


async def test_past_its_deadline_the_container_and_its_children_are_killed(emulator, runner, tmp_path):
    pidfile = tmp_path / "child.pid"
    emulator.seed("batch/v1/jobs", job("too-slow", child_script(pidfile, "wait"), deadline=1))
    result = await runner.run(NS, "too-slow")
    assert result.phase == "Failed"
    assert result.containers["agent"].exit_code == 137
    assert result.containers["agent"].message.startswith("DeadlineExceeded")
    stored = emulator.stored("batch/v1/jobs", NS, "too-slow")
    [failed] = [c for c in stored["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "DeadlineExceeded"
    assert await until_dead(await child_pid(pidfile))


async def test_cleanup_kills_containers_still_running(emulator, runner, tmp_path):
    pidfile = tmp_path / "child.pid"
    emulator.seed("batch/v1/jobs", job("still-running", child_script(pidfile, "wait")))
    task = asyncio.create_task(runner.run(NS, "still-running"))
    child = await child_pid(pidfile)
    runner.cleanup()
    assert await until_dead(child)
    result = await asyncio.wait_for(task, 10)  # the main process died too, so the run ends
    assert result.phase == "Failed"
