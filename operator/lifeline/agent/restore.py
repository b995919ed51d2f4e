"""`lifeline agent restore`: rebuild a point's tree (or one stream) from its chunks.

Every chunk is authenticated (AES-GCM tag with the chunk id as AAD) and re-hashed
(keyed BLAKE3) before a byte of it is written. Runs of zero chunks become holes.

A restore to a directory touches nothing outside it, whatever the manifest says (a key holder
can forge one) or the target holds (links planted there): the manifest is checked before anything
is written (:mod:`.manifest_check`) and every file operation goes through :mod:`.beneath`.
"""
from __future__ import annotations

import base64
import errno
import grp
import os
import pwd
import queue
import stat
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from lifeline.errors import LifelineError, UsageError
from lifeline.repository.crypto import EpochKeys
from lifeline.repository.errors import DamagedData

from .manifest_check import SEGMENT, Plan, checked_plan
from .beneath import NOT_BENEATH, O_CLOEXEC, O_PATH, Beneath, chmod_node, remove_at, split
from .cores import usable_cores
from .progress import Progress
from .restore_writers import SharedStretches, WriterProcess

if TYPE_CHECKING:  # (a writer process imports this module, and needs neither)
    from lifeline.repository.index import Index
    from lifeline.repository.repo import Repository

_ZERO = bytes(16 * 1024 * 1024)
SPANS_AHEAD = 3  # spans of small files (up to 4 MiB each) read ahead of the ones being written
WRITERS_FROM = 20_000  # small files from which they may be written by writer processes (restore_writers)
WRITERS_AVERAGE = 512 << 10  # ... when they average at most this (DICOM-sized files; see _writer_count)


def _writer_count(small_files: int, small_bytes: int) -> int:
    """How many writer processes write the small files (0: a thread of this process does).
    ``LIFELINE_RESTORE_WRITERS`` sets it; else one a core (at most 4) for many tiny files: each
    writer costs ~30-50 MiB, which fewer or larger files do not pay back (measured: 8,000 files of
    a 1 GiB tree, no faster; 200,000 files of 2 KiB, 10.6 -> 8.5 s; 40,000 DICOM-like files of
    50-500 KiB, 38 -> 26 s)."""
    given = os.environ.get("LIFELINE_RESTORE_WRITERS", "").strip()
    if given:
        if not (given.isascii() and given.isdigit()) or int(given) > 64:
            raise UsageError(f"LIFELINE_RESTORE_WRITERS={given!r}: give a number of processes, 0 to 64")
        return int(given)
    if small_files < WRITERS_FROM or small_bytes > small_files * WRITERS_AVERAGE or not sys.executable:
        return 0
    return max(1, min(4, usable_cores()))


def _is_zero(data: bytes) -> bool:
    n = len(data)
    return n > 0 and data[0] == 0 and data[-1] == 0 and n <= len(_ZERO) and data == _ZERO[:n]


