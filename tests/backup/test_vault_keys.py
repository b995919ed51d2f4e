"""Keys in Vault (OpenBao): the operator asks the key provider whether a policy's transit key can be
used (a key Vault refuses is a specific reason), and a backup Job really wraps its data keys there."""
from __future__ import annotations

from tests.integration.operator_harness import running_operator
from tests.keys.conftest import make_transit

from .conftest import NS, policy
from .key_verdicts import operator_uses_vault, verdicts


async def test_a_transit_key_vault_refuses_and_one_it_accepts(
        emulator, kubeconfig, api, cluster, runner, clock, openbao, monkeypatch):
    transit = make_transit(openbao)
    operator_uses_vault(monkeypatch, transit.addr, transit.token)
    good = policy("good", encryption={"keyRef": transit.ref})
    missing = policy("missing", encryption={"keyRef": f"vault-transit://no-such-key?mount={transit.mount}"})
    async with running_operator(kubeconfig, emulator, clock=clock):
        refused, usable = await verdicts(emulator, api, good, missing)
        assert refused["reason"] == "KeyMissing", refused
        assert "no-such-key" in refused["message"]
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
