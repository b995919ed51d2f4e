"""A cheap, cached availability check of a key reference, for the ``KeysAvailable`` condition.

``check(ref) -> (status, reason, message)`` with status ``'True' | 'False' | 'Unknown'``.
For a Vault KV key (``vault-kv://``) it checks reachability, ``read`` on the secret and,
when metadata may be read, that the newest version is live — without reading the key.
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

from . import provider_from_ref
from .base import KeyProviderError
from .vault import VaultTransitProvider
from .vault_client import VaultAuthError, VaultKeyMissing, VaultKeyUnusable, VaultPermissionDenied, VaultUnreachable
from .vault_kv import VaultKVProvider

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
    try:
        if ref and ref.startswith("vault-transit:"):
            provider = VaultTransitProvider(ref, env=env)
        elif ref and ref.startswith("vault-kv:"):
            provider = VaultKVProvider(ref, env=env)
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
    if ref.startswith("vault-kv:"):
        return _guarded(provider, _check_kv)
    return _guarded(provider, _check_vault)


def _check_kv(provider) -> Result:
    """Reachable, may read the secret, and (when metadata may be read) its newest version is live.

    The key itself is not read here: the operator never holds key material for a check."""
    cfg = provider.cfg
    caps = provider.capabilities([cfg.data_path, cfg.metadata_path])
    have = caps.get(cfg.data_path, [])
    if "read" not in have and "root" not in have:
        return ("False", "PermissionDenied",
                f"the Vault identity used for {cfg.ref} lacks 'read' on {cfg.data_path!r} (add it to its "
                "policy; see docs/vault.md)")
    meta_caps = caps.get(cfg.metadata_path, [])
    if not cfg.v2 or ("read" not in meta_caps and "root" not in meta_caps):
        return ("True", "KeyUsable",
                f"Vault at {cfg.addr} is reachable and this identity may read KV secret {cfg.data_path!r}; its "
                "existence was not checked" + ("" if not cfg.v2 else f" (no 'read' on {cfg.metadata_path!r})"))
    c = provider.client()
    meta = provider.call(lambda: c.secrets.kv.v2.read_secret_metadata(path=cfg.path, mount_point=cfg.mount),
                         cfg.metadata_path, "read", capability="read")["data"]
    latest = str(meta.get("current_version"))
    state = (meta.get("versions") or {}).get(latest) or {}
    if state.get("destroyed") or state.get("deletion_time"):
        return ("False", "KeyMissing",
                f"the newest version ({latest}) of KV secret {cfg.data_path!r} is "
                f"{'destroyed' if state.get('destroyed') else 'deleted'}: write a new key with bao kv put")
    return ("True", "KeyUsable",
            f"Vault at {cfg.addr} is reachable; KV secret {cfg.data_path!r} exists (version {latest}) and this "
            "identity may read it")


def _guarded(provider, fn) -> Result:
    # (error, status, reason), the first that matches counts: any other key provider error leaves it Unknown
    answers = ((VaultUnreachable, "False", "VaultUnreachable"),
               (VaultAuthError, "False", "AuthenticationFailed"),
               (VaultPermissionDenied, "False", "PermissionDenied"),
               (VaultKeyMissing, "False", "KeyMissing"),
               (VaultKeyUnusable, "False", "KeyTypeUnusable"),
               (KeyProviderError, "Unknown", "CheckFailed"))
    try:
        return fn(provider)
    except KeyProviderError as exc:
        status, reason = next((status, reason) for error, status, reason in answers if isinstance(exc, error))
        return status, reason, str(exc)
    finally:
        provider.close()


def _check_vault(provider) -> Result:
    cfg = provider.cfg
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
