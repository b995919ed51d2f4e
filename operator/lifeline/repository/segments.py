"""Log segments (``wal/...``): continuous protection's objects, one sealed object per segment.

A log segment (a PostgreSQL WAL file, or any closed append-only file) is small, arrives
every few seconds and is read back whole and in order, so it does not go through chunks,
packs and the index: each segment is one object, compressed and sealed with the
repository's *log epoch* key (an ordinary ``keys/<epoch>``, so rotation and shredding
treat it like any other epoch)::

    wal/epoch                   JSON, clear: {"epoch": <id>} — the epoch new segments use
    wal/<stream>/<name>         a segment (PostgreSQL: stream = timeline, 8 hex digits)
    wal/aux/<name>              anything else the log needs (timeline .history, .partial, .backup)

    object = "LLWAL001" | header length (u32 LE) | header (UTF-8 JSON) | sealed zstd(bytes)
    AAD of the sealed part = everything before it (the header is authenticated too)

The header names the stream, sequence number, name, size, keyed digest and close time, so
a fetch proves it got *the* segment it asked for (not another one renamed), and a listing
gives the exact missing range when the sequence has a hole. Repositories without ``wal/``
read as before; readers that predate it ignore it.
"""
from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import dataclass

import zstandard

from lifeline.errors import LifelineError

from .crypto import EpochKeys
from .errors import DamagedData, FormatError, ObjectNotFound, RepositoryExists, RetentionActive
from .layout import FORMAT_VERSION, key_name

WAL_DIR = "wal/"
WAL_EPOCH = "wal/epoch"
AUX_STREAM = "aux"
SEGMENT_MAGIC = b"LLWAL001"
PG_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_DIGITS = re.compile(r"(\d+)(?!.*\d)")
HEADER_PROBE = 4096


class SegmentNotFound(LifelineError):
    """No segment of that name: restore_command must fail fast so recovery ends cleanly."""

    exit_code = 5


class SegmentConflict(LifelineError):
    """A different segment is already stored under this name (archive_command must fail)."""

    exit_code = 8


@dataclass(frozen=True)
class SegmentName:
    """Where a segment sits in its log: stream (timeline) and sequence number."""

    name: str
    stream: str
    seq: int | None  # None for auxiliary files (history, partial, backup label)
    segment_size: int = 0

    @property
    def object_name(self) -> str:
        return f"{WAL_DIR}{self.stream}/{self.name}"


def pg_segments_per_id(segment_size: int) -> int:
    return 0x100000000 // segment_size


def parse_name(name: str, segment_size: int = 16 * 1024 * 1024) -> SegmentName:
    """A file name as a stream position. PostgreSQL WAL names are TTTTTTTTXXXXXXXXYYYYYYYY
    (timeline, log id, segment); any other name with a trailing counter is stream "0";
    everything else (``.history``, ``.partial``, ``.backup``) is auxiliary."""
    if "/" in name or name in ("", ".", "..") or name.startswith("."):
        raise LifelineError(f"{name!r} is not a segment file name")
    if PG_SEGMENT.match(name):
        if segment_size <= 0 or segment_size & (segment_size - 1):
            raise LifelineError(f"segment {name}: size {segment_size} is not a power of two "
                                "(a WAL segment is 1 MiB to 1 GiB); is the file complete?")
        per = pg_segments_per_id(segment_size)
        seq = int(name[8:16], 16) * per + int(name[16:24], 16)
        return SegmentName(name, name[:8], seq, segment_size)
    if re.match(r"^[0-9A-F]{8}\.history$|^[0-9A-F]{24}\.", name):
        return SegmentName(name, AUX_STREAM, None)
    m = _DIGITS.search(name)
    if m:
        return SegmentName(name, "0", int(m.group(1)))
    return SegmentName(name, AUX_STREAM, None)


def name_for(stream: str, seq: int, segment_size: int, like: str) -> str:
    """The file name of sequence ``seq`` in ``stream`` (to name a missing segment)."""
    if PG_SEGMENT.match(like):
        per = pg_segments_per_id(segment_size)
        return f"{stream}{seq // per:08X}{seq % per:08X}"
    m = _DIGITS.search(like)
    if m is None:
        return str(seq)
    digits = f"{seq:0{len(m.group(1))}d}"
    return like[:m.start()] + digits + like[m.end():]


def _aad_prefix(header: dict) -> bytes:
    hdr = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return SEGMENT_MAGIC + struct.pack("<I", len(hdr)) + hdr


