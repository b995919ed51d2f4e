"""A key reference's parameters, and which of them say where Vault is.

Below the API models and the key providers alike: a model refuses a reference that sets a
connection parameter, a provider reads them. :mod:`lifeline.keys.refs` says who may set what.
"""
from __future__ import annotations

import urllib.parse

# Where Vault is and how to reach it: the operator's configuration, never a tenant's.
CONNECTION_PARAMS = ("addr", "namespace", "auth", "auth_mount", "ca")


def query(ref: str) -> dict[str, str]:
    """The reference's parameters (the last value of a repeated one, as the providers read them)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(ref).query, keep_blank_values=True))


def connection_settings_in(ref: str) -> list[str]:
    """The connection parameters a reference sets, in :data:`CONNECTION_PARAMS` order."""
    if not ref.startswith(("vault-transit://", "vault-kv://")):
        return []
    given = query(ref)
    return [p for p in CONNECTION_PARAMS if p in given]
