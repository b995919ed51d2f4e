"""Saving new data: the repository's one door for chunks (as restic's ``repo.SaveBlob``).

A backup hands the :class:`BlobSaver` its chunks in order; the saver hashes them (keyed chunk
ids), skips those already stored or saved earlier in this run, seals the rest with the epoch's
keys, packs and uploads them, and on :meth:`BlobSaver.finish` stores the one index segment that
names the new packs. Packs are written before that segment, and the segment before the caller
publishes its point: a crash leaves garbage for ``prune``, never a dangling reference.

Work runs on a pool of threads (hashing, zstd and the AEAD release the GIL): :meth:`save` returns
at once and ids land in submission order, at most ``workers * 3`` chunks in flight, one pack
uploading while the next fills. Small files go by the batch (:meth:`save_small`): a worker reads a
batch of them whole and saves each as one chunk, so a tree of many small files costs one hand-off
per batch, not one per file, and a cold disk serves several reads at once. What it keeps per chunk saved is small: the id (32 bytes, in an
:class:`~.index.IdSet`) and the pack's 48-byte index entry.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Container
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
        self.window: deque[tuple[Future, list | Callable]] = deque()  # (work, its ids' list or a batch's sink)
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
        self._queue(self.pool.submit(self._work, data), chunk_list)

    def save_small(self, jobs: list, read: Callable, limit: int, sink: Callable) -> None:
        """Queue a batch of small things, each read whole by ``read(job)`` in a worker and saved as one
        chunk (none if empty). In the order of saving, ``sink(job, chunk_id_hex | None, size, data, error)``
        is called for each in this thread: ``size`` is the bytes read, ``data`` what was read when it
        came out longer than ``limit`` (not saved: the caller chunks it, see :meth:`save_now`),
        ``error`` an ``OSError`` the read raised (nothing saved)."""
        self._queue(self.pool.submit(self._work_batch, jobs, read, limit), sink)

    def save_now(self, data: bytes) -> str:
        """Save one chunk in this thread and return its id (hex); for the rare piece that cannot wait."""
        cid, blob, raw_len = self._work(data)
        self._add(cid, blob, raw_len)
        return cid.hex()

    def _work_batch(self, jobs: list, read: Callable, limit: int) -> list:
        out = []
        for job in jobs:
            try:
                data = read(job)
            except OSError as exc:
                out.append((job, None, None, 0, None, exc))
                continue
            if len(data) > limit:
                out.append((job, None, None, len(data), data, None))
            elif data:
                out.append((job, *self._work(data), None, None))
            else:
                out.append((job, None, None, 0, None, None))
        return out

    def _queue(self, fut: Future, sink) -> None:
        self.window.append((fut, sink))
        while len(self.window) > self.max_window:
            self._apply_one()

    def _apply_one(self) -> None:
        fut, sink = self.window.popleft()
        if type(sink) is list:
            cid, blob, raw_len = fut.result()
            sink.append(cid.hex())
            self._add(cid, blob, raw_len)
            return
        for job, cid, blob, raw_len, data, error in fut.result():
            if cid is not None:
                self._add(cid, blob, raw_len)
            sink(job, cid.hex() if cid is not None else None, raw_len, data, error)

    def _add(self, cid: bytes, blob, raw_len: int) -> None:
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