class Span:
    """Small files whose chunks lie close together in a few packs, restored as one task: the
    stretch of each pack that holds them is read with one ranged get, not one get a chunk (a tree
    of small files is mostly per-file overhead, and an object store's requests are its most
    expensive part).

    A backup writes a directory's small files into a pack one after the other, so a restore, which
    goes through the tree in the same order, meets their chunks in runs; an incremental's changed
    files lie in a pack of their own, one here and there among the others, which is why a span
    reads from up to :attr:`MAX_PACKS` packs (with one, a 1 % change cut the spans of a 200,000-file
    tree to ~50 files each, ten times more tasks). A file joins the span when its chunks all fit:
    the span reads at most :attr:`MAX_BYTES` in all, and at least half of what it reads from each
    pack is wanted (chunks shared with other points may lie between)."""

    MAX_BYTES = SharedStretches.SLOT  # (4 MiB: a span's stretches fit one slot of them)
    MAX_FILES = 512
    MAX_PACKS = 4

    def __init__(self):
        self.stretches: dict[str, tuple[int, int, int]] = {}  # pack id -> (lo, hi, bytes wanted)
        self.read_bytes = 0  # over the stretches
        self.items: list = []  # (entry, [(chunk id, index entry)])
        self.data: dict[str, bytes] = {}  # pack id -> its stretch, once read
        self.slot: int | None = None  # its slot of the shared stretches, while it has one

    def takes(self, refs: list) -> bool:
        """Whether a file with chunks at ``refs`` (index entries) fits; if so it is counted in."""
        if len(self.items) >= self.MAX_FILES or None in refs:
            return False
        if len(refs) == 1:  # (most small files: the same rules, for one chunk, without the dicts)
            return self._takes_one(refs[0])
        return self._takes_many(refs)

    def _takes_many(self, refs: list) -> bool:
        stretches, grown = self.stretches, {}
        total = self.read_bytes
        for r in refs:
            end = r.offset + r.length
            s = grown.get(r.pack_id) or stretches.get(r.pack_id)
            if s is None:
                lo, hi, wanted = r.offset, end, r.length
                total += r.length
            else:
                lo, hi, wanted = s
                total -= hi - lo
                lo, hi, wanted = min(lo, r.offset), max(hi, end), wanted + r.length
                total += hi - lo
            grown[r.pack_id] = (lo, hi, wanted)
        if total > self.MAX_BYTES or len(stretches) + sum(p not in stretches for p in grown) > self.MAX_PACKS:
            return False
        if stretches and any(2 * wanted < hi - lo for lo, hi, wanted in grown.values()):
            return False
        stretches.update(grown)
        self.read_bytes = total
        return True

    def _takes_one(self, r) -> bool:
        s = self.stretches.get(r.pack_id)
        end = r.offset + r.length
        if s is None:
            if len(self.stretches) >= self.MAX_PACKS or self.read_bytes + r.length > self.MAX_BYTES:
                return False
            self.stretches[r.pack_id] = (r.offset, end, r.length)
            self.read_bytes += r.length
            return True
        lo, hi, wanted = s
        new_lo, new_hi, wanted = min(lo, r.offset), max(hi, end), wanted + r.length
        total = self.read_bytes - (hi - lo) + (new_hi - new_lo)
        if total > self.MAX_BYTES or 2 * wanted < new_hi - new_lo:
            return False
        self.stretches[r.pack_id] = (new_lo, new_hi, wanted)
        self.read_bytes = total
        return True

    def read(self, repo: Repository) -> None:
        """Read the stretches; one that cannot be read is left out: its chunks are read one by one,
        which names the damage."""
        for pack, (lo, hi, _wanted) in self.stretches.items():
            try:
                data = repo.read_blob(pack, lo, hi - lo)
            except LifelineError:
                continue
            if len(data) == hi - lo:
                self.data[pack] = data

    def _within(self, ref) -> bool:
        """Whether ``ref`` lies in its pack's stretch, read."""
        if ref.pack_id not in self.data:
            return False
        lo, hi, _wanted = self.stretches[ref.pack_id]
        return lo <= ref.offset <= hi - ref.length

    def blob(self, ref) -> bytes | None:
        if not self._within(ref):
            return None
        lo = self.stretches[ref.pack_id][0]
        return self.data[ref.pack_id][ref.offset - lo:ref.offset - lo + ref.length]

    def sealed(self, repo: Repository, shared: SharedStretches | None = None) -> dict[str, bytes | str | tuple]:
        """Each chunk's sealed bytes by id, or why they could not be read: each stretch in one get,
        or, when it cannot be read, one get a chunk (which names the damage). With ``shared``, the
        stretches are copied into a slot of it (kept in :attr:`slot` until given back), and a
        chunk in them is named by (start, length) there, not copied."""
        self.read(repo)
        out: dict[str, bytes | str | tuple] = {}
        starts: dict[str, int] = {}  # pack id -> where its stretch starts in the shared memory
        if shared is not None and self.data:
            self.slot = shared.take()
            at = 0
            for pack, data in self.data.items():
                starts[pack] = shared.put(self.slot, at, data) - self.stretches[pack][0]
                at += len(data)
        for _entry, chunks in self.items:
            for cid, ref in chunks:
                if cid in out:
                    continue
                start = starts.get(ref.pack_id)
                if start is not None and self._within(ref):
                    out[cid] = (start + ref.offset, ref.length)
                    continue
                blob = self.blob(ref)
                if blob is None:
                    try:
                        blob = repo.read_blob(ref.pack_id, ref.offset, ref.length)
                    except LifelineError as exc:
                        blob = f"cannot read pack {ref.pack_id}: {exc}"
                if not isinstance(blob, str) and len(blob) != ref.length:
                    blob = f"pack {ref.pack_id} is truncated"
                out[cid] = blob
        self.data = {}
        return out


class ChunkFetcher:
    """Fetches and opens chunks on a thread pool with a small cache for repeats."""

    def __init__(self, repo: Repository, keys: EpochKeys, index: Index, *, workers: int = 4,
                 cache_bytes: int = 32 * 1024 * 1024):
        self.repo, self.keys, self.index = repo, keys, index
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="fetch")
        self.cache: OrderedDict[str, bytes] = OrderedDict()
        self.cache_bytes = cache_bytes
        self.cached = 0
        self.inflight: dict[str, Future] = {}

    def _load(self, cid_hex: str, ref=None) -> bytes:
        """The chunk's bytes (``ref``: its index entry, if the caller looked it up already)."""
        cid = bytes.fromhex(cid_hex)
        ref = ref or self.index.get(cid)
        if ref is None:
            raise DamagedData("chunk is missing from the repository index", chunk=cid_hex)
        try:
            blob = self.repo.read_blob(ref.pack_id, ref.offset, ref.length)
        except LifelineError as exc:
            raise DamagedData(f"cannot read pack {ref.pack_id}: {exc}", chunk=cid_hex) from None
        if len(blob) != ref.length:
            raise DamagedData(f"pack {ref.pack_id} is truncated", chunk=cid_hex)
        return self.keys.open_chunk(cid, blob, ref.raw_len)

    def request(self, cid_hex: str) -> Future:
        fut = self.inflight.get(cid_hex)
        if fut is not None:
            return fut
        data = self.cache.get(cid_hex)
        if data is not None:
            self.cache.move_to_end(cid_hex)
            fut = Future()
            fut.set_result(data)
            return fut
        fut = self.pool.submit(self._load, cid_hex)
        self.inflight[cid_hex] = fut
        return fut

    def done(self, cid_hex: str, fut: Future) -> None:
        if self.inflight.get(cid_hex) is fut:
            del self.inflight[cid_hex]
            if fut.exception() is None:
                data = fut.result()
                if len(data) <= self.cache_bytes // 4:
                    self.cache[cid_hex] = data
                    self.cached += len(data)
                    while self.cached > self.cache_bytes:
                        _k, v = self.cache.popitem(last=False)
                        self.cached -= len(v)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class UnsafeRestore(LifelineError):
    """The target holds something in the way that a restore must not write through or replace."""

    exit_code = 1


SPECIAL_BITS = 0o7000  # setuid, setgid, sticky: restored only when asked (special_bits)
SET_ID_BITS = 0o6000  # setuid, setgid: dropped too when the owner could not be restored (as tar does)
ACLS = ("system.posix_acl_access", "system.posix_acl_default")  # POSIX ACLs, as extended attributes
ROOT_ONLY_XATTRS = ("trusted.", "security.")  # restored only as root


