"""kstatus (Flux) and Argo CD's Lua over the statuses the real FailoverPlan controller writes:
two real clusters and real Prometheus servers (tests/failover's world)."""
from __future__ import annotations

import asyncio

from tests.failover.conftest import operator, phase, site_a, world  # noqa: F401  (fixtures)
from tests.failover.sites import seed_unvalidated

from .argo import health
from .kstatus import CURRENT, FAILED, IN_PROGRESS, compute, problems


async def test_failoverplan_current_failed_and_in_progress(world):  # noqa: F811
    # A spec Lifeline refuses reaches the operator only past its webhook (stored before the rule existed).
    invalid = world.plan("invalid")
    invalid["spec"]["primary"]["healthChecks"][0]["timeout"] = "20s"
    await asyncio.to_thread(seed_unvalidated, world.kube, invalid)
    async with operator(world):
        await world.create(world.plan())

        monitoring = await phase(world, "Monitoring")
        obj = world.stored_plan()
        assert monitoring["observedGeneration"] == obj["metadata"]["generation"]
        assert compute(obj)[0] == CURRENT and problems(obj) == []
        assert health("FailoverPlan", obj) == {"status": "Healthy", "message": "Monitoring: serving from site-a"}

        broken = await world.kube.wait_for(
            lambda: (o := world.stored_plan("invalid")) and compute(o)[0] == FAILED and o)
        assert "spec.primary.healthChecks[0]" in compute(broken)[1] and problems(broken) == []
        assert health("FailoverPlan", broken)["status"] == "Degraded"

        changed = await world.patch_spec("icu", {"breachWindow": "90s"})
        assert compute(changed)[0] == IN_PROGRESS
        assert health("FailoverPlan", changed)["status"] == "Progressing"
        settled = await world.kube.wait_for(
            lambda: (o := world.stored_plan()) and o["status"].get("observedGeneration") == 2 and o)
        assert compute(settled)[0] == CURRENT and problems(settled) == []
