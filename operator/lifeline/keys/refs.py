"""What a key reference may say, depending on who wrote it.

A reference such as ``vault-transit://his?mount=transit&role=his-backup`` names a key. Run by hand,
the agent also takes Vault's connection settings from it (``addr``, ``namespace``, ``auth``,
``auth_mount``, ``ca``). A reference in a tenant's BackupPolicy must not: the operator checks the
key with its own credentials and its Jobs log in with theirs, so a tenant who could choose the
address would have those credentials sent wherever they like. There, Vault's connection settings
are the operator's configuration (chart values ``vault.*``), said to the key providers by
``LIFELINE_VAULT_PINNED=true``; a reference may then name a Vault role only when the admin allowed
it (``LIFELINE_VAULT_ALLOWED_ROLES``, comma-separated, plus the operator's own ``LIFELINE_VAULT_ROLE``).
"""
from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping

from lifeline.key_refs import CONNECTION_PARAMS, connection_settings_in, query

PINNED_ENV = "LIFELINE_VAULT_PINNED"
ALLOWED_ROLES_ENV = "LIFELINE_VAULT_ALLOWED_ROLES"


def pinned(env: Mapping[str, str]) -> bool:
    return (env.get(PINNED_ENV) or "").strip().lower() in ("1", "true", "yes")


def allowed_roles(env: Mapping[str, str]) -> set[str]:
    roles = {r.strip() for r in (env.get(ALLOWED_ROLES_ENV) or "").split(",") if r.strip()}
    if env.get("LIFELINE_VAULT_ROLE"):
        roles.add(env["LIFELINE_VAULT_ROLE"])
    return roles


def pinned_problem(ref: str, env: Mapping[str, str]) -> str | None:
    """Why ``ref`` may not be used where Vault's settings are pinned (None: it may)."""
    if not pinned(env):
        return None
    found = connection_settings_in(ref)
    if found:
        return (f"key reference {ref!r} sets {', '.join(found)}: Vault's address, namespace, auth method "
                "and CA are the operator's settings here (chart values vault.*), not a key reference's")
    role = query(ref).get("role")
    if role is not None and role not in allowed_roles(env):
        return (f"key reference {ref!r} names Vault role {role!r}, which the admin has not allowed "
                f"(chart value vault.allowedRoles)")
    return None


def transport_problem(addr: str) -> str | None:
    """Plain http carries Vault tokens in clear: only to this machine."""
    parts = urllib.parse.urlsplit(addr)
    if parts.scheme == "https":
        return None
    if parts.scheme != "http":
        return f"Vault address {addr!r} must start with https:// (or http:// on loopback)"
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"Vault address {addr!r} is plain http to another machine: tokens would cross the network in "
            "clear; use https")


__all__ = ["ALLOWED_ROLES_ENV", "CONNECTION_PARAMS", "PINNED_ENV", "allowed_roles", "connection_settings_in",
           "pinned", "pinned_problem", "query", "transport_problem"]