def _times(e: dict) -> tuple[int, int]:
    """(atime, mtime) in ns; a version 2 entry has no atime: the mtime stands for it."""
    m = e["mtime_ns"]
    return e.get("atime_ns", m), m


class Restorer:
    def __init__(self, repo: Repository, provider, point_id: str, *, skip_damaged: bool = False,
                 progress: Progress | None = None, workers: int | None = None):
        self.repo = repo
        self.point_id = point_id
        # the tree is kept compressed and read entry by entry (twice for a directory: see Plan)
        self.header, self.entries, self.keys = repo.open_point(point_id, provider)
        self.skip_damaged = skip_damaged
        self.progress = progress or Progress("restore", enabled=False)
        self.workers = workers or max(4, min(16, 4 * usable_cores()))  # fetchers: they wait on storage
        self.damaged: list[dict] = []
        self.is_root = os.geteuid() == 0
        self.euid, self.egid = os.geteuid(), os.getegid()
        self.shared: memoryview | None = None  # the shared stretches, while small files are written

    def _index(self) -> Index:
        """The point's epoch's index (epoch keys opened by open_point; only lookups are needed, not
        the packs' entries)."""
        return self.repo.load_index(epochs={self.keys.epoch_id}, pack_entries=False)

    # --- small files, here or in a writer process (restore_writers) ---------------------
    def _writer_settings(self, b: Beneath) -> dict:
        """What a writer needs to write as this restore does (``b``: its resolver, the same as ours)."""
        return {"keys": self.keys.handover(), "point_id": self.point_id, "skip_damaged": self.skip_damaged,
                "overwrite": self.overwrite, "devices": self.devices, "numeric_owner": self.numeric_owner,
                "mode_mask": self.mode_mask, "target": self._target, "is_root": self.is_root,
                "openat2": b.openat2}

    @classmethod
    def writer(cls, keys: EpochKeys, settings: dict) -> "Restorer":
        """A restorer that only writes small files (in a writer process): no storage, no tree."""
        r = cls.__new__(cls)
        r.keys, r.point_id, r.skip_damaged = keys, settings["point_id"], settings["skip_damaged"]
        r.overwrite, r.devices, r.numeric_owner = settings["overwrite"], settings["devices"], settings["numeric_owner"]
        r.mode_mask, r._target = settings["mode_mask"], settings["target"]
        r.is_root = settings["is_root"]  # (what the main process decided: root, or told not to act as root)
        r.euid, r.egid = os.geteuid(), os.getegid()
        r._owners, r._lock = {}, threading.Lock()
        r.damaged, r.skipped, r._root_only = [], [], {}
        r.shared = None
        return r

    def take_records(self) -> dict:
        """What was found damaged or left out since the last call (a writer's, for the main process)."""
        records = {"damaged": self.damaged, "skipped": self.skipped, "root_only": self._root_only}
        self.damaged, self.skipped, self._root_only = [], [], {}
        return records

    def write_small(self, b: Beneath, files: list, sealed: dict, zero_ids: set) -> dict:
        """Write ``files`` ((entry, its hard links, [(chunk id, length)])) whole, each with its
        attributes, from ``sealed`` (chunk id -> sealed bytes, or why they could not be read).

        A damaged file is removed; with ``skip_damaged`` it is listed and the others go on, else
        nothing more is written and ``stop`` is the error that ends the restore."""
        done = written = nbytes = 0  # (done: names, links included; written: files)
        for e, links, chunks in files:
            exc = self._write_small_file(b, e, links, chunks, sealed, zero_ids)
            if exc is None:
                written += 1
                done += 1 + len(links)
                nbytes += e.get("size", 0)
                continue
            if not self.skip_damaged:
                return {"files": done, "written": written, "bytes": nbytes, "stop": self._stopped(e["path"], exc)}
            self._record_damage(e["path"], links, exc)
        return {"files": done, "written": written, "bytes": nbytes, "stop": None}

    def _write_small_file(self, b: Beneath, e: dict, links, chunks, sealed: dict, zero_ids: set):
        """One file of :meth:`write_small`; the DamagedData that kept it from being written, or None."""
        rel = e["path"]
        fd = self._create_file(b, rel)
        made: list[str] = []  # its hard links, once made
        try:
            pos = end = 0
            for cid, raw_len in chunks:
                if cid not in zero_ids:
                    blob = sealed.get(cid, "chunk was not read")
                    if blob.__class__ is tuple:  # (where it lies in the shared stretches)
                        blob = self.shared[blob[0]:blob[0] + blob[1]]
                    elif isinstance(blob, str):
                        raise DamagedData(blob, chunk=cid)
                    data = self.keys.open_chunk(bytes.fromhex(cid), blob, raw_len)
                    if _is_zero(data):
                        zero_ids.add(cid)
                    else:
                        end = _write_sparse(fd, data, pos)
                pos += raw_len
            if end != e.get("size", 0):  # trailing hole (or a file that was longer)
                os.ftruncate(fd, e.get("size", 0))
            for other in links:  # from the written data, before the owner and mode are set
                self._link(b, fd, e, other)
                made.append(other)
            self._apply_fd_meta(fd, e, 0o644)
        except BaseException as exc:
            os.close(fd)
            for gone in (rel, *made):  # only what this restore created is removed
                try:
                    b.unlink(gone)
                except OSError:
                    pass
            if isinstance(exc, DamagedData):
                return exc
            raise
        os.close(fd)
        return None

    def _stopped(self, path: str, exc: DamagedData) -> DamagedData:
        """The error that stops a restore (without ``skip_damaged``) at a damaged chunk of ``path``."""
        return DamagedData(f"point {self.point_id}, file {path!r}: chunk {exc.chunk or '?'} is damaged ({exc}); "
                           "restore stopped. Re-run with --skip-damaged to restore every undamaged file",
                           chunk=exc.chunk)

    def _record_damage(self, path: str, links, exc: DamagedData) -> None:
        """List a damaged file, and its hard links, which share its data (``skip_damaged``)."""
        with self._lock:
            self.damaged.append({"point": self.point_id, "path": path, "chunk": exc.chunk, "error": str(exc)})
            self.damaged.extend({"point": self.point_id, "path": rel, "chunk": exc.chunk,
                                 "error": f"a hard link to {path!r}, which is damaged"} for rel in links)

    def _damage(self, path: str, exc: DamagedData) -> None:
        if not self.skip_damaged:
            raise self._stopped(path, exc)
        self._record_damage(path, (), exc)

    # --- the chunk stream shared by both modes -------------------------------------------
    def _stream(self, files: list[dict]):
        """Yield (file index, chunk index, data or DamagedData) in order, prefetching ahead."""
        fetcher = ChunkFetcher(self.repo, self.keys, self.repo_index, workers=self.workers)
        window: deque = deque()
        ahead = self.workers * 4
        try:
            jobs = ((fi, ci, cid) for fi, e in enumerate(files) for ci, cid in enumerate(e.get("chunks", ())))
            for job in jobs:
                window.append((job, fetcher.request(job[2])))
                if len(window) > ahead:
                    yield self._pop(fetcher, window)
            while window:
                yield self._pop(fetcher, window)
        finally:
            fetcher.close()

    @staticmethod
    def _pop(fetcher: ChunkFetcher, window: deque):
        (fi, ci, cid), fut = window.popleft()
        try:
            data = fut.result()
        except DamagedData as exc:
            data = exc
        fetcher.done(cid, fut)
        return fi, ci, data

    # --- to a directory ------------------------------------------------------------
    def to_directory(self, target: str, includes: list[str] | None = None, *, overwrite: bool = False,
                     special_bits: bool = False, devices: bool = False, numeric_owner: bool = False) -> dict:
        """Files are restored in parallel (creating files is slow on many filesystems):
        small files are one task each; large files are split into segments written with
        pwrite at their offsets; whoever finishes a file's last segment finalizes it.

        Nothing is created, written, chmod-ed, chown-ed or removed outside ``target``: every
        operation is relative to a descriptor of it, through no symbolic link (:mod:`.beneath`).
        A target that holds anything (``lost+found`` aside) is refused unless ``overwrite``; then
        what is in the way of an entry is removed (a link itself, never what it points to) and
        replaced, never written through. setuid/setgid/sticky bits come back only with
        ``special_bits``, device nodes only with ``devices`` (as root); what was left out is
        listed in the summary's ``skipped``.

        Attributes (see docs/repository-format.md, "Attributes"): as root, owners by name when the
        name exists here, else by id (``numeric_owner``: by id always); extended attributes and ACLs
        (``trusted.*``/``security.*`` only as root; what the target filesystem refuses is listed, not
        fatal); access and modification times to the nanosecond; the names of a hard-linked file as
        links to one inode; directories' own attributes last, after their contents."""
        start = time.time()
        index: list[Index] = []  # (loaded while the helper checks the tree's second half, if one does)
        plan = checked_plan(self.entries, self.point_id, includes, meanwhile=lambda: index.append(self._index()))
        if includes and plan.wanted <= 1:
            raise UsageError(f"none of {', '.join(includes)} is in this recovery point")
        self.overwrite, self.devices, self.numeric_owner = overwrite, devices, numeric_owner
        self._owners: dict[tuple, tuple[int, int]] = {}
        self._root_only: dict[str, int] = {}  # trusted.*/security.* names left out (not root) -> entries
        self.mode_mask = 0o7777 if special_bits else 0o0777
        self.skipped: list[dict] = []
        self._lock = threading.Lock()
        target = os.path.abspath(target)
        self._target = target
        root = _open_target(target)
        try:
            if not overwrite:
                _refuse_non_empty(root, target)
            self.repo_index = index[0] if index else self._index()
            done = self._to_directory(Beneath(root), plan)
        finally:
            os.close(root)
        if self._root_only:  # one note, not one per file: an SELinux host labels every file
            self.skipped.append({"path": "", "what": f"{sum(self._root_only.values())} trusted.*/security.* "
                                 "extended attribute(s) not restored: only root restores them",
                                 "names": sorted(self._root_only)})
        self.damaged.sort(key=lambda d: d["path"])
        self.skipped.sort(key=lambda d: d["path"])
        return {
            "point_id": self.point_id,
            "target": target,
            "files": done["files"],
            "bytes": done["bytes"],
            "damaged": self.damaged,
            "skipped": self.skipped,
            "small_file_writers": done["writers"],  # processes that wrote the small files (0: a thread)
            "duration_seconds": round(time.time() - start, 3),
        }

    def _start_writers(self, b: Beneath, n: int) -> tuple[list[WriterProcess], SharedStretches | None]:
        """``n`` writer processes and the memory they share with us (None where there is none to
        share), or no writers where they cannot start (a pod's process limit, no memory): then one
        thread of this process writes the small files (the summary says 0) and nothing is shared."""
        if not n:
            return [], None
        procs: list[WriterProcess] = []
        shared = SharedStretches.make(SPANS_AHEAD + n)
        settings = self._writer_settings(b)
        try:
            for _ in range(n):
                procs.append(WriterProcess(b.root, settings, shared.fd if shared is not None else None))
        except BaseException as exc:  # (Ctrl-C while they start, among others: raised once all is closed)
            for proc in procs:
                proc.close()
            if shared is not None:
                shared.close()
            if isinstance(exc, OSError):
                return [], None
            raise
        return procs, shared

    def _to_directory(self, b: Beneath, plan: Plan) -> dict:
        nwriters = _writer_count(plan.small, plan.small_bytes)  # (a bad setting: before anything is made)
        index = self.repo_index
        links, stand_ins = plan.links(self.entries)
        self.progress.files_total = plan.files
        self.progress.bytes_total = plan.bytes
        dirs = plan.dirs
        for d in sorted((d for d in dirs if d["path"]), key=lambda d: d["path"].count("/")):
            try:
                b.mkdir(d["path"], replace=self.overwrite)
            except OSError as exc:
                raise self._refusal(b, d["path"], exc) from None

        fetcher = ChunkFetcher(self.repo, self.keys, index, workers=1)
        fetcher.pool.shutdown()
        zero_ids: set[str] = set()
        stop = threading.Event()
        lock = self._lock
        done = {"files": 0, "bytes": 0, "writers": 0}
        first_error: list[DamagedData] = []
        slots = threading.BoundedSemaphore(self.workers * 4)

        class FileJob:
            __slots__ = ("entry", "rel", "fd", "remaining", "failed", "error", "end", "links")

            def __init__(self, entry, nseg):
                self.entry, self.rel, self.fd = entry, entry["path"], None
                self.remaining, self.failed, self.error = nseg, False, None
                self.end = 0  # highest offset written so far
                self.links = links.get(self.rel, ())  # the file's other names: hard links to it

        def finalize(job: FileJob) -> None:
            e = job.entry
            if job.failed or stop.is_set():
                if job.fd is not None:  # only what this restore created is removed
                    os.close(job.fd)
                    try:
                        b.unlink(job.rel)
                    except OSError:
                        pass
                if job.error is not None:
                    self._record_damage(e["path"], job.links, job.error)
                return
            fd = job.fd
            try:
                if job.end != e.get("size", 0):  # trailing hole (or a file that was longer)
                    os.ftruncate(fd, e.get("size", 0))
                for rel in job.links:  # from the written data, before the owner and mode are set
                    self._link(b, fd, e, rel)
                self._apply_fd_meta(fd, e, 0o644)
            finally:
                os.close(fd)
            with lock:
                done["files"] += 1 + len(job.links)
                done["bytes"] += e.get("size", 0)
            self.progress.files_done += 1

        def run(job: FileJob, chunks: list, pos: int) -> None:
            try:
                if job.fd is None:
                    job.fd = self._create_file(b, job.rel)
                for cid, ref in chunks:
                    if stop.is_set() or job.failed:
                        break
                    n = ref.raw_len if ref is not None else 0
                    if cid not in zero_ids:
                        try:
                            data = fetcher._load(cid, ref)
                        except DamagedData as exc:
                            job.failed, job.error = True, exc
                            if not self.skip_damaged:
                                with lock:
                                    first_error.append(self._stopped(job.entry["path"], exc))
                                stop.set()
                            break
                        if _is_zero(data):
                            zero_ids.add(cid)
                        else:
                            wrote_to = _write_sparse(job.fd, data, pos)
                            with lock:
                                job.end = max(job.end, wrote_to)
                        n = len(data)
                    pos += n
                    self.progress.bytes_done += n
            except BaseException:
                job.failed = True
                stop.set()
                raise
            finally:
                with lock:
                    job.remaining -= 1
                    last = job.remaining == 0
                if last:
                    finalize(job)

        def task(job: FileJob, chunks: list, pos: int) -> None:
            try:
                run(job, chunks, pos)
            finally:
                slots.release()

        def span_task(span: Span, read: Future) -> None:
            try:
                sealed = read.result()
                if stop.is_set():
                    return
                files = [(e, links.get(e["path"], ()), [(cid, ref.raw_len) for cid, ref in chunks])
                         for e, chunks in span.items]
                proc = idle.get()
                try:
                    if proc is None:
                        answer = self.write_small(b, files, sealed, zero_ids)
                    else:
                        answer = proc.call((files, sealed))
                finally:
                    idle.put(proc)
                with lock:
                    done["files"] += answer["files"]
                    done["bytes"] += answer["bytes"]
                    self.damaged.extend(answer.get("damaged", ()))
                    self.skipped.extend(answer.get("skipped", ()))
                    for name, n in answer.get("root_only", {}).items():
                        self._root_only[name] = self._root_only.get(name, 0) + n
                self.progress.files_done += answer["written"]
                self.progress.bytes_done += answer["bytes"]
                if "raise" in answer:
                    raise answer["raise"]
                if answer["stop"] is not None:
                    with lock:
                        first_error.append(answer["stop"])
                    stop.set()
            except BaseException:
                stop.set()
                raise
            finally:
                if span.slot is not None:  # (its writer answered, or never will)
                    shared.give(span.slot)
                    span.slot = None
                span_slots.release()

        def files():
            """The files to write, in the tree's order (read again), stand-ins at their links' places."""
            for e in self.entries:
                t = e["type"]
                if t == "file":
                    if plan.selected is None or plan.selected(e["path"]):
                        yield e
                elif t == "hardlink" and e["path"] in stand_ins:
                    yield stand_ins[e["path"]]

        # Large files' segments are written by `workers` threads. Small files are written span by
        # span while the next spans are read: by writer processes when there are many
        # (restore_writers says why), else by one thread (threads taking turns at the GIL, which
        # each system call gives up, wait longer than they write: 200,000 files, 8 threads 18 s,
        # one 10.6 s).
        procs, shared = self._start_writers(b, nwriters)
        done["writers"] = len(procs)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="restore")
        readers = ThreadPoolExecutor(SPANS_AHEAD, thread_name_prefix="restore-read")
        writer = ThreadPoolExecutor(max(1, len(procs)), thread_name_prefix="restore-small")
        span_slots = threading.BoundedSemaphore(SPANS_AHEAD + max(1, len(procs)))  # read or being written
        idle: queue.SimpleQueue = queue.SimpleQueue()
        for proc in procs or [None]:
            idle.put(proc)
        futures = []
        span = Span()

        def submit(fn, *args) -> None:
            slots.acquire()
            futures.append(pool.submit(fn, *args))

        def submit_span(span: Span) -> None:
            span_slots.acquire()
            futures.append(writer.submit(span_task, span, readers.submit(span.sealed, self.repo, shared)))

        try:
            for e in files():
                if stop.is_set():
                    break
                chunks = e.get("chunks", [])
                if len(chunks) <= SEGMENT:  # a small file: with its neighbours in the packs if it can
                    seg = [(cid, index.get(bytes.fromhex(cid))) for cid in chunks]
                    refs = [ref for _cid, ref in seg]
                    if not span.takes(refs):
                        if span.items:
                            submit_span(span)
                            span = Span()
                        if not span.takes(refs):  # (a chunk missing, or spread too wide: on its own)
                            submit(task, FileJob(e, 1), seg, 0)
                            continue
                    span.items.append((e, seg))
                    continue
                segs = [chunks[i:i + SEGMENT] for i in range(0, len(chunks), SEGMENT)]
                job = FileJob(e, len(segs))
                job.fd = self._create_file(b, job.rel)
                pos = 0
                for seg in segs:
                    seg = [(cid, index.get(bytes.fromhex(cid))) for cid in seg]  # (looked up once)
                    submit(task, job, seg, pos)
                    for _cid, ref in seg:
                        pos += ref.raw_len if ref is not None else 0
                if len(futures) > 4096:
                    futures = [f for f in futures if not f.done() or f.exception()]
            if span.items and not stop.is_set():
                submit_span(span)
        except BaseException:
            stop.set()  # (what is queued is not written: the error, or Ctrl-C, stops the restore)
            raise
        finally:
            pool.shutdown(wait=True)
            writer.shutdown(wait=True)
            readers.shutdown(wait=True)
            for proc in procs:
                proc.close()
            if shared is not None:
                shared.close()
        for f in futures:
            if f.exception() is not None:
                raise f.exception()
        if first_error:
            raise first_error[0]

        specials = plan.specials
        if plan.more_specials:  # too many to keep from the first pass: read again
            specials = (e for e in self.entries if e["type"] not in ("file", "dir", "hardlink")
                        and (plan.selected is None or plan.selected(e["path"])))
        for e in specials:  # (hard links were made with their file)
            self._make_special(b, e)
        for d in sorted(dirs, key=lambda d: d["path"].count("/") if d["path"] else -1, reverse=True):
            self._dir_meta(b, d)
        return done

    def _link(self, b: Beneath, fd: int, e: dict, rel: str) -> None:
        """Make ``rel`` another name of the file open as ``fd`` (restored for ``e``): a hard link to
        that very inode (through its /proc descriptor link, so nothing at a path is linked), or,
        where the target refuses hard links, a copy of its data, listed in ``skipped``."""
        try:
            with b.parent(rel) as (pfd, name):
                for attempt in (0, 1):
                    try:
                        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=pfd, follow_symlinks=True)
                        return
                    except FileExistsError:
                        if not self.overwrite or attempt:
                            raise
                        remove_at(pfd, name)  # a link itself, never what it points to
                    except OSError as exc:  # EPERM, EMLINK, EXDEV (a mount in the target), no /proc...
                        why = exc
                        break
        except OSError as exc:
            raise self._refusal(b, rel, exc) from None
        self._copy_instead(b, fd, e, rel, why)

    def _copy_instead(self, b: Beneath, fd: int, e: dict, rel: str, why: OSError) -> None:
        try:
            src = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | O_CLOEXEC)  # the same inode, to read
        except OSError as exc:
            with self._lock:
                self.damaged.append({"point": self.point_id, "path": rel, "chunk": None,
                                     "error": f"cannot make a hard link to {e['path']!r} ({why.strerror}) nor "
                                              f"a copy of it ({exc.strerror})"})
            return
        try:
            dst = self._create_file(b, rel)
            try:
                pos = 0
                while data := os.pread(src, 1 << 20, pos):
                    _write_sparse(dst, data, pos)
                    pos += len(data)
                os.ftruncate(dst, pos)
                self._apply_fd_meta(dst, {**e, "path": rel}, 0o644)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self._skip(rel, f"restored as a copy, not a hard link: the target refuses hard links ({why.strerror})",
                   link_to=e["path"])

    # --- to a byte stream ---------------------------------------------------------
    def to_stream(self, out, path: str | None = None) -> dict:
        start = time.time()
        self.repo_index = self._index()
        files: list[dict] = []
        if path is not None:
            want = path.strip("/")
            want = next((e["target"] for e in self.entries if e["type"] == "hardlink" and e["path"] == want), want)
            files = [e for e in self.entries if e["type"] == "file" and e["path"] == want]
            if not files:
                raise UsageError(f"{path!r} is not a file in point {self.point_id}")
        else:
            count = 0
            for e in self.entries:
                if e["type"] == "file":
                    count += 1
                    if not files:
                        files.append(e)
            if count != 1:
                raise UsageError(f"point {self.point_id} holds {count} files; restoring to stdout needs "
                                 "one: pick it with --path")
        self.progress.files_total = 1
        self.progress.bytes_total = files[0].get("size", 0)
        n = 0
        for _fi, _ci, data in self._stream(files[:1]):
            if isinstance(data, DamagedData):
                self.skip_damaged = False
                self._damage(files[0]["path"], data)
            out.write(data)
            n += len(data)
            self.progress.bytes_done = n
        out.flush()
        self.progress.files_done = 1
        return {"point_id": self.point_id, "target": "-", "files": 1, "bytes": n, "damaged": [],
                "duration_seconds": round(time.time() - start, 3)}

    # --- creation and metadata, all beneath the target ------------------------------------
    def _skip(self, path: str, what: str, **extra) -> None:
        with self._lock:
            self.skipped.append({"path": path, "what": what, **extra})

    def _mode(self, e: dict, default: int) -> int:
        mode = e.get("mode", default)
        if mode & SPECIAL_BITS & ~self.mode_mask:
            self._skip(e["path"], "setuid/setgid/sticky bits not restored (--special-bits restores them)",
                       mode=f"{mode & 0o7777:04o}")
        return mode & self.mode_mask

    def _owner(self, e: dict) -> tuple[int, int]:
        """The (uid, gid) to give ``e``: by name when the name exists here (and not ``numeric_owner``),
        else the recorded id (-1: leave as is)."""
        key = (e.get("uid", -1), e.get("gid", -1), e.get("user"), e.get("group"))
        ids = self._owners.get(key)
        if ids is None:
            uid, gid, user, group = key
            if not self.numeric_owner:
                if user is not None:
                    try:
                        uid = pwd.getpwnam(user).pw_uid
                    except KeyError:
                        pass
                if group is not None:
                    try:
                        gid = grp.getgrnam(group).gr_gid
                    except KeyError:
                        pass
            ids = self._owners[key] = (uid, gid)
        return ids

    def _chown(self, e: dict, mode: int, chown, *, made_here: bool = True) -> int:
        """As root, give ``e`` its owner with ``chown(uid, gid)``; the mode to set then: without
        setuid/setgid when the owner could not be given (as tar does), which is listed."""
        if not self.is_root:
            return mode
        uid, gid = self._owner(e)
        if made_here and (uid, gid) == (self.euid, self.egid):
            return mode
        try:
            chown(uid, gid)
        except OSError as exc:
            dropped = mode & SET_ID_BITS
            self._skip(e["path"], f"owner not restored ({exc.strerror})" +
                       ("; its setuid/setgid bits were dropped with it" if dropped else ""),
                       uid=uid, gid=gid)
            return mode & ~SET_ID_BITS
        return mode

    def _set_xattrs(self, target, e: dict, *, follow: bool = True) -> None:
        """Set ``e``'s extended attributes (ACLs among them) on ``target``, a descriptor or a path
        (``follow``: False for a symlink's own). What is not set is listed, not fatal."""
        left_out: dict[str, list[str]] = {}
        for name, value in e["xattrs"].items():
            if not self.is_root and name.startswith(ROOT_ONLY_XATTRS):
                with self._lock:
                    self._root_only[name] = self._root_only.get(name, 0) + 1
                continue
            try:
                os.setxattr(target, name, base64.b64decode(value), follow_symlinks=follow)
            except OSError as exc:
                what = "ACL" if name in ACLS else "extended attribute"
                left_out.setdefault(f"{what} not restored: the target refuses it ({exc.strerror})", []).append(name)
        for what, names in left_out.items():
            self._skip(e["path"], what, names=names)

    def _apply_fd_meta(self, fd: int, e: dict, default_mode: int, *, made_here: bool = True) -> None:
        """Owner (as root), mode, extended attributes and ACLs, then times: on the descriptor, never
        by path. Something this restore made is already owned by its user: chown only when the entry
        says otherwise. The mode after chown, which clears setuid/setgid; the attributes after both
        (chown clears file capabilities; an ACL and the mode's group bits agree as recorded)."""
        mode = self._chown(e, self._mode(e, default_mode), lambda u, g: os.fchown(fd, u, g), made_here=made_here)
        os.fchmod(fd, mode)
        if "xattrs" in e:
            self._set_xattrs(fd, e)
        if "mtime_ns" in e:
            os.utime(fd, ns=_times(e))

    def _create_file(self, b: Beneath, rel: str) -> int:
        try:
            return b.create_file(rel, replace=self.overwrite)
        except OSError as exc:
            raise self._refusal(b, rel, exc) from None

    def _refusal(self, b: Beneath, rel: str, exc: OSError) -> Exception:
        """The error to raise for ``exc`` met while restoring ``rel``: what is in the way, named."""
        where = os.path.join(self._target, rel)
        if exc.errno in NOT_BENEATH:
            found = b.obstacle(rel)
            what = (f"{found[0]!r} in the target is {found[1]}" if found else
                    "its path in the target goes through a symbolic link or a file")
            hint = ("; --overwrite replaces only what is in the way of an entry of the point"
                    if self.overwrite else "")
            return UnsafeRestore(f"refusing to restore {rel!r} into {self._target}: {what}; a restore never "
                                 f"writes through a link{hint}")
        if exc.errno == errno.EEXIST:
            return UnsafeRestore(f"refusing to restore {rel!r}: {where} already exists (was the target changed "
                                 "during the restore?); without --overwrite nothing is replaced")
        exc.filename = where
        return exc

    def _dir_meta(self, b: Beneath, e: dict) -> None:
        try:
            fd = b.open_dir(e["path"], os.O_RDONLY)
        except PermissionError:  # a directory that was there (--overwrite) and may not be read
            fd = None
        except OSError as exc:
            raise self._refusal(b, e["path"], exc) from None
        if fd is not None:
            try:  # with --overwrite the directory may have been there, owned by someone else
                self._apply_fd_meta(fd, e, 0o755, made_here=False)
            finally:
                os.close(fd)
            return
        try:
            fd = b.open_dir(e["path"], O_PATH)
        except OSError as exc:
            raise self._refusal(b, e["path"], exc) from None
        try:  # the descriptor's /proc link leads to the directory itself, whatever is at its path now
            proc = f"/proc/self/fd/{fd}"
            os.chmod(proc, self._chown(e, self._mode(e, 0o755), lambda u, g: os.chown(proc, u, g), made_here=False))
            if "xattrs" in e:
                self._set_xattrs(proc, e)
            if "mtime_ns" in e:
                os.utime(proc, ns=_times(e))
        finally:
            os.close(fd)

    def _make_special(self, b: Beneath, e: dict) -> None:
        rel, t = e["path"], e["type"]
        if t == "socket":
            return self._skip(rel, "sockets are not recreated (a program makes its socket when it starts)")
        if t in ("chardev", "blockdev"):
            if not self.devices:
                return self._skip(rel, "device nodes are not created (--devices creates them, as root)")
            if not self.is_root:
                return self._skip(rel, "device nodes are not created: only root can make them")
        elif t not in ("symlink", "fifo"):
            return self._skip(rel, f"entries of type {t!r} are not restored")
        head, name = split(rel)
        try:
            pfd = b.open_dir(head) if head else None
        except OSError as exc:
            raise self._refusal(b, rel, exc) from None
        try:
            self._create_special(pfd if pfd is not None else b.root, name, e)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise self._refusal(b, rel, exc) from None
            self.damaged.append({"point": self.point_id, "path": rel, "chunk": None,
                                 "error": f"cannot create {t}: {exc.strerror or exc}"})
        finally:
            if pfd is not None:
                os.close(pfd)

    def _create_special(self, dfd: int, name: str, e: dict) -> None:
        """Make a symlink, fifo or device node ``name`` in the directory ``dfd``, then its metadata;
        a link made here is never followed (metadata with AT_SYMLINK_NOFOLLOW)."""
        t = e["type"]
        kind = {"fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}.get(t)
        for attempt in (0, 1):
            try:
                if t == "symlink":
                    os.symlink(e["target"], name, dir_fd=dfd)
                elif t == "fifo":
                    os.mkfifo(name, 0o600, dir_fd=dfd)
                else:
                    os.mknod(name, kind | 0o600, e.get("rdev", 0), dir_fd=dfd)
                break
            except FileExistsError:
                if not self.overwrite or attempt:
                    raise
                remove_at(dfd, name)  # a link itself, never what it points to
        if t == "fifo":  # opening a fifo to read without blocking: a descriptor for its metadata
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | O_CLOEXEC, dir_fd=dfd)
            try:
                if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                    raise OSError(errno.EEXIST, "replaced during the restore", name)
                self._apply_fd_meta(fd, e, 0o644)
            finally:
                os.close(fd)
            return
        mode = self._chown(e, self._mode(e, 0o600) if t != "symlink" else 0,
                           lambda u, g: os.chown(name, u, g, dir_fd=dfd, follow_symlinks=False))
        if t != "symlink":
            chmod_node(dfd, name, mode, kind)
        if "xattrs" in e:  # the entry's own (a link's too): its name in the directory's /proc link
            self._set_xattrs(f"/proc/self/fd/{dfd}/{name}", e, follow=False)
        if "mtime_ns" in e:
            try:
                os.utime(name, ns=_times(e), dir_fd=dfd, follow_symlinks=False)
            except (OSError, NotImplementedError):
                pass


