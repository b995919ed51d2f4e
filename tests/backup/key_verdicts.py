"""What the operator says about a policy's Vault key: the KeysAvailable condition of a usable key
and of one Vault does not have, for the transit (tests/backup) and KV (tests/keys) operator tests."""
from __future__ import annotations

from lifeline.planning import conditions

POLICY = "backuppolicies"


def keys_condition(kube, name: str) -> dict:
    obj = kube.stored(POLICY, None, name)
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), "KeysAvailable") or {}


async def verdicts(kube, good: dict, missing: dict) -> tuple[dict, dict]:
    """Create both policies (under a running operator); KeysAvailable of ``missing`` once False and of
    ``good`` once True."""
    kube.create(good)
    kube.create(missing)
    refused = await kube.wait_for(lambda: (c := keys_condition(kube, missing["metadata"]["name"])) and
                                  c["status"] == "False" and c, timeout=30)
    usable = await kube.wait_for(lambda: (c := keys_condition(kube, good["metadata"]["name"])) and
                                 c["status"] == "True" and c, timeout=30)
    return refused, usable