def encode_segment(keys: EpochKeys, header: dict, data: bytes, level: int = 1) -> bytes:
    prefix = _aad_prefix(header)
    body = zstandard.ZstdCompressor(level=max(1, level)).compress(data)
    return prefix + keys.seal_object(body, prefix)


def decode_header(obj: str, data: bytes) -> tuple[dict, int]:
    """(header, offset of the sealed part); needs only the first bytes of the object."""
    n = len(SEGMENT_MAGIC)
    if len(data) < n + 4 or data[:n] != SEGMENT_MAGIC:
        raise DamagedData(f"segment {obj}: bad magic (not a lifeline segment)", obj=obj)
    (hlen,) = struct.unpack_from("<I", data, n)
    end = n + 4 + hlen
    if end > len(data):
        raise DamagedData(f"segment {obj}: truncated header", obj=obj)
    try:
        header = json.loads(data[n + 4:end])
    except ValueError:
        raise DamagedData(f"segment {obj}: header is not valid JSON", obj=obj) from None
    if not isinstance(header, dict):
        raise DamagedData(f"segment {obj}: header is not an object", obj=obj)
    if int(header.get("version", 0)) > FORMAT_VERSION:
        raise FormatError(f"segment {obj} uses format version {header.get('version')}: upgrade lifeline")
    return header, end


def open_segment(keys: EpochKeys, obj: str, data: bytes, expected: SegmentName) -> tuple[dict, bytes]:
    """Authenticate, decompress and check a segment against the name it was fetched by."""
    header, end = decode_header(obj, data)
    for field, want in (("name", expected.name), ("stream", expected.stream), ("seq", expected.seq)):
        if header.get(field) != want:
            raise DamagedData(f"segment {obj}: header says {field}={header.get(field)!r}, expected {want!r} "
                              "(an object was moved or replaced)", obj=obj)
    body = keys.open_object(data[end:], data[:end], f"segment {obj}")
    try:
        plain = zstandard.ZstdDecompressor().decompress(body, max_output_size=int(header.get("size", 0)) or 0)
    except zstandard.ZstdError as exc:
        raise DamagedData(f"segment {obj}: decompression failed: {exc}", obj=obj) from None
    if len(plain) != header.get("size") or keys.chunk_id(plain).hex() != header.get("digest"):
        raise DamagedData(f"segment {obj}: content does not match its header (size or digest)", obj=obj)
    return header, plain


@dataclass
class Gap:
    stream: str
    first: str  # first missing name
    last: str  # last missing name
    count: int
    after: str | None  # last good segment before the gap

    def describe(self) -> str:
        rng = self.first if self.count == 1 else f"{self.first}..{self.last}"
        return f"missing {self.count} segment(s) {rng}" + (f" after {self.after}" if self.after else "")


