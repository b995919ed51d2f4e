"""Two replicas with kopf peering: only the one with the higher priority acts."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from lifeline.api import BY_KIND

from .operator_harness import metric, running_operator, until

ROOT = Path(__file__).resolve().parents[2]
NS = "hospital"


def policy(name: str) -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "backuppolicy-pacs-images.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"] = {"name": name, "namespace": NS}
    return doc


def written(ctx) -> float:
    return metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="written")


async def test_only_the_highest_priority_replica_writes_and_the_other_takes_over(emulator, kubeconfig):
    emulator.seed("v1/namespaces", {"metadata": {"name": NS}})
    emulator.seed("kopf.dev/v1/clusterkopfpeerings", {"metadata": {"name": "lifeline"}})
    info = BY_KIND["BackupPolicy"]

    def observed(name: str):
        obj = emulator.stored(info.resource, NS, name)
        return obj if obj and (obj.get("status") or {}).get("observedGeneration") else None

    async with running_operator(kubeconfig, emulator, peering="lifeline", priority=100) as leader:
        async with running_operator(kubeconfig, emulator, peering="lifeline", priority=10) as standby:
            # both have announced themselves in the peering object
            await emulator.wait_for(lambda: len((emulator.stored("kopf.dev/v1/clusterkopfpeerings", None, "lifeline")
                                                 or {}).get("status") or {}) >= 2, timeout=30)
            emulator.seed(info.resource, policy("pacs-one"))
            await emulator.wait_for(lambda: observed("pacs-one"), timeout=30)
            await until(lambda: written(leader) == 1)
            assert written(standby) == 0, "the lower-priority replica must stay passive"
    # both stopped; a replica that was passive before now acts alone
    async with running_operator(kubeconfig, emulator, peering="lifeline", priority=10) as successor:
        emulator.seed(info.resource, policy("pacs-two"))
        await emulator.wait_for(lambda: observed("pacs-two"), timeout=60)
        await until(lambda: written(successor) == 1)
