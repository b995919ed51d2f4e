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

In memory (:class:`Index`) the union of the segments is kept compact, not as Python objects per
chunk: a chunk is one 52-byte record (its 48-byte segment entry and a pack number) in a table of
byte buckets chosen by the id's first bytes (chunk ids are keyed hashes, so they spread evenly),
found with ``bytes.find``. A pack's own entry list is kept as its 48-byte segment entries and
decoded only when asked for (:attr:`PackInfo.entries`), and not at all by readers that only look
chunks up (``Index(pack_entries=False)``: restore). About 52 bytes a chunk (100 with the packs'
entries) where a dict of tuples took ~400; 32 (the id alone) for a backup, which asks only whether a
chunk is stored (``ids_only``).
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import zstandard

from .crypto import EpochKeys
from .errors import DamagedData, TamperedData
from .layout import INDEX_MAGIC
from .pack import BlobRef

_PACK = struct.Struct("<16sQI")
_ENTRY = struct.Struct("<32sQII")
_ID = 32


class PackInfo:
    """A pack: id, epoch, size and its blobs (``entries``: (chunk id, offset, length, raw length)).

    The entries are kept as their packed 48-byte records (:attr:`raw`) and decoded on each access
    of :attr:`entries`; ``count`` is their number. ``raw`` is None for a pack of an index loaded
    without pack entries (``Index(pack_entries=False)``)."""

    __slots__ = ("pack_id", "epoch", "size", "raw")

    def __init__(self, pack_id: str, epoch: str, size: int, entries=()):
        self.pack_id, self.epoch, self.size = pack_id, epoch, size
        if entries is None or isinstance(entries, (bytes, bytearray, memoryview)):
            self.raw = bytes(entries) if isinstance(entries, memoryview) else entries
        else:
            self.raw = b"".join(_ENTRY.pack(*e) for e in entries)

    @property
    def entries(self) -> list[tuple[bytes, int, int, int]]:
        if self.raw is None:
            raise RuntimeError(f"pack {self.pack_id}: the index was loaded without pack entries")
        return list(_ENTRY.iter_unpack(self.raw))

    @property
    def count(self) -> int:
        return len(self.raw) // _ENTRY.size if self.raw is not None else 0

    def __eq__(self, other) -> bool:
        return isinstance(other, PackInfo) and (self.pack_id, self.epoch, self.size, self.raw) == (
            other.pack_id, other.epoch, other.size, other.raw)

    def __repr__(self) -> str:
        return f"PackInfo({self.pack_id!r}, {self.epoch!r}, {self.size}, <{self.count} entries>)"


_MAC = 32
_HEAD = len(INDEX_MAGIC) + 16  # magic | epoch id


def encode_segment(keys: EpochKeys, packs: list[PackInfo]) -> bytearray:
    parts = [struct.pack("<I", len(packs))]
    for p in packs:
        parts.append(_PACK.pack(bytes.fromhex(p.pack_id), p.size, p.count))
        parts.append(p.raw)
    # one frame, with its size in the header, compressed part by part into one buffer, the MAC
    # appended to it: no joined copy of the body, nor of the segment
    z = zstandard.ZstdCompressor(level=3).compressobj(size=sum(len(x) for x in parts))
    out = bytearray(INDEX_MAGIC + keys.epoch_raw)
    for x in parts:
        out += z.compress(x)
    out += z.flush()
    out += keys.macs.mac("index", out)
    return out


# An index segment lists packs and their blobs (~40 bytes a blob, which hardly compress): a segment
# that says it grows beyond this once decompressed is a bomb from storage, not Lifeline's writing.
MAX_SEGMENT_BYTES = 1 << 30


def _decompressed(name: str, frame) -> bytes:
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
    return bytes(data[len(INDEX_MAGIC):_HEAD]).hex()


def segment_packs(name: str, data: bytes, keys: EpochKeys) -> Iterator[tuple[str, int, memoryview]]:
    """Authenticate (under ``keys``, the segment's epoch), then yield each pack as (pack id, size,
    its packed entries: a view of ``count`` 48-byte records). Raises DamagedData/TamperedData; the
    whole segment is authenticated and parsed before the first pack is yielded."""
    epoch = segment_epoch(name, data)
    if epoch != keys.epoch_id:
        raise DamagedData(f"index segment {name}: belongs to epoch {epoch}, not {keys.epoch_id}", obj=name)
    mv = memoryview(data)
    body, tag = mv[:-_MAC], bytes(mv[-_MAC:])
    if not keys.macs.verify("index", body, tag):
        raise TamperedData(f"index segment {name}: authentication failed: storage changed it, or wrote one "
                           "of its own (it was not written with this repository's key)", obj=name)
    try:
        raw = memoryview(_decompressed(name, body[_HEAD:]))
        (npacks,) = struct.unpack_from("<I", raw, 0)
        pos = 4
        packs = []
        for _ in range(npacks):
            pid, size, count = _PACK.unpack_from(raw, pos)
            pos += _PACK.size
            end = pos + count * _ENTRY.size
            if end > len(raw):
                raise struct.error(f"pack {pid.hex()} says it has {count} entries, more than the segment holds")
            packs.append((pid.hex(), size, raw[pos:end]))
            pos = end
    except (struct.error, zstandard.ZstdError) as exc:
        raise DamagedData(f"index segment {name}: cannot parse: {exc}", obj=name) from None
    return iter(packs)


