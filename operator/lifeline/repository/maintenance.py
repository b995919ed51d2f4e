"""Maintenance primitives: a pack's directory read without the index, sealed blobs copied into new
packs, and index segments replaced (for ``lifeline agent repack`` and ``rebuild-index``,
:mod:`lifeline.agent.repack`). The storage format is unchanged (docs/repository-format.md).

Whoever changes packs or the index goes in the one order that keeps ``kill -9`` harmless:

1. new packs (each put is atomic; until a segment names one, it is garbage ``prune`` deletes);
2. the index segments that name the new packs and every pack that stays;
3. the old index segments;
4. the old packs, last.

A crash between any two steps leaves duplicates (two segments naming a pack, two packs holding a
blob) or garbage (a pack no segment names), never a chunk that no index names or a segment whose
only copy of a blob is gone. Readers merge duplicates (:class:`~.index.Index` keeps the first).

A sealed blob is bound to its epoch and chunk id (the AEAD's AAD), not to its pack or offset, so it
moves to a new pack of its epoch as it is: nothing is decrypted to copy it, though repack
authenticates each blob it copies before the original may go.
"""
from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from .backend import Backend
from .crypto import EpochKeys
from .errors import DamagedData
from .index import PackInfo
from .layout import PACK_END_MAGIC, pack_name
from .pack import DIR_RECORD, HEADER_LEN, TRAILER_LEN, PackBuilder, directory_aad, pack_epoch

if TYPE_CHECKING:
    from .repo import Repository

# One ranged read of a pack's tail usually holds its whole directory (56 bytes a blob: ~1,100 blobs).
TAIL_PROBE = 64 * 1024
# Entries per index segment written here (~40 bytes each before compression): far below
# index.MAX_SEGMENT_BYTES, so a segment of a large epoch never grows past what readers accept.
SEGMENT_MAX_ENTRIES = 1_000_000


def read_pack_info(backend: Backend, pack_id: str, size: int,
                   keys_for: Callable[[str], EpochKeys]) -> PackInfo:
    """A pack's blob list from the pack alone: its clear header names the epoch, whose key
    (``keys_for(epoch)``, which may raise ShreddedEpoch) opens the sealed directory. Reads the
    header and the tail (two or three ranged reads), not the blobs. Raises DamagedData naming
    the pack when anything does not hold."""
    name = pack_name(pack_id)

    def damaged(why: str) -> DamagedData:
        return DamagedData(f"pack {name}: {why}", obj=name)

    if size < HEADER_LEN + TRAILER_LEN:
        raise damaged(f"{size} bytes, too short for a pack")
    head = backend.get_range(name, 0, HEADER_LEN)
    epoch = pack_epoch(head)
    if epoch is None:
        raise damaged("bad header (not a lifeline pack)")
    tail_len = min(size - HEADER_LEN, TAIL_PROBE)
    tail = backend.get_range(name, size - tail_len, tail_len)
    if len(tail) != tail_len:
        raise damaged(f"shorter than its listed size {size}")
    if tail[-len(PACK_END_MAGIC):] != PACK_END_MAGIC:
        raise damaged("bad trailer (truncated, or not a lifeline pack)")
    (dlen,) = struct.unpack("<I", tail[-TRAILER_LEN:-len(PACK_END_MAGIC)])
    dir_start = size - TRAILER_LEN - dlen
    if dir_start < HEADER_LEN:
        raise damaged(f"bad directory length {dlen}")
    if dlen + TRAILER_LEN <= tail_len:
        sealed = tail[tail_len - TRAILER_LEN - dlen:tail_len - TRAILER_LEN]
    else:
        sealed = backend.get_range(name, dir_start, dlen)
        if len(sealed) != dlen:
            raise damaged("shorter than its listed size")
    keys = keys_for(epoch)
    plain = keys.open_object(sealed, directory_aad(keys.epoch_raw, pack_id), f"pack {name}: directory")
    if len(plain) % DIR_RECORD.size:
        raise damaged("bad directory (not a whole number of records)")
    entries = [DIR_RECORD.unpack_from(plain, i) for i in range(0, len(plain), DIR_RECORD.size)]
    for cid, off, length, _raw in entries:
        if off < HEADER_LEN or off + length > dir_start:
            raise damaged(f"directory puts blob {cid.hex()} outside the pack's blob area")
    return PackInfo(pack_id, epoch, size, entries)


class PackWriter:
    """New packs of copied sealed blobs, at the repository's pack target, one epoch at a time (a
    change of epoch, or :meth:`finish`, stores the pack being filled). One pack uploads while the
    next fills. :attr:`packs` lists the stored ones; nothing names them until an index segment does."""

    def __init__(self, repo: Repository):
        self.repo = repo
        self.builder: PackBuilder | None = None
        self.packs: list[PackInfo] = []
        self.blobs = 0
        self._uploads = ThreadPoolExecutor(1, thread_name_prefix="repack-upload")
        self._pending: deque[Future] = deque()

    def add(self, keys: EpochKeys, chunk_id: bytes, blob, raw_len: int) -> None:
        if self.builder is not None and self.builder.keys.epoch_id != keys.epoch_id:
            self.flush()
        if self.builder is None:
            self.builder = PackBuilder(keys)
        self.builder.add(chunk_id, blob, raw_len)
        self.blobs += 1
        if self.builder.size >= self.repo.pack_target:
            self.flush()

    def flush(self) -> None:
        builder, self.builder = self.builder, None
        if builder is None or not len(builder):
            return
        while self._pending:  # one upload in flight
            self.packs.append(self._pending.popleft().result())
        self._pending.append(self._uploads.submit(self.repo.store_pack, builder))

    def finish(self) -> list[PackInfo]:
        self.flush()
        while self._pending:
            self.packs.append(self._pending.popleft().result())
        return self.packs

    def close(self) -> None:
        self._uploads.shutdown(wait=True, cancel_futures=True)


def write_index(repo: Repository, provider, packs: Iterable[PackInfo]) -> tuple[int, int]:
    """Store authenticated segments naming ``packs``: one per epoch (more for an epoch of over
    :data:`SEGMENT_MAX_ENTRIES` blobs). Returns (segments written, bytes)."""
    by_epoch: dict[str, list[PackInfo]] = {}
    for info in packs:
        by_epoch.setdefault(info.epoch, []).append(info)
    count = size = 0
    for epoch, infos in sorted(by_epoch.items()):
        keys = repo.epoch_keys(epoch, provider)
        batch: list[PackInfo] = []
        entries = 0
        for info in infos:
            if batch and entries + len(info.entries) > SEGMENT_MAX_ENTRIES:
                size += repo.write_index_segment(keys, batch)
                count += 1
                batch, entries = [], 0
            batch.append(info)
            entries += len(info.entries)
        if batch:
            size += repo.write_index_segment(keys, batch)
            count += 1
    return count, size
