"""What the operator says about a policy's Vault key: the KeysAvailable condition of a usable key
and of one Vault does not have, for the transit (tests/backup) and KV (tests/keys) operator tests."""
from __future__ import annotations

from lifeline.api import BY_KIND
from lifeline.keys import health
from lifeline.planning import conditions

from .conftest import NS

POLICY = BY_KIND["BackupPolicy"].resource


def keys_condition(emulator, name: str) -> dict:
    obj = emulator.stored(POLICY, NS, name)
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), "KeysAvailable") or {}


def operator_uses_vault(monkeypatch, addr: str, token: str) -> None:
    """The operator's own Vault settings (it runs in this process); Jobs get the address, not the token."""
    health.clear_cache()
    monkeypatch.setenv("VAULT_ADDR", addr)
    monkeypatch.setenv("VAULT_TOKEN", token)
    monkeypatch.setenv("LIFELINE_VAULT_RETRIES", "1")


async def verdicts(emulator, api, good: dict, missing: dict) -> tuple[dict, dict]:
    """Create both policies (under a running operator); KeysAvailable of ``missing`` once False and of
    ``good`` once True."""
    await api.create(good)
    await api.create(missing)
    refused = await emulator.wait_for(lambda: (c := keys_condition(emulator, missing["metadata"]["name"])) and
                                      c["status"] == "False" and c, timeout=30)
    usable = await emulator.wait_for(lambda: (c := keys_condition(emulator, good["metadata"]["name"])) and
                                     c["status"] == "True" and c, timeout=30)
    return refused, usable