def decode_segment(name: str, data: bytes, keys: EpochKeys) -> tuple[str, list[PackInfo]]:
    """Authenticate (under ``keys``, the segment's epoch), then parse. Raises DamagedData/TamperedData."""
    packs = [PackInfo(pid, keys.epoch_id, size, bytes(raw)) for pid, size, raw in segment_packs(name, data, keys)]
    return keys.epoch_id, packs


class ChunkTable:
    """Fixed-size records keyed by a 32-byte chunk id, in byte buckets picked by the id's first bytes.

    A record is the id followed by ``rec - 32`` bytes of value. Chunk ids are keyed BLAKE3 digests,
    so they spread evenly over the buckets; a bucket holds 8 to 32 records on average (4 times more
    buckets when it passes 32), and a lookup is one ``bytes.find`` in it. The first record of an id
    wins: adding an id that is there already changes nothing."""

    GROW_AT = 32  # records a bucket on average

    def __init__(self, rec: int = _ID):
        self.rec = rec
        self._n = 0
        self._bits = 8
        self._shift = 32 - self._bits
        self._buckets: list[bytearray] = [bytearray() for _ in range(1 << self._bits)]

    def __len__(self) -> int:
        return self._n

    def _find(self, b, cid) -> int:
        rec = self.rec
        i = b.find(cid)
        while i > 0 and i % rec:  # (a match across two records: not this id)
            i = b.find(cid, i + 1)
        return i

    def __contains__(self, cid) -> bool:
        if len(cid) != _ID:
            return False
        b = self._buckets[int.from_bytes(cid[:4], "big") >> self._shift]
        i = b.find(cid)
        while i > 0 and i % self.rec:  # (a match across two records: not this id)
            i = b.find(cid, i + 1)
        return i >= 0

    def has_all(self, ids) -> bool:
        """Whether every id of ``ids`` (32 bytes each, one after another) is here: ``in`` for many."""
        buckets, shift = self._buckets, self._shift
        if len(ids) == _ID:  # (most files: one chunk; called per file, so one call deep)
            return self._find(buckets[int.from_bytes(ids[:4], "big") >> shift], ids) >= 0
        for at in range(0, len(ids), _ID):
            cid = ids[at:at + _ID]
            if self._find(buckets[int.from_bytes(cid[:4], "big") >> shift], cid) < 0:
                return False
        return len(ids) % _ID == 0

    def locate(self, cid) -> tuple[bytearray, int] | None:
        """(bucket, offset of the record's value in it), or None."""
        if len(cid) != _ID:
            return None
        b = self._buckets[int.from_bytes(cid[:4], "big") >> self._shift]
        i = self._find(b, cid)
        return None if i < 0 else (b, i + _ID)

    def add(self, cid, value=b"") -> bool:
        """Add a record (``cid`` then ``value``, which must be ``rec - 32`` bytes); False if the id is there."""
        b = self._buckets[int.from_bytes(cid[:4], "big") >> self._shift]
        if self._find(b, cid) >= 0:
            return False
        b += cid
        if value:
            b += value
        self._n += 1
        if self._n > self.GROW_AT << self._bits:
            self._grow()
        return True

    def add_records(self, raw, width: int, suffix: bytes = b"") -> None:
        """Add each ``width``-byte record of ``raw`` (an id, then ``width - 32`` bytes) followed by
        ``suffix`` (together ``rec`` bytes), or its id alone in a table of ids (``rec`` 32): :meth:`add`
        for many, faster (an index's load is this loop, once for every chunk of the repository: its
        steps are written out)."""
        mv = memoryview(raw)
        rec, buckets, shift = self.rec, self._buckets, self._shift
        keep = min(width, rec)
        n, limit = self._n, self.GROW_AT << self._bits
        prefixes = struct.Struct(f">I{width - 4}x").iter_unpack(mv[:len(mv) - len(mv) % width])
        for i, (prefix,) in zip(range(0, len(mv), width), prefixes):
            cid = mv[i:i + _ID]
            b = buckets[prefix >> shift]
            j = b.find(cid)
            while j > 0 and j % rec:
                j = b.find(cid, j + 1)
            if j >= 0:
                continue
            b += mv[i:i + keep]
            if suffix:
                b += suffix
            n += 1
            if n > limit:
                self._n = n
                self._grow()
                buckets, shift, limit = self._buckets, self._shift, self.GROW_AT << self._bits
        self._n = n

    def reserve(self, n: int) -> None:
        """Make room for ``n`` records in all (buckets of ~512 bytes: 9 records of a location, 16 ids;
        a bucket is a 57-byte object besides), so that adding them never regroups."""
        bits, per = self._bits, max(1, 512 // self.rec)
        while n > per << bits:
            bits += 1
        if bits > self._bits:
            self._grow(bits)

    def _grow(self, bits: int | None = None) -> None:
        bits = bits or self._bits + 2
        shift = 32 - bits
        new = [bytearray() for _ in range(1 << bits)]
        rec = self.rec
        for b in self._buckets:
            for i in range(0, len(b), rec):
                new[int.from_bytes(b[i:i + 4], "big") >> shift] += b[i:i + rec]
        self._buckets, self._bits, self._shift = new, bits, shift

    def ids(self) -> Iterator[bytes]:
        rec = self.rec
        for b in self._buckets:
            for i in range(0, len(b), rec):
                yield bytes(b[i:i + _ID])

    def __iter__(self) -> Iterator[bytes]:
        return self.ids()


class IdSet(ChunkTable):
    """A set of chunk ids in 32 bytes each (against ~110 in a ``set`` of ``bytes``)."""

    def __init__(self, ids: Iterable[bytes] = ()):
        super().__init__(_ID)
        for cid in ids:
            self.add(cid)


_LOC = struct.Struct("<QIII")  # offset, length, raw length, pack number: a record's value


class Index:
    """The union of all index segments, in memory (compact: see the module's doc).

    ``pack_entries=False`` keeps only what looks chunks up (:meth:`get`, ``in``): the packs are
    listed (:attr:`packs`, for their epoch and size) without their entries. ``ids_only`` keeps only
    what tells whether a chunk is stored (``in``, :meth:`has_all`; not :meth:`get`), and so no pack
    entries either."""

    def __init__(self, *, pack_entries: bool = True, ids_only: bool = False):
        self.pack_entries, self.ids_only = pack_entries and not ids_only, ids_only
        self.packs: dict[str, PackInfo] = {}
        self.segments: dict[str, list[str]] = {}  # segment name -> pack ids
        self.damaged: dict[str, str] = {}  # segment name -> reason
        # segments not loaded: of an epoch the reader did not ask for, or of a crypto-shredded one
        self.other: dict[str, str] = {}  # segment name -> epoch
        self._table = ChunkTable(_ID if ids_only else _ENTRY.size + 4)  # segment entry | pack number (u32)
        self.has_all = self._table.has_all  # (called per file by an incremental backup: one call less)
        self._pack_ids: list[str] = []
        self._pack_no: dict[str, bytes] = {}

    def add_segment(self, name: str, epoch: str, packs: Iterable[PackInfo | tuple[str, int, memoryview]]) -> None:
        """Add a segment's packs: :class:`PackInfo` objects, or (pack id, size, packed entries) as
        :func:`segment_packs` yields them."""
        rows = [(p.pack_id, p.size, p.raw) if isinstance(p, PackInfo) else p for p in packs]
        self.segments[name] = [pid for pid, _size, _raw in rows]
        table, width = self._table, _ENTRY.size
        table.reserve(len(table) + sum(len(raw) // width for _pid, _size, raw in rows if raw is not None))
        for pid, size, raw in rows:
            if pid not in self.packs:
                self.packs[pid] = PackInfo(pid, epoch, size, raw if self.pack_entries else None)
            no = self._pack_no.get(pid)
            if no is None:
                no = self._pack_no[pid] = struct.pack("<I", len(self._pack_ids))
                self._pack_ids.append(pid)
            if raw is not None:
                table.add_records(raw, width, b"" if self.ids_only else no)

    def get(self, chunk_id: bytes) -> BlobRef | None:
        if self.ids_only:
            raise TypeError("an index of chunk ids alone does not locate chunks")
        at = self._table.locate(chunk_id)
        if at is None:
            return None
        off, length, raw, no = _LOC.unpack_from(*at)
        return BlobRef(self._pack_ids[no], off, length, raw)

    def __contains__(self, chunk_id: bytes) -> bool:
        return chunk_id in self._table

    def __len__(self) -> int:
        return len(self._table)

    def chunk_ids(self) -> Iterator[bytes]:
        """Every chunk id the index names (once)."""
        return self._table.ids()
