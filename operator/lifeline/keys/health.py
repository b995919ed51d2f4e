"""A cheap, cached availability check of a key reference, for the ``KeysAvailable`` condition.

``check(ref) -> (status, reason, message)`` with status ``'True' | 'False' | 'Unknown'``.
For a Vault transit key it asks Vault, in one round trip each and without touching key
material: is Vault reachable and is the token valid (``sys/capabilities-self``), may this
identity generate and unwrap data keys (``update`` on ``<mount>/datakey/plaintext/<key>`` and
``<mount>/decrypt/<key>``), and does the key exist and support encryption (``read`` on
``<mount>/keys/<key>``, metadata only; when the policy does not grant it, existence is not
checked and the message says so). Results are cached per reference (success 60 s, failure
15 s) so a controller can call it on every reconcile.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from .base import KeyProviderError

Result = tuple[str, str, str]

OK_TTL = 60.0
FAIL_TTL = 15.0

_cache: dict[str, tuple[float, Result]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def check(ref: str, *, clock: Callable[[], float] = time.monotonic, env=None) -> Result:
    now = clock()
    with _lock:
        hit = _cache.get(ref)
        if hit and hit[0] > now:
            return hit[1]
    result = _check_uncached(ref, env)
    ttl = OK_TTL if result[0] == "True" else FAIL_TTL
    with _lock:
        _cache[ref] = (now + ttl, result)
    return result


def _check_uncached(ref: str, env) -> Result:
    from . import provider_from_ref

    try:
        if ref and ref.startswith("vault-transit:"):
            from .vault import VaultTransitProvider

            provider = VaultTransitProvider(ref, env=env)
        else:
            provider = provider_from_ref(ref)
    except KeyProviderError as exc:
        return "False", "InvalidKeyReference", str(exc)
    if not hasattr(provider, "capabilities"):
        # local key file: loading it checks existence, permissions and format
        try:
            provider.new_data_key()
        except KeyProviderError as exc:
            return "False", "KeyUnavailable", str(exc)
        return "True", "KeyFileReadable", f"key file for {ref} is readable by its owner only"
    return _check_vault(provider)


def _check_vault(provider) -> Result:
    from .vault import (VaultAuthError, VaultKeyMissing, VaultKeyUnusable, VaultPermissionDenied,
                        VaultUnreachable)

    cfg = provider.cfg
    try:
        need = {cfg.path("datakey"): "update", cfg.path("decrypt"): "update"}
        caps = provider.capabilities([*need, cfg.path("read")])
        missing = [f"{cap!r} on {path!r}" for path, cap in need.items()
                   if cap not in caps.get(path, []) and "root" not in caps.get(path, [])]
        if missing:
            return ("False", "PermissionDenied",
                    f"the Vault identity used for {cfg.ref} lacks " + " and ".join(missing)
                    + " (add them to its policy; see docs/vault.md)")
        read_caps = caps.get(cfg.path("read"), [])
        if "read" not in read_caps and "root" not in read_caps:
            return ("True", "KeyUsable",
                    f"Vault at {cfg.addr} is reachable and this identity may use transit key {cfg.key!r}; "
                    "the key's existence was not checked (no 'read' on "
                    f"{cfg.path('read')!r})")
        info = provider.key_info()
        if not info.get("supports_encryption", True) or info.get("derived"):
            return ("False", "KeyTypeUnusable",
                    f"transit key {cfg.key!r} (type {info.get('type')}) cannot wrap data keys: use type "
                    "aes256-gcm96 without derivation")
        return ("True", "KeyUsable",
                f"Vault at {cfg.addr} is reachable; transit key {cfg.key!r} exists (type {info.get('type')}, "
                f"latest version {info.get('latest_version')}) and this identity may use it")
    except VaultUnreachable as exc:
        return "False", "VaultUnreachable", str(exc)
    except VaultAuthError as exc:
        return "False", "AuthenticationFailed", str(exc)
    except VaultPermissionDenied as exc:
        return "False", "PermissionDenied", str(exc)
    except VaultKeyMissing as exc:
        return "False", "KeyMissing", str(exc)
    except VaultKeyUnusable as exc:
        return "False", "KeyTypeUnusable", str(exc)
    except KeyProviderError as exc:
        return "Unknown", "CheckFailed", str(exc)
    finally:
        provider.close()
