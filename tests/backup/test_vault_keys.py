"""Keys in Vault (OpenBao): the operator asks the key provider whether a policy's transit key can be
used (a key Vault refuses is a specific reason), and a backup Job really wraps its data keys there."""
from __future__ import annotations

from lifeline.api import BY_KIND
from lifeline.keys import health
from lifeline.planning import conditions
from tests.integration.operator_harness import running_operator
from tests.keys.conftest import make_transit

from .conftest import NS, policy

POLICY = BY_KIND["BackupPolicy"].resource


def keys_condition(emulator, name):
    obj = emulator.stored(POLICY, NS, name)
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), "KeysAvailable") or {}


async def test_a_transit_key_vault_refuses_and_one_it_accepts(
        emulator, kubeconfig, api, cluster, runner, clock, openbao, monkeypatch):
    transit = make_transit(openbao)
    health.clear_cache()
    # the operator's own Vault settings (it runs in this process); Jobs get the address, not the token
    monkeypatch.setenv("VAULT_ADDR", transit.addr)
    monkeypatch.setenv("VAULT_TOKEN", transit.token)
    monkeypatch.setenv("LIFELINE_VAULT_RETRIES", "1")
    good = policy("good", encryption={"keyRef": transit.ref})
    missing = policy("missing", encryption={"keyRef": f"vault-transit://no-such-key?mount={transit.mount}"})
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(good)
        await api.create(missing)
        refused = await emulator.wait_for(lambda: (c := keys_condition(emulator, "missing")) and
                                          c["status"] == "False" and c, timeout=30)
        assert refused["reason"] == "KeyMissing", refused
        assert "no-such-key" in refused["message"]
        usable = await emulator.wait_for(lambda: (c := keys_condition(emulator, "good")) and
                                         c["status"] == "True" and c, timeout=30)
        assert usable["reason"] == "KeyUsable" and transit.key in usable["message"]

        # the Job has VAULT_ADDR from the operator; its token is its own (here: the runner's env)
        cron = emulator.stored("batch/v1/cronjobs", NS, "good-full")
        env = {e["name"]: e.get("value") for e in
               cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["VAULT_ADDR"] == transit.addr and "VAULT_TOKEN" not in env
        runner.env["VAULT_TOKEN"] = transit.token
        result = await runner.trigger(NS, "good-full")
        assert result.phase == "Succeeded", result.containers["agent"].log.read_text()
        point = await emulator.wait_for(
            lambda: next((o for (r, _, _), o in emulator._objects_of() if r.plural == "recoverypoints"), None),
            timeout=20)
        assert point["spec"]["keyRef"] == transit.ref
