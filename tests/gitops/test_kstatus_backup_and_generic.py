"""kstatus (Flux) over statuses the real controllers write on the real API server: BackupPolicy through
its own controller, RestoreDrill and Restore through whichever controller owns them (the generic
readiness handler until a dedicated one lands). A valid object ends Current, an invalid spec
ends Failed (Stalled), a just-changed spec is InProgress; Argo CD's Lua agrees on each."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from lifeline.api import BY_KIND
from tests.backup.conftest import clock, fast_timers, key_text, policy, seeded, volumes  # noqa: F401
from tests.failover.sites import seed_unvalidated

from .argo import health
from .kstatus import CURRENT, FAILED, IN_PROGRESS, compute, problems

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def stored(kube, kind: str, name: str) -> dict | None:
    return kube.stored(BY_KIND[kind], None, name)


async def settles_as(kube, kind: str, name: str, wanted: str, timeout: float = 20) -> dict:
    """Wait until kstatus says ``wanted`` about the object at its latest generation; return the object."""
    def check():
        obj = stored(kube, kind, name)
        status = (obj or {}).get("status") or {}
        if not obj or status.get("observedGeneration") != obj["metadata"]["generation"]:
            return None
        return obj if compute(obj)[0] == wanted else None
    try:
        return await kube.wait_for(check, timeout=timeout)
    except TimeoutError:
        obj = stored(kube, kind, name) or {}
        raise AssertionError(f"{kind} {name} is not {wanted} by kstatus: {compute(obj) if obj else 'absent'}; "
                             f"generation {obj.get('metadata', {}).get('generation')}, status {obj.get('status')}") from None


async def test_backuppolicy_current_failed_and_in_progress(kube, seeded):
    bad_cron = policy("bad-cron", full="at one every night")  # only Lifeline reads a cron expression
    # what the webhook refuses today but a cluster may hold from before (an older operator, a webhook
    # that was down with failurePolicy Ignore): the operator must still say Failed about it
    seed_unvalidated(kube, bad_cron)
    async with kube.operator():
        kube.create(policy())
        good = await settles_as(kube, "BackupPolicy", "pacs", CURRENT)
        assert problems(good) == []
        assert health("BackupPolicy", good)["status"] == "Healthy"

        obj = await settles_as(kube, "BackupPolicy", "bad-cron", FAILED)
        assert problems(obj) == [], obj["status"]["conditions"]
        status, message = compute(obj)
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert message == ready["message"], "Flux shows the same words as kubectl describe"
        assert health("BackupPolicy", obj)["status"] == "Degraded"

        # a spec change: what the API answers (the object at that instant) is InProgress
        changed = kube.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"full": "30 2 * * *"}}})
        assert changed["metadata"]["generation"] == 2
        assert compute(changed)[0] == IN_PROGRESS
        assert health("BackupPolicy", changed)["status"] == "Progressing"
        again = await settles_as(kube, "BackupPolicy", "pacs", CURRENT)
        assert again["status"]["observedGeneration"] == 2 and problems(again) == []

        # fixing the broken one turns Stalled off, and kstatus follows
        kube.patch("BackupPolicy", "bad-cron", {"spec": {"schedule": {"full": "0 1 * * *"}}})
        fixed = await settles_as(kube, "BackupPolicy", "bad-cron", CURRENT)
        assert next(c for c in fixed["status"]["conditions"] if c["type"] == "Stalled")["status"] == "False"
        assert problems(fixed) == []


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


async def test_drills_and_restores_current_failed_and_in_progress(kube, seeded):
    """RestoreDrill and Restore, through whichever controller owns them (Ready via conditions.merge)."""
    drill, restore = example("restoredrill-his-monthly.yaml"), example("restore-his.yaml")
    drill["spec"]["policyName"] = "pacs"
    orphan = copy.deepcopy(drill)
    orphan["metadata"]["name"] = "orphan-drill"
    orphan["spec"]["policyName"] = "no-such-policy"
    name = drill["metadata"]["name"]
    async with kube.operator():
        kube.create(policy())
        await settles_as(kube, "BackupPolicy", "pacs", CURRENT)
        for body in (drill, orphan, restore):
            kube.create(body)
        obj = await settles_as(kube, "RestoreDrill", name, CURRENT)
        assert problems(obj) == [] and health("RestoreDrill", obj)["status"] == "Healthy"
        # (a spec the schema refuses, such as an unknown point.strategy, never reaches a real cluster)
        failed = await settles_as(kube, "RestoreDrill", "orphan-drill", FAILED)
        assert "no-such-policy" in compute(failed)[1] and problems(failed) == []
        assert health("RestoreDrill", failed)["status"] == "Degraded"

        changed = kube.patch("RestoreDrill", name, {"spec": {"historyLimit": 6}})
        assert compute(changed)[0] == IN_PROGRESS
        assert health("RestoreDrill", changed)["status"] == "Progressing"
        await settles_as(kube, "RestoreDrill", name, CURRENT)

        # a Restore of a point that does not exist: whatever its controller decides, the status
        # keeps kstatus's conventions (Ready explained by Stalled or Reconciling when not True)
        rname = restore["metadata"]["name"]
        obj = await kube.wait_for(
            lambda: (o := stored(kube, "Restore", rname)) and (o.get("status") or {}).get("observedGeneration")
            == o["metadata"]["generation"] and o, timeout=20)
        assert problems(obj) == [], obj["status"]
