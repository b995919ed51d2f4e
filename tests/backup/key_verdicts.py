"""What the operator says about a policy's Vault key, and a backup with it: the KeysAvailable
condition of a usable key and of one Vault does not have, for the transit (tests/backup) and KV
(tests/keys) operator tests."""
from __future__ import annotations

from lifeline.planning import conditions

from .conftest import points, policy

POLICY = "backuppolicies"


def keys_condition(kube, name: str) -> dict:
    obj = kube.stored(POLICY, None, name)
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), "KeysAvailable") or {}


async def verdicts(kube, usable_ref: str, missing_ref: str) -> tuple[dict, dict]:
    """Policies "good" (``usable_ref``) and "missing" (``missing_ref``), under a running operator:
    KeysAvailable of "missing" once False and of "good" once True."""
    kube.create(policy("good", encryption={"keyRef": usable_ref}))
    kube.create(policy("missing", encryption={"keyRef": missing_ref}))
    refused = await kube.wait_for(lambda: (c := keys_condition(kube, "missing")) and c["status"] == "False" and c,
                                  timeout=30)
    usable = await kube.wait_for(lambda: (c := keys_condition(kube, "good")) and c["status"] == "True" and c,
                                 timeout=30)
    return refused, usable


async def backed_up_with(kube, ref: str) -> None:
    """The "good" policy's full backup Job succeeds, and its one point names ``ref``."""
    result = await kube.run_cronjob("good-full")
    assert result.phase == "Succeeded", kube.job_log(result.job)
    [point] = await kube.wait_for(lambda: points(kube, "good"), timeout=20)
    assert point["spec"]["keyRef"] == ref
