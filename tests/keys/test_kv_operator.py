"""vault-kv:// keys through the operator: KeysAvailable from the cheap check (a missing secret is its own
reason), and a backup Job whose agent reads its key from KV."""
from __future__ import annotations

from tests.backup.conftest import (NS, api, clock, cluster, emulator, fast_timers,  # noqa: F401
                                   key_text, policy, runner, volumes)
from tests.backup.key_verdicts import operator_uses_vault, verdicts
from tests.integration.operator_harness import running_operator
from tests.keys.test_shred_deletion import points
from tests.keys.test_vault_kv import make_kv


async def test_kv_keys_available_and_a_backup_job_reads_its_key_from_kv(
        emulator, kubeconfig, api, cluster, runner, clock, openbao, monkeypatch):
    kv = make_kv(openbao)
    operator_uses_vault(monkeypatch, kv.addr, kv.token)
    good = policy("good", encryption={"keyRef": kv.ref})
    missing = policy("missing", encryption={"keyRef": f"vault-kv://nothing/here?mount={kv.mount}"})
    async with running_operator(kubeconfig, emulator, clock=clock):
        refused, usable = await verdicts(emulator, api, good, missing)
        assert refused["reason"] == "KeyMissing" and f"{kv.mount}/metadata/nothing/here" in refused["message"]
        assert usable["reason"] == "KeyUsable" and kv.path in usable["message"]

        runner.env["VAULT_TOKEN"] = kv.token
        result = await runner.trigger(NS, "good-full")
        assert result.phase == "Succeeded", result.containers["agent"].log.read_text()
        point = next(iter((await emulator.wait_for(lambda: points(emulator), timeout=20)).values()))
        assert point["spec"]["keyRef"] == kv.ref
