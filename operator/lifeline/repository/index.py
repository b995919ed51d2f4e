"""Index segments: which chunk lives where.

Each backup (and each prune) writes one segment per epoch after its packs are stored::

    "LLIDX002" | epoch id (16) | zstd(body) | MAC (32)
    MAC  = keyed BLAKE3 under the epoch's "index" MAC key (:class:`~.crypto.MacKeys`) of all before it
    body = pack count (u32) |
           per pack: pack id (16) | pack size (u64) | entry count (u32) | entries
           entry: chunk id (32) | offset (u64) | length (u32) | raw length (u32)

Chunk ids are keyed hashes, so the index is not encrypted. It is authenticated, not just
checksummed: storage cannot write a segment of its own (a checksum anyone can recompute would
let it point chunks at other packs or hide packs from prune). The MAC is checked before a byte
is decompressed. The epoch id stays in clear so a reader knows which key to check it with.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import zstandard

from .crypto import EpochKeys
from .errors import DamagedData, TamperedData
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


_MAC = 32
_HEAD = len(INDEX_MAGIC) + 16  # magic | epoch id


def encode_segment(keys: EpochKeys, packs: list[PackInfo]) -> bytes:
    parts = [struct.pack("<I", len(packs))]
    for p in packs:
        parts.append(_PACK.pack(bytes.fromhex(p.pack_id), p.size, len(p.entries)))
        parts.extend(_ENTRY.pack(*e) for e in p.entries)
    body = INDEX_MAGIC + keys.epoch_raw + zstandard.ZstdCompressor(level=3).compress(b"".join(parts))
    return body + keys.macs.mac("index", body)


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


def segment_epoch(name: str, data: bytes) -> str:
    """The epoch a segment says it belongs to (clear, to pick the key that authenticates it)."""
    if len(data) < _HEAD + _MAC or data[:len(INDEX_MAGIC)] != INDEX_MAGIC:
        raise DamagedData(f"index segment {name}: bad header (not a version 2 index segment)", obj=name)
    return data[len(INDEX_MAGIC):_HEAD].hex()


def decode_segment(name: str, data: bytes, keys: EpochKeys) -> tuple[str, list[PackInfo]]:
    """Authenticate (under ``keys``, the segment's epoch), then parse. Raises DamagedData/TamperedData."""
    epoch = segment_epoch(name, data)
    if epoch != keys.epoch_id:
        raise DamagedData(f"index segment {name}: belongs to epoch {epoch}, not {keys.epoch_id}", obj=name)
    body, tag = data[:-_MAC], data[-_MAC:]
    if not keys.macs.verify("index", body, tag):
        raise TamperedData(f"index segment {name}: authentication failed: storage changed it, or wrote one "
                           "of its own (it was not written with this repository's key)", obj=name)
    try:
        raw = _decompressed(name, body[_HEAD:])
        (npacks,) = struct.unpack_from("<I", raw, 0)
        pos = 4
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
        # segments not loaded: of an epoch the reader did not ask for, or of a crypto-shredded one
        self.other: dict[str, str] = {}  # segment name -> epoch

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
