"""Keys in Vault (OpenBao): the operator asks the key provider whether a policy's transit key can be
used (a key Vault refuses is a specific reason), and a backup Job really wraps its data keys there,
logged in to Vault as its own ServiceAccount (Kubernetes auth, reviewed by the real API server)."""
from __future__ import annotations

import secrets

from .key_verdicts import backed_up_with, verdicts


async def test_a_transit_key_vault_refuses_and_one_it_accepts(kube, seeded, clock, operator_logs_in_to_vault):
    vault = operator_logs_in_to_vault
    key = "lifeline-" + secrets.token_hex(3)
    vault.create_transit_key(key)  # on transit/, the mount the agents' Vault policy opens
    ref = f"vault-transit://{key}"
    async with kube.operator(clock=clock):
        refused, usable = await verdicts(kube, ref, "vault-transit://no-such-key")
        assert refused["reason"] == "KeyMissing", refused
        assert "no-such-key" in refused["message"]
        assert usable["reason"] == "KeyUsable" and key in usable["message"]

        # the Job has the operator's Vault address and role; no token: it logs in as itself
        cron = kube.stored("batch/v1/cronjobs", None, "good-full")
        env = {e["name"]: e.get("value") for e in
               cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["VAULT_ADDR"] == vault.addr and env["LIFELINE_VAULT_ROLE"] == "lifeline-agent"
        assert "VAULT_TOKEN" not in env and "LIFELINE_VAULT_SA_TOKEN_PATH" not in env
        await backed_up_with(kube, ref)
