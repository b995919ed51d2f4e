"""Pack objects: many sealed chunk blobs in one object, with a sealed directory.

Layout (all integers little-endian)::

    "LLPACK01" | epoch id (16 bytes) | blob | blob | ... |
    sealed directory | directory length (u32) | "LLPEND01"

The sealed directory is AEAD-sealed (the epoch key, the repository's cipher) over N records of
``chunk id (32) | offset (u64) | length (u32) | raw length (u32)`` with AAD
``"LLPD" | epoch id | pack id``. It makes each pack self-describing, so a lost
index can be rebuilt from the packs alone; the index is what is read normally.
"""
from __future__ import annotations

import secrets
import struct
from typing import NamedTuple

from .crypto import EpochKeys
from .errors import DamagedData
from .layout import PACK_END_MAGIC, PACK_MAGIC

HEADER_LEN = len(PACK_MAGIC) + 16
TRAILER_LEN = 4 + len(PACK_END_MAGIC)
DIR_RECORD = struct.Struct("<32sQII")


class BlobRef(NamedTuple):
    """Where a chunk's sealed blob lies. A tuple: a restore makes one a chunk (200,000 and more),
    and a frozen dataclass takes twice as long to make."""

    pack_id: str
    offset: int
    length: int
    raw_len: int


class PackBuilder:
    """Accumulates sealed blobs in memory until the pack is big enough."""

    def __init__(self, keys: EpochKeys):
        self.keys = keys
        self.pack_id = secrets.token_hex(16)
        self.parts: list = [PACK_MAGIC + keys.epoch_raw]
        self._size = HEADER_LEN
        self.entries: list[tuple[bytes, int, int, int]] = []

    def add(self, chunk_id: bytes, blob, raw_len: int) -> BlobRef:
        off = self._size
        self.parts.append(blob)
        self._size += len(blob)
        self.entries.append((chunk_id, off, len(blob), raw_len))
        return BlobRef(self.pack_id, off, len(blob), raw_len)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self.entries)

    def finish(self) -> list:
        """The pack as a list of buffers (written with one gather-write, not joined)."""
        plain = b"".join(DIR_RECORD.pack(*e) for e in self.entries)
        sealed = self.keys.seal_object(plain, directory_aad(self.keys.epoch_raw, self.pack_id))
        self.parts.append(sealed)
        self.parts.append(struct.pack("<I", len(sealed)) + PACK_END_MAGIC)
        self._size += len(sealed) + TRAILER_LEN
        return self.parts


def directory_aad(epoch_raw: bytes, pack_id: str) -> bytes:
    return b"LLPD" + epoch_raw + bytes.fromhex(pack_id)


def read_directory(keys: EpochKeys, pack_id: str, data: bytes) -> list[tuple[bytes, int, int, int]]:
    """Parse a whole pack's directory (used by check/repair); raises DamagedData."""
    what = f"pack {pack_id}"
    if len(data) < HEADER_LEN + TRAILER_LEN or data[:len(PACK_MAGIC)] != PACK_MAGIC:
        raise DamagedData(f"{what}: bad header", obj=what)
    if data[-len(PACK_END_MAGIC):] != PACK_END_MAGIC:
        raise DamagedData(f"{what}: bad trailer", obj=what)
    if data[len(PACK_MAGIC):HEADER_LEN] != keys.epoch_raw:
        raise DamagedData(f"{what}: belongs to another epoch", obj=what)
    (dlen,) = struct.unpack("<I", data[-TRAILER_LEN:-len(PACK_END_MAGIC)])
    start = len(data) - TRAILER_LEN - dlen
    if start < HEADER_LEN:
        raise DamagedData(f"{what}: bad directory length", obj=what)
    plain = keys.open_object(data[start:len(data) - TRAILER_LEN],
                             directory_aad(keys.epoch_raw, pack_id), what)
    if len(plain) % DIR_RECORD.size:
        raise DamagedData(f"{what}: bad directory", obj=what)
    return [DIR_RECORD.unpack_from(plain, i) for i in range(0, len(plain), DIR_RECORD.size)]


def pack_epoch(header: bytes) -> str | None:
    if len(header) >= HEADER_LEN and header[:len(PACK_MAGIC)] == PACK_MAGIC:
        return header[len(PACK_MAGIC):HEADER_LEN].hex()
    return None
