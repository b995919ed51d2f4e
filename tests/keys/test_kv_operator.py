"""vault-kv:// keys through the operator: KeysAvailable from the cheap check (a missing secret is its own
reason), and a backup Job whose agent reads its key from KV, logged in as its own ServiceAccount."""
from __future__ import annotations

import secrets

from tests.backup.conftest import clock, fast_timers, key_text, seeded, volumes  # noqa: F401
from tests.backup.key_verdicts import backed_up_with, verdicts


async def test_kv_keys_available_and_a_backup_job_reads_its_key_from_kv(kube, seeded, clock,
                                                                         operator_logs_in_to_vault):
    vault = operator_logs_in_to_vault
    path = f"lifeline/{secrets.token_hex(3)}"
    vault.put_kv_key(path)  # on secret/, the mount the agents' Vault policy opens
    ref = f"vault-kv://{path}"
    async with kube.operator(clock=clock):
        refused, usable = await verdicts(kube, ref, "vault-kv://nothing/here")
        assert refused["reason"] == "KeyMissing" and "secret/metadata/nothing/here" in refused["message"]
        assert usable["reason"] == "KeyUsable" and path in usable["message"]

        await backed_up_with(kube, ref)
