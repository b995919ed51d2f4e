"""Two replicas with kopf peering: only the one with the higher priority acts."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from lifeline.api import BY_KIND

from .operator_harness import metric, until

ROOT = Path(__file__).resolve().parents[2]


def policy(name: str) -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "backuppolicy-pacs-images.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": name}
    return doc


def written(ctx) -> float:
    return metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="written")


async def test_only_the_highest_priority_replica_writes_and_the_other_takes_over(kube):
    # what the chart creates with peering set, for an operator watching this namespace
    kube.seed("kopf.dev/v1/kopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                                           "metadata": {"name": "lifeline"}})
    info = BY_KIND["BackupPolicy"]

    def observed(name: str):
        obj = kube.stored(info, None, name)
        return obj if obj and (obj.get("status") or {}).get("observedGeneration") else None

    def announced() -> int:
        return len((kube.stored("kopf.dev/v1/kopfpeerings", None, "lifeline") or {}).get("status") or {})

    async with kube.operator(peering="lifeline", priority=100) as leader:
        # one webhook server per port: the standby replica serves none (the leader answers for both)
        async with kube.operator(peering="lifeline", priority=10, webhook_port=0, standby=True) as standby:
            await kube.wait_for(lambda: announced() >= 2, timeout=30)  # both have announced themselves
            kube.create(policy("pacs-one"))
            await kube.wait_for(lambda: observed("pacs-one"), timeout=30)
            await until(lambda: written(leader) == 1)
            assert written(standby) == 0, "the lower-priority replica must stay passive"
    # both stopped; a replica that was passive before now acts alone
    async with kube.operator(peering="lifeline", priority=10) as successor:
        kube.create(policy("pacs-two"))
        await kube.wait_for(lambda: observed("pacs-two"), timeout=60)
        await until(lambda: written(successor) == 1)
