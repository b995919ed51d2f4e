"""The repository config (``config``): what ``init`` records, and the proof that storage did not change it.

The config steers every backup (chunker parameters, pack target, compression level) and names the
default key, yet it is read before any key is at hand: it stays clear JSON and carries MACs
(keyed BLAKE3, :class:`~.crypto.MacKeys`) over its canonical form instead:

* ``mac``, in the config itself, under the *anchor*: a data key made by ``init``, wrapped by the key
  provider and kept in the config (``anchor``). It proves the config, and the first catalogue head,
  while the repository has no key epoch yet (between ``init`` and the first backup).
* ``config_mac``, in every ``keys/<epoch>`` object, under that epoch's key, written when the epoch is
  made. Opening an epoch key checks it, so every command that reads or writes data has proved the
  config before it uses it, at no extra unwrap. Rotation rewraps an epoch's key and keeps its
  ``config_mac``; shredding an epoch leaves the other epochs (or the anchor) to prove the config.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets

from lifeline.errors import UsageError

from .crypto import AES_256_GCM, CIPHERS, DEFAULT_CIPHER, MacKeys
from .errors import FormatError, TamperedData
from .layout import (CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CIPHER_FORMAT_VERSION, CONFIG, FORMAT_NAME, FORMAT_VERSION,
                     IMMUTABLE_FORMAT_VERSION, PACK_TARGET)


def canonical(config: dict) -> bytes:
    """The bytes a config MAC covers: every field but ``mac``, as sorted compact JSON."""
    return json.dumps({k: v for k, v in config.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode()


def check_cipher_name(name) -> str:
    """``name`` if it is a cipher a repository can be created with, else a UsageError that lists them."""
    if name not in CIPHERS:
        raise UsageError(f"unknown cipher {name!r}: choose " + " or ".join(
            f"{c.name} ({c.what})" for c in CIPHERS.values()) + f"; the default is {DEFAULT_CIPHER}")
    return name


def new(provider, *, compression_level: int, created_at: str,
        cipher: str = DEFAULT_CIPHER, immutable: dict | None = None) -> tuple[dict, MacKeys]:
    """A fresh config, authenticated under a new anchor key (returned, to seal the first head).

    ``encryption`` names the repository's cipher for good: every epoch seals with it, and the
    config MAC (under the anchor and every epoch key) covers it. So does ``immutable``
    ({"mode", "days"}: docs/immutability.md), which makes the config's version 5."""
    if not 0 <= compression_level <= 19:
        raise UsageError("compression level must be 0 (off) to 19")
    check_cipher_name(cipher)
    dek, wrapped = provider.new_data_key()
    config = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION if cipher == AES_256_GCM else CIPHER_FORMAT_VERSION,
        "id": secrets.token_hex(16),
        "created_at": created_at,
        "key_ref": provider.ref,
        "chunker": {"algorithm": "fastcdc-2020", "normalized": 1,
                    "min": CHUNK_MIN, "avg": CHUNK_AVG, "max": CHUNK_MAX},
        "pack_target": PACK_TARGET,
        "compression": "zstd",
        "compression_level": compression_level,
        "encryption": cipher,
        "chunk_id": "blake3-keyed",
        "anchor": base64.b64encode(wrapped).decode(),
    }
    if immutable is not None:
        config["immutable"] = dict(immutable)
        config["version"] = IMMUTABLE_FORMAT_VERSION
    anchor = MacKeys(dek)
    config["mac"] = anchor.mac("config", canonical(config)).hex()
    return config, anchor


def check_format(url: str, config) -> None:
    """Refuse what is not a lifeline repository of this format version (before any key is used)."""
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise FormatError(f"{url} is not a lifeline repository")
    try:
        version = int(config.get("version", 0))
    except (TypeError, ValueError):
        version = 0
    if version > IMMUTABLE_FORMAT_VERSION or version == IMMUTABLE_FORMAT_VERSION - 1:  # 4: a point's, never a config's
        raise FormatError(f"repository format version {config.get('version')!r} is newer than this lifeline "
                          f"supports ({IMMUTABLE_FORMAT_VERSION}): upgrade lifeline")
    if (version == IMMUTABLE_FORMAT_VERSION) != ("immutable" in config):
        raise FormatError(f"the repository {CONFIG} at {url} says format version {config.get('version')!r} "
                          f"{'without' if 'immutable' not in config else 'with'} immutability settings: only "
                          f"version {IMMUTABLE_FORMAT_VERSION} (immutable repositories) has them")
    if version < FORMAT_VERSION:
        raise FormatError(
            f"the repository at {url} has format version {config.get('version')!r}, whose config and catalogue "
            f"are not authenticated; this lifeline reads versions {FORMAT_VERSION}, {CIPHER_FORMAT_VERSION} and "
            f"{IMMUTABLE_FORMAT_VERSION} only. "
            "Restore what you need with the lifeline that wrote it, and back up into a new repository")


def wrapped_anchor(config: dict) -> bytes:
    try:
        return base64.b64decode(config["anchor"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise TamperedData(f"the repository {CONFIG} has no usable anchor key: it was changed in storage; "
                           "refusing to use it", obj=CONFIG) from None


def check(url: str, config: dict, macs: MacKeys, tag, proof: str) -> None:
    """Raise TamperedData unless ``tag`` (from ``proof``, an object name) authenticates ``config``."""
    if not macs.verify("config", canonical(config), tag):
        raise TamperedData(
            f"the repository {CONFIG} at {url} failed authentication (checked with the key of {proof}): storage "
            "changed it (cipher, chunker, compression, pack size or key reference) or that object; refusing to use it",
            obj=CONFIG)
