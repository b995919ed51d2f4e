"""Saving new data: the repository's one door for chunks (as restic's ``repo.SaveBlob``).

A backup hands the :class:`BlobSaver` its chunks in order; the saver hashes them (keyed chunk
ids), skips those already stored or saved earlier in this run, seals the rest with the epoch's
keys, packs and uploads them, and on :meth:`BlobSaver.finish` stores the one index segment that
names the new packs. Packs are written before that segment, and the segment before the caller
publishes its point: a crash leaves garbage for ``prune``, never a dangling reference.

Work runs on a pool of threads (hashing, zstd and the AEAD release the GIL): :meth:`save` returns
at once and ids land in submission order, at most ``workers * 3`` chunks in flight, one pack
uploading while the next fills. What it keeps per chunk saved is small: the id (32 bytes, in an
:class:`~.index.IdSet`) and the pack's 48-byte index entry.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Container
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from .crypto import EpochKeys
from .index import IdSet, PackInfo
from .pack import PackBuilder

if TYPE_CHECKING:
    from .repo import Repository


class BlobSaver:
    """Saves chunks of one epoch; a context manager that finishes on a clean exit.

    ``known`` holds the ids of chunks stored already (read only). After :meth:`finish`,
    ``chunks_total``, ``chunks_new`` and ``stored_bytes`` (packs and index segment) tell
    what was saved."""

    def __init__(self, repo: Repository, keys: EpochKeys, known: Container[bytes], *, workers: int):
        self.repo, self.keys, self.known = repo, keys, known
        self.chunks_total = self.chunks_new = self.stored_bytes = 0
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="chunk")
        self.uploads = ThreadPoolExecutor(2, thread_name_prefix="upload")
        self.window: deque[tuple[Future, list]] = deque()
        self.max_window = workers * 3
        self.claimed = IdSet()  # ids saved in this run (32 bytes each, not a set of bytes objects)
        self.claim_lock = threading.Lock()
        self.pack = PackBuilder(keys)
        self.pending_uploads: deque[Future] = deque()
        self.packs: list[PackInfo] = []
        self.finished = False

    def __enter__(self) -> BlobSaver:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            self.close()

    def _work(self, data: bytes):
        cid = self.keys.chunk_id(data)
        with self.claim_lock:
            if cid in self.known or not self.claimed.add(cid):  # (add: False when it was there)
                return cid, None, len(data)
        return cid, self.keys.seal_chunk(cid, data), len(data)

    def save(self, data: bytes, chunk_list: list) -> None:
        """Queue one chunk; its id (hex) is appended to ``chunk_list`` in the order of saving."""
        self.window.append((self.pool.submit(self._work, data), chunk_list))
        while len(self.window) > self.max_window:
            self._apply_one()

    def _apply_one(self) -> None:
        fut, chunk_list = self.window.popleft()
        cid, blob, raw_len = fut.result()
        chunk_list.append(cid.hex())
        self.chunks_total += 1
        if blob is not None:
            self.pack.add(cid, blob, raw_len)
            self.chunks_new += 1
            if self.pack.size >= self.repo.pack_target:
                self._flush_pack()

    def _flush_pack(self) -> None:
        if not len(self.pack):
            return
        builder, self.pack = self.pack, PackBuilder(self.keys)
        while len(self.pending_uploads) >= 1:  # one pack uploading while the next fills
            self._finish_upload(self.pending_uploads.popleft())
        self.pending_uploads.append(self.uploads.submit(self.repo.store_pack, builder))

    def _finish_upload(self, fut: Future) -> None:
        info = fut.result()
        self.packs.append(info)
        self.stored_bytes += info.size

    def drain(self) -> None:
        """Wait until every chunk saved so far has its id in its list."""
        while self.window:
            self._apply_one()

    def finish(self) -> None:
        """Store the last pack, wait for the uploads, then the index segment naming the new packs."""
        if self.finished:
            return
        self.drain()
        self._flush_pack()
        while self.pending_uploads:
            self._finish_upload(self.pending_uploads.popleft())
        if self.packs:
            self.stored_bytes += self.repo.write_index_segment(self.keys, self.packs)
        self.finished = True

    def close(self) -> None:
        for fut, _ in self.window:
            fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.uploads.shutdown(wait=True, cancel_futures=True)
        self.known = self.claimed = ()  # (the index, this run's ids and its packs' entries: not needed
        self.packs = []  # once the index segment is stored)
