"""`lifeline agent restore`: rebuild a point's tree (or one stream) from its chunks.

Every chunk is authenticated (AES-GCM tag with the chunk id as AAD) and re-hashed
(keyed BLAKE3) before a byte of it is written. Runs of zero chunks become holes.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor

from lifeline.repository.crypto import EpochKeys
from lifeline.repository.errors import DamagedData, LifelineError, UsageError
from lifeline.repository.index import Index
from lifeline.repository.repo import Repository

from .progress import Progress

_ZERO = bytes(16 * 1024 * 1024)
SEGMENT = 8  # chunks per restore task (~8 MiB): large files are written by several threads


def _is_zero(data: bytes) -> bool:
    n = len(data)
    return n > 0 and data[0] == 0 and data[-1] == 0 and n <= len(_ZERO) and data == _ZERO[:n]


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

    def _load(self, cid_hex: str) -> bytes:
        cid = bytes.fromhex(cid_hex)
        ref = self.index.get(cid)
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


def _safe_rel(path: str) -> str:
    parts = path.split("/") if path else []
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise DamagedData(f"manifest holds an unsafe path {path!r}")
    return path


def _selected(entries: list[dict], includes: list[str] | None) -> list[dict]:
    if not includes:
        return entries
    inc = [i.strip("/") for i in includes]
    wanted = []
    for e in entries:
        p = e["path"]
        if any(p == i or p.startswith(i + "/") or i.startswith(p + "/") or p == "" for i in inc):
            wanted.append(e)
    if len(wanted) <= 1:
        raise UsageError(f"none of {', '.join(includes)} is in this recovery point")
    return wanted


class Restorer:
    def __init__(self, repo: Repository, provider, point_id: str, *, skip_damaged: bool = False,
                 progress: Progress | None = None, workers: int | None = None):
        self.repo = repo
        self.point_id = point_id
        self.header, self.entries, self.keys = repo.load_point(point_id, provider)
        self.skip_damaged = skip_damaged
        self.progress = progress or Progress("restore", enabled=False)
        self.workers = workers or max(4, min(16, 4 * (os.cpu_count() or 2)))
        self.damaged: list[dict] = []
        self.is_root = os.geteuid() == 0
        self.euid, self.egid = os.geteuid(), os.getegid()

    def _damage(self, path: str, exc: DamagedData) -> None:
        rec = {"point": self.point_id, "path": path, "chunk": exc.chunk, "error": str(exc)}
        if not self.skip_damaged:
            raise DamagedData(f"point {self.point_id}, file {path!r}: chunk {exc.chunk or '?'} is damaged "
                              f"({exc}); restore stopped. Re-run with --skip-damaged to restore every "
                              "undamaged file", chunk=exc.chunk)
        self.damaged.append(rec)

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
    def to_directory(self, target: str, includes: list[str] | None = None) -> dict:
        """Files are restored in parallel (creating files is slow on many filesystems):
        small files are one task each; large files are split into segments written with
        pwrite at their offsets; whoever finishes a file's last segment finalizes it."""
        start = time.time()
        self.repo_index = index = self.repo.load_index()
        target = os.path.abspath(target)
        if os.path.exists(target) and not os.path.isdir(target):
            raise UsageError(f"restore target {target} exists and is not a directory")
        os.makedirs(target, exist_ok=True)
        entries = _selected(self.entries, includes)
        for e in entries:
            _safe_rel(e["path"])
        files = [e for e in entries if e["type"] == "file"]
        self.progress.files_total = len(files)
        self.progress.bytes_total = sum(e.get("size", 0) for e in files)
        dirs = [e for e in entries if e["type"] == "dir"]
        for d in dirs:
            os.makedirs(os.path.join(target, d["path"]), exist_ok=True)

        fetcher = ChunkFetcher(self.repo, self.keys, index, workers=1)
        fetcher.pool.shutdown()
        zero_ids: set[str] = set()
        stop = threading.Event()
        lock = threading.Lock()
        done = {"files": 0, "bytes": 0}
        first_error: list[DamagedData] = []
        slots = threading.BoundedSemaphore(self.workers * 4)

        class FileJob:
            __slots__ = ("entry", "path", "fd", "remaining", "failed", "error", "end")

            def __init__(self, entry, path, nseg):
                self.entry, self.path, self.fd = entry, path, None
                self.remaining, self.failed, self.error = nseg, False, None
                self.end = 0  # highest offset written so far

        def finalize(job: FileJob) -> None:
            e = job.entry
            if job.failed or stop.is_set():
                if job.fd is not None:
                    os.close(job.fd)
                try:
                    os.unlink(job.path)
                except FileNotFoundError:
                    pass
                if job.error is not None:
                    with lock:
                        self.damaged.append({"point": self.point_id, "path": e["path"],
                                             "chunk": job.error.chunk, "error": str(job.error)})
                return
            fd = job.fd
            try:
                if job.end != e.get("size", 0):  # trailing hole (or a file that was longer)
                    os.ftruncate(fd, e.get("size", 0))
                self._apply_file_meta(fd, e)
            finally:
                os.close(fd)
            os.utime(job.path, ns=(e["mtime_ns"], e["mtime_ns"]))
            with lock:
                done["files"] += 1
                done["bytes"] += e.get("size", 0)
            self.progress.files_done += 1

        def run(job: FileJob, chunks: list, pos: int) -> None:
            try:
                if job.fd is None:
                    job.fd = _open_for_write(job.path)
                for cid in chunks:
                    if stop.is_set() or job.failed:
                        break
                    ref = index.get(bytes.fromhex(cid))
                    n = ref.raw_len if ref is not None else 0
                    if cid not in zero_ids:
                        try:
                            data = fetcher._load(cid)
                        except DamagedData as exc:
                            job.failed, job.error = True, exc
                            if not self.skip_damaged:
                                with lock:
                                    first_error.append(DamagedData(
                                        f"point {self.point_id}, file {job.entry['path']!r}: chunk {cid} is "
                                        f"damaged ({exc}); restore stopped. Re-run with --skip-damaged to "
                                        "restore every undamaged file", chunk=cid))
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
                try:
                    if last:
                        finalize(job)
                finally:
                    slots.release()

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="restore")
        futures = []
        try:
            for e in files:
                if stop.is_set():
                    break
                chunks = e.get("chunks", [])
                path = os.path.join(target, e["path"])
                segs = [chunks[i:i + SEGMENT] for i in range(0, len(chunks), SEGMENT)] or [[]]
                job = FileJob(e, path, len(segs))
                if len(segs) > 1:
                    job.fd = _open_for_write(path)
                pos = 0
                for seg in segs:
                    slots.acquire()
                    futures.append(pool.submit(run, job, seg, pos))
                    for cid in seg:
                        ref = index.get(bytes.fromhex(cid))
                        pos += ref.raw_len if ref is not None else 0
                if len(futures) > 4096:
                    futures = [f for f in futures if not f.done() or f.exception()]
        finally:
            pool.shutdown(wait=True)
        for f in futures:
            if f.exception() is not None:
                raise f.exception()
        if first_error:
            raise first_error[0]

        for e in entries:
            if e["type"] not in ("file", "dir"):
                self._make_special(target, e)
        for d in sorted(dirs, key=lambda d: d["path"].count("/") if d["path"] else -1, reverse=True):
            p = os.path.join(target, d["path"]) if d["path"] else target
            self._apply_path_meta(p, d)
        self.damaged.sort(key=lambda d: d["path"])
        return {
            "point_id": self.point_id,
            "target": target,
            "files": done["files"],
            "bytes": done["bytes"],
            "damaged": self.damaged,
            "duration_seconds": round(time.time() - start, 3),
        }

    # --- to a byte stream ---------------------------------------------------------
    def to_stream(self, out, path: str | None = None) -> dict:
        start = time.time()
        self.repo_index = self.repo.load_index()
        files = [e for e in self.entries if e["type"] == "file"]
        if path is not None:
            files = [e for e in files if e["path"] == path.strip("/")]
            if not files:
                raise UsageError(f"{path!r} is not a file in point {self.point_id}")
        elif len(files) != 1:
            raise UsageError(f"point {self.point_id} holds {len(files)} files; restoring to stdout needs "
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
        return {"point_id": self.point_id, "target": "-", "files": 1, "bytes": n, "damaged": [],
                "duration_seconds": round(time.time() - start, 3)}

    # --- metadata ---------------------------------------------------------------------
    def _apply_file_meta(self, fd: int, e: dict) -> None:
        if self.is_root and (e.get("uid"), e.get("gid")) != (self.euid, self.egid):
            try:
                os.fchown(fd, e.get("uid", -1), e.get("gid", -1))
            except OSError:
                pass
        os.fchmod(fd, e.get("mode", 0o644))

    def _apply_path_meta(self, path: str, e: dict) -> None:
        if self.is_root:
            try:
                os.lchown(path, e.get("uid", -1), e.get("gid", -1))
            except OSError:
                pass
        if e["type"] != "symlink":
            os.chmod(path, e.get("mode", 0o755))
        try:
            os.utime(path, ns=(e["mtime_ns"], e["mtime_ns"]), follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass

    def _make_special(self, target: str, e: dict) -> None:
        path = os.path.join(target, e["path"])
        _remove_if_exists(path)
        t = e["type"]
        try:
            if t == "symlink":
                os.symlink(e["target"], path)
            elif t == "fifo":
                os.mkfifo(path, e.get("mode", 0o644))
            elif t in ("chardev", "blockdev") and self.is_root:
                kind = stat.S_IFCHR if t == "chardev" else stat.S_IFBLK
                os.mknod(path, kind | e.get("mode", 0o600), e.get("rdev", 0))
            else:
                return  # sockets (and devices when not root) are not recreated
        except OSError as exc:
            self.damaged.append({"point": self.point_id, "path": e["path"], "chunk": None,
                                 "error": f"cannot create {t}: {exc.strerror}"})
            return
        self._apply_path_meta(path, e)


def _remove_if_exists(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def _open_for_write(path: str) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
            _remove_if_exists(path)
            return os.open(path, flags, 0o600)
        raise


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
