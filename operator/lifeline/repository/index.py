"""Index segments: which chunk lives where.

Each backup (and each prune) writes one segment after its packs are stored::

    "LLIDX001" | zstd(body) | BLAKE3(magic | zstd(body))   (32 bytes)

    body = epoch id (16) | pack count (u32) |
           per pack: pack id (16) | pack size (u64) | entry count (u32) | entries
           entry: chunk id (32) | offset (u64) | length (u32) | raw length (u32)

Chunk ids are keyed hashes, so the index is not encrypted; its checksum catches
damage and a wrong offset is caught anyway by the blob's authentication tag.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import blake3
import zstandard

from .errors import DamagedData
from .layout import INDEX_MAGIC
from .pack import BlobRef

_PACK = struct.Struct("<16sQI")
_ENTRY = struct.Struct("<32sQII")


@dataclass
class PackInfo:
    pack_id: str
    epoch: str
    size: int
    entries: list[tuple[bytes, int, int, int]] = field(default_factory=list)


def encode_segment(epoch: str, packs: list[PackInfo]) -> bytes:
    parts = [bytes.fromhex(epoch), struct.pack("<I", len(packs))]
    for p in packs:
        parts.append(_PACK.pack(bytes.fromhex(p.pack_id), p.size, len(p.entries)))
        parts.extend(_ENTRY.pack(*e) for e in p.entries)
    body = INDEX_MAGIC + zstandard.ZstdCompressor(level=3).compress(b"".join(parts))
    return body + blake3.blake3(body).digest()


# An index segment lists packs and their blobs (~40 bytes a blob, which hardly compress): a segment
# that says it grows beyond this once decompressed is a bomb from storage, not Lifeline's writing.
MAX_SEGMENT_BYTES = 1 << 30


def _decompressed(name: str, frame: bytes) -> bytes:
    """Decompress a segment's zstd frame, refusing one that grows past :data:`MAX_SEGMENT_BYTES`
    (storage is untrusted: a frame may declare, or hold, gigabytes of zeros)."""
    declared = zstandard.frame_content_size(frame)
    if declared > MAX_SEGMENT_BYTES:
        raise DamagedData(f"index segment {name}: says it holds {declared} bytes once decompressed, more than "
                          f"an index segment can ({MAX_SEGMENT_BYTES}): refused", obj=name)
    return zstandard.ZstdDecompressor().decompress(frame, max_output_size=MAX_SEGMENT_BYTES if declared < 0 else 0)


def decode_segment(name: str, data: bytes) -> tuple[str, list[PackInfo]]:
    if len(data) < len(INDEX_MAGIC) + 32 or data[:len(INDEX_MAGIC)] != INDEX_MAGIC:
        raise DamagedData(f"index segment {name}: bad header", obj=name)
    body, digest = data[:-32], data[-32:]
    if blake3.blake3(body).digest() != digest:
        raise DamagedData(f"index segment {name}: checksum mismatch", obj=name)
    try:
        raw = _decompressed(name, body[len(INDEX_MAGIC):])
        epoch = raw[:16].hex()
        (npacks,) = struct.unpack_from("<I", raw, 16)
        pos = 20
        packs = []
        for _ in range(npacks):
            pid, size, count = _PACK.unpack_from(raw, pos)
            pos += _PACK.size
            entries = [_ENTRY.unpack_from(raw, pos + i * _ENTRY.size) for i in range(count)]
            pos += count * _ENTRY.size
            packs.append(PackInfo(pid.hex(), epoch, size, entries))
    except (struct.error, zstandard.ZstdError) as exc:
        raise DamagedData(f"index segment {name}: cannot parse: {exc}", obj=name) from None
    return epoch, packs


class Index:
    """The union of all index segments, in memory."""

    def __init__(self):
        self.chunks: dict[bytes, BlobRef] = {}
        self.packs: dict[str, PackInfo] = {}
        self.segments: dict[str, list[str]] = {}  # segment name -> pack ids
        self.damaged: dict[str, str] = {}  # segment name -> reason

    def add_segment(self, name: str, epoch: str, packs: list[PackInfo]) -> None:
        self.segments[name] = [p.pack_id for p in packs]
        for p in packs:
            self.packs.setdefault(p.pack_id, p)
            for cid, off, length, raw in p.entries:
                self.chunks.setdefault(cid, BlobRef(p.pack_id, off, length, raw))

    def get(self, chunk_id: bytes) -> BlobRef | None:
        return self.chunks.get(chunk_id)

    def __contains__(self, chunk_id: bytes) -> bool:
        return chunk_id in self.chunks
