"""Local key-file provider (``file:///path/to/keyfile``).

The key file holds one 256-bit key-encryption key (KEK) as text::

    lifeline-key-v1 <64 hex digits>

It must be readable by its owner only (mode 0600 or 0400); looser permissions are
refused. Wrapped data keys are ``"LLK1" | kek id (8) | nonce (12) | AES-GCM(dek)``
where the kek id is a BLAKE3-derived fingerprint, so a wrong key file is named as
such instead of failing as "damaged data".
"""
from __future__ import annotations

import os
import stat
import urllib.parse
from pathlib import Path

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .base import KeyMismatch, KeyProviderError

HEADER = "lifeline-key-v1"
_MAGIC = b"LLK1"
_AAD = b"lifeline local key file v1"


def _fingerprint(kek: bytes) -> bytes:
    return blake3.blake3(kek, derive_key_context="lifeline.io 2026-11 key file id").digest(8)


def create_key_file(path: str | os.PathLike) -> Path:
    """Write a new random key file with mode 0600; refuses to overwrite."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyProviderError(f"key file {p} already exists; not overwriting it") from None
    except OSError as exc:
        raise KeyProviderError(f"cannot create key file {p}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{HEADER} {os.urandom(32).hex()}\n")
        f.flush()
        os.fsync(f.fileno())
    return p


class LocalKeyFileProvider:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().absolute()
        self.ref = "file://" + urllib.parse.quote(str(self.path))
        self._kek: bytes | None = None

    def _load(self) -> bytes:
        if self._kek is not None:
            return self._kek
        p = self.path
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise KeyProviderError(f"key file {p} does not exist; create one with "
                                   f"`lifeline agent init --create-key ...` or pass the right --key") from None
        except OSError as exc:
            raise KeyProviderError(f"cannot read key file {p}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyProviderError(f"key file {p} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyProviderError(
                f"key file {p} has permissions {mode:04o}; it must be readable by its owner only. "
                f"Fix it with: chmod 600 {p}")
        try:
            text = p.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyProviderError(f"cannot read key file {p}: {exc}") from None
        parts = text.split()
        if len(parts) != 2 or parts[0] != HEADER:
            raise KeyProviderError(f"key file {p} is not a lifeline key file (expected '{HEADER} <64 hex>')")
        try:
            kek = bytes.fromhex(parts[1])
        except ValueError:
            kek = b""
        if len(kek) != 32:
            raise KeyProviderError(f"key file {p}: the key must be 64 hex digits")
        self._kek = kek
        return kek

    @property
    def key_id(self) -> str:
        return _fingerprint(self._load()).hex()

    def new_data_key(self) -> tuple[bytes, bytes]:
        kek = self._load()
        dek = os.urandom(32)
        nonce = os.urandom(12)
        kid = _fingerprint(kek)
        wrapped = _MAGIC + kid + nonce + AESGCM(kek).encrypt(nonce, dek, _AAD + kid)
        return dek, wrapped

    def unwrap(self, wrapped: bytes) -> bytes:
        kek = self._load()
        if len(wrapped) != 4 + 8 + 12 + 32 + 16 or wrapped[:4] != _MAGIC:
            raise KeyMismatch("this data key was not wrapped by a local key file "
                              "(use the key provider the repository was created with)")
        kid = wrapped[4:12]
        mine = _fingerprint(kek)
        if kid != mine:
            raise KeyMismatch(f"wrong key: the data was encrypted under key file id {kid.hex()}, but "
                              f"{self.path} has id {mine.hex()}; pass the key file used at backup time")
        try:
            return AESGCM(kek).decrypt(wrapped[12:24], wrapped[24:], _AAD + kid)
        except InvalidTag:
            raise KeyMismatch(f"the wrapped data key does not open with {self.path} "
                              "(wrapped key damaged?)") from None
