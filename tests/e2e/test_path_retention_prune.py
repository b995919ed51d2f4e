"""Path 4 of issue 9: retention. Three full backups of a policy that keeps the last two; the prune
CronJob, run by the real Job controller, forgets the oldest point in both repositories, and its
RecoveryPoint turns phase Pruned (with an Event) while the two kept ones stay Available."""
from __future__ import annotations

from .conftest import POINT, points, policy, recorded, settled, stored, wait_event

KEEP_NOTHING_ELSE = {"keepDaily": 0, "keepWeekly": 0, "keepMonthly": 0, "keepYearly": 0}


def manifests(repo) -> list[str]:
    return sorted(p.name for p in (repo / "points").iterdir()) if (repo / "points").is_dir() else []


def phase_of(kube, name: str) -> str | None:
    return ((kube.stored(POINT, None, name) or {}).get("status") or {}).get("phase")


async def test_prune_forgets_points_beyond_keep_last_and_marks_them_pruned(seeded, kube, clock, volumes):
    repos = [volumes["backup-local"] / "repos" / "pacs", volumes["backup-offsite"] / "pacs"]
    async with kube.operator(clock=clock):
        kube.create(policy(retention={"keepLast": 2, **KEEP_NOTHING_ELSE}))
        await settled(kube)
        # three backups a few real seconds apart (the agent stamps points with real time: which one
        # is the oldest is what keepLast reads, not how far apart they are)
        for n in range(3):
            (volumes["pacs-data"] / f"admission-{n}.txt").write_text(f"day {n}")
            result = await kube.run_cronjob("pacs-full")
            assert result.phase == "Succeeded", kube.job_log(result.job)
            await recorded(kube, result.job)
        made = await kube.wait_for(lambda: len(points(kube)) == 3 and points(kube), timeout=20)
        names = [p["metadata"]["name"] for p in made]  # oldest first
        assert all(len(manifests(r)) == 3 for r in repos)

        prune = await kube.run_cronjob("pacs-prune")
        assert prune.phase == "Succeeded", kube.job_log(prune.job)
        await kube.wait_for(lambda: phase_of(kube, names[0]) == "Pruned", timeout=20)
        await wait_event(kube, names[0], "Pruned")
        assert [phase_of(kube, n) for n in names[1:]] == ["Available", "Available"]
        assert all(len(manifests(r)) == 2 for r in repos), [manifests(r) for r in repos]
        for repo, destination in zip(repos, ("local", "offsite")):  # the manifests left are the kept points'
            assert manifests(repo) == sorted(c["snapshotId"] for p in made[1:] for c in p["spec"]["copies"]
                                             if c["destination"] == destination)
        # the policy counts only points that can still be restored
        await kube.wait_for(lambda: stored(kube)["status"].get("recoveryPoints") == 2, timeout=20)
