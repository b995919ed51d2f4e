"""kstatus (Flux) and Argo CD's Lua over the statuses the real FailoverPlan controller writes:
two emulated clusters and real health endpoints (tests/failover's world)."""
from __future__ import annotations

from tests.failover.conftest import NS, operator, phase, world  # noqa: F401

from .argo import health
from .kstatus import CURRENT, FAILED, IN_PROGRESS, compute, problems


async def test_failoverplan_current_failed_and_in_progress(world):  # noqa: F811
    async with operator(world):
        await world.create(world.plan())
        invalid = world.plan("invalid")
        invalid["spec"]["maxFailovers"]["count"] = 0
        await world.create(invalid)

        monitoring = await phase(world, "Monitoring")
        obj = world.stored_plan()
        assert monitoring["observedGeneration"] == obj["metadata"]["generation"]
        assert compute(obj)[0] == CURRENT and problems(obj) == []
        assert health("FailoverPlan", obj) == {"status": "Healthy", "message": "Monitoring: serving from site-a"}

        broken = await world.own.emulator.wait_for(
            lambda: (o := world.stored_plan("invalid")) and compute(o)[0] == FAILED and o)
        assert "spec.maxFailovers.count" in compute(broken)[1] and problems(broken) == []
        assert health("FailoverPlan", broken)["status"] == "Degraded"

        changed = await world.patch_spec("icu", {"breachWindow": "90s"})
        assert compute(changed)[0] == IN_PROGRESS
        assert health("FailoverPlan", changed)["status"] == "Progressing"
        settled = await world.own.emulator.wait_for(
            lambda: (o := world.stored_plan()) and o["status"].get("observedGeneration") == 2 and o)
        assert compute(settled)[0] == CURRENT and problems(settled) == []
