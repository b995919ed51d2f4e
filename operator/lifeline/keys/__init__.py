"""Key providers: wrap/unwrap per-epoch data keys; never stored in the repository.

``provider_from_ref(ref)`` builds a provider from its reference string:

* ``file:///abs/path/keyfile`` (or a plain path) → :class:`LocalKeyFileProvider`
* ``vault-transit://<key>?mount=transit`` → Vault transit (registered by its own module)
* ``vault-kv://<path>?mount=secret&field=key`` → a key stored in Vault KV (the weaker choice)

Other providers plug in through :func:`register_scheme` without any change to the
repository format: it only stores ``(provider ref, wrapped key bytes)``.
"""
from __future__ import annotations

import importlib
import urllib.parse
from typing import Callable

from .base import KeyMismatch, KeyProvider, KeyProviderError
from .local import LocalKeyFileProvider, create_key_file

__all__ = ["KeyProvider", "KeyProviderError", "KeyMismatch", "LocalKeyFileProvider",
           "create_key_file", "provider_from_ref", "register_scheme"]

_SCHEMES: dict[str, Callable[[str], KeyProvider]] = {}
# Modules that register a scheme when imported (lazy: only when that scheme is asked for).
_LAZY = {"vault-transit": "lifeline.keys.vault", "vault-kv": "lifeline.keys.vault_kv"}


def register_scheme(scheme: str, factory: Callable[[str], KeyProvider]) -> None:
    _SCHEMES[scheme] = factory


def _file_provider(ref: str) -> KeyProvider:
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise KeyProviderError(f"key reference {ref!r}: use file:///absolute/path")
        return LocalKeyFileProvider(urllib.parse.unquote(parsed.path))
    return LocalKeyFileProvider(ref)


register_scheme("file", _file_provider)


def provider_from_ref(ref: str) -> KeyProvider:
    if not ref:
        raise KeyProviderError("no key given: pass --key file:///path/to/keyfile (or set LIFELINE_KEY)")
    scheme = urllib.parse.urlparse(ref).scheme
    if scheme in ("", "file"):
        return _file_provider(ref)
    if scheme not in _SCHEMES and scheme in _LAZY:
        try:
            importlib.import_module(_LAZY[scheme])
        except ModuleNotFoundError:
            pass
    factory = _SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(sorted(set(_SCHEMES) | set(_LAZY)))
        raise KeyProviderError(f"unknown key provider {scheme!r} in {ref!r} (known: {known})")
    return factory(ref)
