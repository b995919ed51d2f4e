"""The agent is killed (SIGKILL) in the middle of a backup Job: the Job fails, no RecoveryPoint is
published and the repository holds no manifest for it (manifests are written last); the next run
of the same policy succeeds, from the same repositories.

The agent is the real container process the process kubelet started for the Job's Pod, found by
the ``containerID`` the Pod's status reports; the Job is run by the real Job controller.
"""
from __future__ import annotations

import asyncio
import signal

from .conftest import cond, gated_dump, points, policy, recorded, settled, start_job, stored
from .processes import container_pid, kill_container


def dump_policy(command: list[str]) -> dict:
    # backoffLimit 0: the killed Pod fails the Job at once (the default 1 would start a second Pod,
    # which would dump again and wait at the gate: a retry is not what this test is about)
    return policy("lab", source={"command": {"image": "postgres:16", "command": command}},
                  pod={"backoffLimit": 0})


async def test_agent_killed_mid_job_publishes_nothing_and_the_next_run_is_fine(seeded, kube, clock, volumes, control):
    # 3 MB streamed into the agent, then the dump waits at the gate: the agent is mid-stream
    dump, started, gate = gated_dump(control, 3000000)
    repos = (volumes["backup-local"], volumes["backup-offsite"])

    def repository_points() -> list[str]:
        return sorted(str(p) for r in repos for p in r.rglob("*") if p.is_file() and "/points/" in str(p))

    def agent_pid(job: str) -> int | None:
        return next((pid for pod in kube.objects("pods", selector=f"job-name={job}")
                     if (pid := container_pid(pod, "agent"))), None)

    async with kube.operator(clock=clock):
        kube.create(dump_policy(dump))
        await settled(kube, "lab")

        job = await start_job(kube, "lab-full")
        await kube.wait_for(started.exists, timeout=60)
        pid = await kube.wait_for(lambda: agent_pid(job), timeout=10)
        kill_container(pid)  # the agent container and the processes it started
        # open the gate: the dump writes into a pipe nobody reads any more, and ends
        await asyncio.to_thread(gate.write_bytes, b"tail of the dump\n")
        killed = await kube.finished(job, timeout=60)
        assert killed.phase == "Failed"
        [pod] = kube.objects("pods", selector=f"job-name={job}")
        [agent] = [c for c in pod["status"]["containerStatuses"] if c["name"] == "agent"]
        assert agent["state"]["terminated"]["exitCode"] == 128 + signal.SIGKILL, agent  # as a runtime reports it
        obj = await recorded(kube, job, "lab")
        assert obj["status"]["lastBackup"]["outcome"] == "Failed"
        assert points(kube, "lab") == [] and obj["status"].get("recoveryPoints", 0) == 0
        assert repository_points() == [], "no manifest for a backup that never finished"

        # the next run, with nobody killing it, goes through the same repositories
        clock.advance(3600)
        started.unlink()
        gate_opened = asyncio.create_task(asyncio.to_thread(gate.write_bytes, b"tail of the dump\n"))
        ok = await kube.run_cronjob("lab-full")
        await gate_opened
        assert ok.phase == "Succeeded", kube.job_log(ok.job)
        obj = await recorded(kube, ok.job, "lab")
        [point] = await kube.wait_for(lambda: points(kube, "lab"), timeout=20)
        assert point["spec"]["sizeBytes"] == 3000000 + len(b"tail of the dump\n")
        assert obj["status"]["recoveryPoints"] == 1
        assert cond(stored(kube, "lab"), "DestinationsReachable")["status"] == "True"
        assert len(repository_points()) == 2, "one manifest in each repository"
