"""Which key provider a command uses: the one the user or operator named, else the repository's, if safe.

The repository records the key reference given at ``init`` (``key_ref`` in its config), but storage
is untrusted and the config can only be proved *with* the key: taking the provider from it is a
chicken-and-egg. So:

* a named key (``--key``, ``LIFELINE_KEY``, the operator's Jobs) always wins; the recorded reference
  is then not even read;
* without one, the recorded reference is used only when it can do no harm before the config is
  proved: a local key file, or a Vault key found with this machine's own Vault settings
  (``VAULT_ADDR``, its token or login). A reference that says *where or how* to reach Vault
  (``addr``, ``namespace``, ``auth``, ``auth_mount``, ``ca``, ``role``) would send this machine's
  credentials wherever storage likes: it is refused, and the message names ``--key``;
* the provider taken from the repository must then prove the config at once (unwrapping an epoch
  key or the anchor, and checking the MAC), before it is used for anything else.
"""
from __future__ import annotations

import urllib.parse

from lifeline.errors import LifelineError

from . import provider_from_ref
from .base import KeyProviderError
from .refs import CONNECTION_PARAMS, query

# Vault reference parameters that say where or how to log in (never taken from storage).
_LOGIN_PARAMS = (*CONNECTION_PARAMS, "role")
_VAULT_SCHEMES = ("vault-transit", "vault-kv")


def recorded_ref_problem(ref) -> str | None:
    """Why a key reference read from the repository may not be used (None: it may)."""
    if not isinstance(ref, str) or not ref:
        return "it is empty"
    scheme = urllib.parse.urlsplit(ref).scheme
    if scheme in ("", "file"):
        return None
    if scheme in _VAULT_SCHEMES:
        found = [p for p in _LOGIN_PARAMS if p in query(ref)]
        if found:
            return f"it sets {', '.join(found)} (where or how to log in to Vault)"
        return None
    return f"only local key files and Vault keys are taken from a repository, not {scheme}:// references"


def provider_for(repo, named: str | None):
    """The provider for ``repo``: ``named`` when given; else the recorded one, proved before use."""
    if named:
        return provider_from_ref(named)
    ref = repo.config.get("key_ref")
    problem = recorded_ref_problem(ref)
    if problem:
        raise KeyProviderError(
            f"no key given, and the key reference recorded in the repository ({ref!r}) is not used: {problem}. "
            "Storage could have written it. Pass --key (or set LIFELINE_KEY) naming your key")
    provider = provider_from_ref(ref)
    try:
        repo.authenticate(provider)
    except LifelineError as exc:
        exc.args = (f"{exc} (the key reference {ref!r} was taken from the repository, which cannot vouch "
                    "for it: pass --key naming your key)",)
        raise
    return provider
