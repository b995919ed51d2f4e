"""Path 4 of issue 9: retention. Three full backups of a policy that keeps the last two; the prune
CronJob, run by the job runner, forgets the oldest point in both repositories, and its
RecoveryPoint turns phase Pruned (with an Event) while the two kept ones stay Available."""
from __future__ import annotations

from tests.backup.conftest import wait_event
from tests.integration.operator_harness import running_operator

from .conftest import NS, POINT, points, policy, recorded, settled, stored

KEEP_NOTHING_ELSE = {"keepDaily": 0, "keepWeekly": 0, "keepMonthly": 0, "keepYearly": 0}


def manifests(repo) -> list[str]:
    return sorted(p.name for p in (repo / "points").iterdir()) if (repo / "points").is_dir() else []


def phase_of(emulator, name: str) -> str | None:
    return ((emulator.stored(POINT, NS, name) or {}).get("status") or {}).get("phase")


async def test_prune_forgets_points_beyond_keep_last_and_marks_them_pruned(
        emulator, kubeconfig, api, cluster, runner, clock, volumes):
    repos = [volumes["backup-local"] / "repos" / "pacs", volumes["backup-offsite"] / "pacs"]
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(policy(retention={"keepLast": 2, **KEEP_NOTHING_ELSE}))
        await settled(emulator)
        for n in range(3):
            (volumes["pacs-data"] / f"admission-{n}.txt").write_text(f"day {n}")
            result = await runner.trigger(NS, "pacs-full")
            assert result.phase == "Succeeded", result.containers["agent"].log.read_text()[-2000:]
            await recorded(emulator, result.job)
            clock.advance(86400)
        made = await emulator.wait_for(lambda: len(points(emulator)) == 3 and points(emulator), timeout=20)
        names = [p["metadata"]["name"] for p in made]  # oldest first
        assert all(len(manifests(r)) == 3 for r in repos)

        prune = await runner.trigger(NS, "pacs-prune")
        assert prune.phase == "Succeeded", prune.containers["agent"].log.read_text()[-2000:]
        await emulator.wait_for(lambda: phase_of(emulator, names[0]) == "Pruned", timeout=20)
        await wait_event(emulator, names[0], "Pruned")
        assert [phase_of(emulator, n) for n in names[1:]] == ["Available", "Available"]
        assert all(len(manifests(r)) == 2 for r in repos), [manifests(r) for r in repos]
        for repo, destination in zip(repos, ("local", "offsite")):  # the manifests left are the kept points'
            assert manifests(repo) == sorted(c["snapshotId"] for p in made[1:] for c in p["spec"]["copies"]
                                             if c["destination"] == destination)
        # the policy counts only points that can still be restored
        await emulator.wait_for(lambda: stored(emulator)["status"].get("recoveryPoints") == 2, timeout=20)