def _open_target(target: str) -> int:
    """The target directory's descriptor, made if missing; a symbolic link there is refused."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        os.makedirs(target, exist_ok=True)
        st = os.lstat(target)
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"restore target {target} is a symbolic link (to {os.readlink(target)!r}): a restore "
                         f"never writes through a link; give the directory itself ({os.path.realpath(target)})")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"restore target {target} exists and is not a directory")
    try:
        return os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | O_CLOEXEC)
    except OSError as exc:
        if exc.errno in NOT_BENEATH:
            raise UsageError(f"restore target {target} is no longer a directory (replaced by a link?)") from None
        raise


def _refuse_non_empty(root: int, target: str) -> None:
    """UsageError when the target holds anything but a ``lost+found`` directory (a new filesystem's)."""
    names = sorted(os.listdir(root))
    if "lost+found" in names:
        try:
            if stat.S_ISDIR(os.stat("lost+found", dir_fd=root, follow_symlinks=False).st_mode):
                names.remove("lost+found")
        except FileNotFoundError:
            names.remove("lost+found")
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UsageError(f"restore target {target} is not empty ({len(names)} entries: {shown}): nothing was "
                         "written; restore into an empty or new directory, or with --overwrite to replace what "
                         "is in the way (links there are replaced, never written through)")


_HOLE = 64 * 1024
_ZERO_BLOCK = bytes(_HOLE)


def _write_sparse(fd: int, data: bytes, pos: int) -> int:
    """Write data at pos, leaving 64 KiB blocks of zeros as holes; return the end of
    the last byte range actually written (the caller truncates up to the file size)."""
    # Any 64 KiB run of zeros covers a byte at a multiple of 32 KiB: sample those first.
    if len(data) < 2 * _HOLE or 0 not in data[::_HOLE // 2] or _ZERO_BLOCK not in data:
        _pwrite_all(fd, data, pos)
        return pos + len(data)
    mv = memoryview(data)
    start = None  # start of the pending non-zero run
    end = pos
    for off in range(0, len(data), _HOLE):
        block = mv[off:off + _HOLE]
        if len(block) == _HOLE and block == _ZERO_BLOCK:
            if start is not None:
                _pwrite_all(fd, mv[start:off], pos + start)
                end = pos + off
                start = None
        elif start is None:
            start = off
    if start is not None:
        _pwrite_all(fd, mv[start:], pos + start)
        end = pos + len(data)
    return end


def _pwrite_all(fd: int, data, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n
