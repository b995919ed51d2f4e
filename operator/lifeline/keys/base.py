"""The key-provider interface.

A provider wraps and unwraps 256-bit data keys. The repository stores only the
wrapped form (opaque bytes) next to the provider reference; it never sees the key
that wraps them. Providers are chosen by a URL-like reference:

* ``file:///path/to/keyfile`` — a local key file (this package, :mod:`.local`);
* ``vault-transit://<key>?mount=transit`` — Vault/OpenBao transit (separate issue).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from lifeline.errors import LifelineError
from lifeline.repository.errors import KeyMismatch


class KeyProviderError(LifelineError):
    """The key provider is unusable (missing file, bad permissions, unreachable)."""

    exit_code = 4


__all__ = ["KeyProvider", "KeyProviderError", "KeyMismatch"]


@runtime_checkable
class KeyProvider(Protocol):
    #: Reference string recorded in the repository and in RecoveryPoints (never key material).
    ref: str

    def new_data_key(self) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key: ``(plaintext, wrapped)``."""
        ...

    def unwrap(self, wrapped: bytes) -> bytes:
        """The plaintext of a wrapped data key; raises KeyMismatch if this key did not wrap it."""
        ...