class SegmentStore:
    """Segments of one repository: log epoch, put (idempotent), fetch (verified), listing, gaps."""

    def __init__(self, repo, provider=None):
        self.repo = repo
        self.backend = repo.backend
        self.provider = provider

    # --- the log epoch ---------------------------------------------------------------
    def current_epoch(self) -> str | None:
        try:
            return json.loads(self.backend.get(WAL_EPOCH))["epoch"]
        except ObjectNotFound:
            return None
        except (ValueError, KeyError, TypeError):
            raise DamagedData("wal/epoch is damaged", obj=WAL_EPOCH) from None

    def log_keys(self, *, create: bool) -> EpochKeys:
        epoch = self.current_epoch()
        if epoch is None:
            if not create:
                raise SegmentNotFound(f"no log segments in {self.repo.url} yet")
            lock = self.repo.lock(exclusive=False, command="wal-push (new log epoch)", wait=30.0)
            try:
                keys = self.repo.new_epoch(self.provider)
                try:
                    self.backend.put(WAL_EPOCH, json.dumps({"epoch": keys.epoch_id}).encode(), exclusive=True)
                    return keys
                except RepositoryExists:  # another pusher won the race: use its epoch
                    try:
                        self.backend.delete(key_name(keys.epoch_id))
                    except RetentionActive:
                        pass  # an immutable repository's: an unused epoch key, prune deletes it later
                    epoch = self.current_epoch()
            finally:
                lock.release()
        return self.repo.epoch_keys(epoch, self.provider)

    # --- objects -------------------------------------------------------------------
    def read_header(self, obj: str) -> dict | None:
        try:
            data = self.backend.get_range(obj, 0, HEADER_PROBE)
        except ObjectNotFound:
            return None
        try:
            return decode_header(obj, data)[0]
        except DamagedData:
            data = self.backend.get(obj)
            return decode_header(obj, data)[0]

    def push(self, path: str, name: str | None = None, *, closed_at: float | None = None) -> dict:
        """Store one closed segment. Identical re-push: no-op; different bytes under the name: refused."""
        import os
        import socket

        name = name or os.path.basename(path)
        with open(path, "rb") as f:
            data = f.read()
        st = os.stat(path)
        sn = parse_name(name, len(data))
        keys = self.log_keys(create=True)
        digest = keys.chunk_id(data).hex()
        existing = self.read_header(sn.object_name)
        if existing is not None:
            same_epoch = existing.get("epoch") == keys.epoch_id
            other = keys if same_epoch else self.repo.epoch_keys(existing["epoch"], self.provider)
            if existing.get("digest") == (digest if same_epoch else other.chunk_id(data).hex()) \
                    and existing.get("size") == len(data):
                return {"name": name, "stored": False, "already": True, "size": len(data), "header": existing}
            raise SegmentConflict(f"a different segment is already stored as {name} in {self.repo.url}; "
                                  "refusing to overwrite it (two databases archiving to one repository?)")
        header = {
            "version": FORMAT_VERSION, "name": name, "stream": sn.stream, "seq": sn.seq,
            "segment_size": sn.segment_size, "size": len(data), "digest": digest, "epoch": keys.epoch_id,
            "closed_at": round(closed_at if closed_at is not None else st.st_mtime, 6),
            "pushed_at": round(time.time(), 6), "hostname": socket.gethostname(),
        }
        blob = encode_segment(keys, header, data, self.repo.zstd_level)
        self.backend.put(sn.object_name, blob)
        return {"name": name, "stored": True, "already": False, "size": len(data), "stored_bytes": len(blob),
                "header": header}

    def fetch(self, name: str) -> tuple[dict, bytes]:
        sn = parse_name(name)
        obj = sn.object_name
        try:
            data = self.backend.get(obj)
        except ObjectNotFound:
            raise SegmentNotFound(f"log segment {name} is not in {self.repo.url}") from None
        header, _ = decode_header(obj, data)
        if sn.seq is not None and header.get("segment_size") != sn.segment_size:
            sn = parse_name(name, int(header.get("segment_size") or 0))
        keys = self.repo.epoch_keys(header.get("epoch", ""), self.provider)
        return open_segment(keys, obj, data, sn)

    def list(self) -> dict[str, list[str]]:
        """Segment names per stream (sorted), auxiliary files under "aux"."""
        out: dict[str, list[str]] = {}
        for o in self.backend.list(WAL_DIR):
            parts = o.name.split("/")
            if len(parts) != 3:
                continue
            out.setdefault(parts[1], []).append(parts[2])
        for names in out.values():
            names.sort()
        return out

    def segment_size(self, stream: str, names: list[str]) -> int:
        if not names or not PG_SEGMENT.match(names[0]):
            return 0
        h = self.read_header(f"{WAL_DIR}{stream}/{names[0]}") or {}
        return int(h.get("segment_size") or 16 * 1024 * 1024)

    def positions(self, stream: str, names: list[str]) -> list[SegmentName]:
        size = self.segment_size(stream, names)
        return [parse_name(n, size) if size else parse_name(n) for n in names]

    def gaps(self, stream: str, names: list[str], start_seq: int | None = None) -> list[Gap]:
        """Holes in the sequence of ``stream`` (from ``start_seq`` when given)."""
        pos = [p for p in self.positions(stream, names) if p.seq is not None]
        pos.sort(key=lambda p: p.seq)
        out: list[Gap] = []
        prev: SegmentName | None = None
        if start_seq is not None:
            pos = [p for p in pos if p.seq >= start_seq]
            if pos and pos[0].seq > start_seq:
                like = pos[0]
                out.append(Gap(stream, name_for(stream, start_seq, like.segment_size, like.name),
                               name_for(stream, like.seq - 1, like.segment_size, like.name),
                               like.seq - start_seq, None))
        for p in pos:
            if prev is not None and p.seq > prev.seq + 1:
                out.append(Gap(stream, name_for(stream, prev.seq + 1, p.segment_size, p.name),
                               name_for(stream, p.seq - 1, p.segment_size, p.name), p.seq - prev.seq - 1, prev.name))
            prev = p
        return out
