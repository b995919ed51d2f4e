"""`lifeline agent backup`: read a source, store new chunks, publish a point last.

Order of writes (what makes ``kill -9`` harmless):

1. ``keys/<epoch>`` (only for a full backup, which opens a new key epoch);
2. packs, each written atomically;
3. one index segment naming the new packs (after all packs are stored);
4. ``points/<id>`` — the commit. Until it exists the backup does not exist;
   whatever 1–3 left behind is reported by ``check`` and removed by ``prune``;
5. ``head``, the catalogue head, with the point added (under the head lock, see
   :mod:`lifeline.repository.catalogue`): a crash before it leaves a point the head does
   not list yet, which ``check`` notes and the next ``prune`` records.
"""
from __future__ import annotations

import base64
import os
import secrets
import shlex
import socket
import stat
import subprocess
import sys
import time
from collections import deque
from collections.abc import Container, Iterator
from dataclasses import dataclass, field

from lifeline.errors import LifelineError, UsageError
from lifeline.repository import catalogue
from lifeline.repository.blob_saver import BlobSaver
from lifeline.repository.chunker import Chunker
from lifeline.repository.crypto import EpochKeys
from lifeline.repository.index import IdSet
from lifeline.repository.layout import key_name
from lifeline.repository.manifest import POINT_VERSION
from lifeline.repository.repo import PointRef, Repository, ShreddedEpoch, rfc3339
from lifeline.repository.tree import Tree, TreeWriter

from .attributes import Attributes, file_head
from .beneath import NOT_BENEATH, Beneath, without_atime
from .cores import usable_cores
from .parent_cursor import ParentCursor, reused_chunks
from .progress import Progress
from .read_ahead import FIELDS, ReadAhead, listed_stat

TYPES = ("full", "incremental", "differential")


class SourceError(LifelineError):
    exit_code = 2


class PartialBackup(LifelineError):
    """The point was published but some files could not be read."""

    exit_code = 7


# --- sources ---------------------------------------------------------------------------
@dataclass
class Source:
    kind: str  # "dir" | "stdin" | "command"
    name: str  # identity used to find the parent point
    path: str | None = None  # dir
    command: list[str] | None = None
    stream_name: str = "stdin"

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name}


def dir_source(path: str, name: str | None = None) -> Source:
    p = os.path.abspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise SourceError(f"source directory {p} does not exist") from None
    except PermissionError:
        raise SourceError(f"source directory {p} is not accessible (permission denied)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"source {p} is not a directory (to back up one file's bytes use --stdin < {p})")
    if not os.access(p, os.R_OK | os.X_OK):
        raise SourceError(f"source directory {p} is not readable by this user (uid {os.geteuid()})")
    return Source("dir", name or p, path=p)


def stream_source(kind: str, *, command: str | None = None, name: str | None = None,
                  stream_name: str | None = None) -> Source:
    if kind == "command":
        try:
            argv = shlex.split(command or "")
        except ValueError as exc:
            raise UsageError(f"--command: {exc}") from None
        if not argv:
            raise UsageError("--command is empty")
        return Source("command", name or command, command=argv,
                      stream_name=stream_name or (os.path.basename(argv[0]) + ".out"))
    return Source("stdin", name or "stdin", stream_name=stream_name or "stdin")


def _open_source(files: Beneath, rel: str) -> int:
    """A file of the source, opened for reading (the one place a backup opens one), ``rel`` resolved
    beneath the source's descriptor with no symbolic link on the way. The walk saw a regular file;
    if a link or a FIFO took its place since, or one of its directories became a link (to the Job's
    token, to another tenant's volume), it is refused, not followed or waited on: someone who can
    write to the source must not make the agent store a file from outside it."""
    try:
        return files.open_file(rel)
    except OSError as exc:
        if exc.errno in NOT_BENEATH:
            raise OSError(exc.errno, "it or a directory on its path was replaced by a link (or a file) since "
                          "the walk; not followed") from None
        raise


def read_small(files: Beneath, rel: str, size: int, limit: int) -> bytes:
    """A small file whole: one read if it still has the ``size`` the walk saw (asking for a byte
    more tells it is at the end); reads on to the end of file if it grew, shrank or a read came short,
    but never past ``limit + 1`` bytes (a file that grew past the limit is for the caller to stream)."""
    fd = _open_source(files, rel)
    try:
        data = os.read(fd, size + 1)
        if len(data) != size:
            parts = [data]
            got = len(data)
            while got <= limit and (more := os.read(fd, limit + 1 - got)):
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


# --- scanning ----------------------------------------------------------------------------
def _entry_for(rel: str, st: os.stat_result, full: str, attrs: Attributes) -> dict:
    mode = st.st_mode
    e = {"path": rel, "mode": stat.S_IMODE(mode), "uid": st.st_uid, "gid": st.st_gid,
         "mtime_ns": st.st_mtime_ns, "atime_ns": st.st_atime_ns}
    user, group = attrs.user(st.st_uid), attrs.group(st.st_gid)
    if user is not None:
        e["user"] = user
    if group is not None:
        e["group"] = group
    if stat.S_ISREG(mode):
        e.update(type="file", size=st.st_size, ino=st.st_ino, ctime_ns=st.st_ctime_ns)
    elif stat.S_ISDIR(mode):
        e["type"] = "dir"
    elif stat.S_ISLNK(mode):
        e["type"] = "symlink"
        e["target"] = os.readlink(full)
    elif stat.S_ISFIFO(mode):
        e["type"] = "fifo"
    elif stat.S_ISCHR(mode):
        e.update(type="chardev", rdev=st.st_rdev)
    elif stat.S_ISBLK(mode):
        e.update(type="blockdev", rdev=st.st_rdev)
    elif stat.S_ISSOCK(mode):
        e["type"] = "socket"
    else:
        e["type"] = "unknown"
    xattrs, complete = attrs.xattrs(rel, full, st.st_dev)
    if xattrs:
        e["xattrs"] = xattrs
    if not complete:  # (not copied as text by the next backup, which reads them again)
        e["xattrs_incomplete"] = True
    return e


class FileStat:
    """A regular file as the walk saw it, its entry not made yet: an incremental backup compares
    :meth:`text_head` with the parent's entry first, and makes the entry (extended attributes read,
    a dict built) only for a file that changed. ``full`` names it for the system calls that need a
    path, while the walk is in its directory."""

    __slots__ = ("rel", "st", "full", "attrs")

    def __init__(self, rel: str, st: os.stat_result, full: str, attrs: Attributes):
        self.rel, self.st, self.full, self.attrs = rel, st, full, attrs

    @property
    def size(self) -> int:
        return self.st.st_size

    def entry(self) -> dict:
        return _entry_for(self.rel, self.st, self.full, self.attrs)

    def text_head(self) -> str:
        return file_head(self.rel, self.st, self.attrs)


class ListedFile(FileStat):
    """A regular file as the read-ahead helper listed it (:meth:`.ReadAhead.listing`): its stat and
    its head from the helper, so that an unchanged file costs the backup no system call; its entry,
    if it changed, is made from that stat as :class:`FileStat`'s from the walk's own."""

    __slots__ = ("head", "fields", "k")

    def __init__(self, rel: str, head: str, fields, k: int, full: str, attrs: Attributes):
        self.rel, self.head, self.fields, self.k, self.full, self.attrs = rel, head, fields, k, full, attrs

    @property
    def st(self) -> os.stat_result:
        return listed_stat(self.fields, self.k)

    @property
    def size(self) -> int:
        return self.fields[self.k * FIELDS + 6]

    def text_head(self) -> str:
        return self.head


class ListedRun:
    """Regular files, one after another in a directory the read-ahead helper listed, each with its
    head there: an incremental matches a run against the parent's entries in one tight loop, with no
    object made for a file that did not change (most of them). Iterated, it gives a
    :class:`ListedFile` for each."""

    __slots__ = ("prefix", "names", "heads", "fields", "start", "stop", "at", "attrs")

    def __init__(self, prefix: str, names: list[str], heads: list[str], fields, start: int, stop: int,
                 at: str, attrs: Attributes):
        self.prefix, self.names, self.heads, self.fields = prefix, names, heads, fields
        self.start, self.stop, self.at, self.attrs = start, stop, at, attrs

    def file(self, k: int) -> ListedFile:
        name = self.names[k]
        return ListedFile(self.prefix + name, self.heads[k], self.fields, k, self.at + name, self.attrs)

    def __iter__(self) -> Iterator[ListedFile]:
        return map(self.file, range(self.start, self.stop))


SCAN_BATCH = 1024  # entries of a directory looked at together (see walk_tree)
SMALL_BATCH_FILES = 64  # small files a backup worker reads and saves as one piece of work ...
SMALL_BATCH_BYTES = 256 << 10  # ... or fewer, when they hold this many bytes
PENDING_MAX = 8192  # entries waiting for chunks before the backup waits for them (bounds memory in
                    # an incremental, where a batch of changed files spans many unchanged ones; a
                    # batch is sent to be read once a quarter of this waits behind it, not held back
                    # until full: 1 % of small files changed fill a batch every ~6,400 entries)
SMALL_WAIT = 1 << 62  # (an entry waiting for its batch: more chunks than any file has)


def _open_dir(name: str, dir_fd: int | None = None) -> int:
    """A directory of the source, to list and to open beneath: the source itself by its path (which the
    user chose, links and all), or ``name`` in the directory ``dir_fd``, never through a link; listed
    without moving its access time."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if dir_fd is None else os.O_NOFOLLOW)
    return without_atime(lambda quiet: os.open(name, flags | quiet, dir_fd=dir_fd))


def walk_tree(root: str, warn, files_as_stat: bool = False,
              listed=None) -> Iterator[tuple[dict | FileStat, bool]]:
    """(entry, linked) for every entry under root, parents first, names sorted (root itself is path ""),
    as the walk meets them: a directory is listed when the walk gets to it, not the tree beforehand.

    A regular file with more than one link is recorded once, at the first name met (``linked`` is
    true for it); each further name of the same inode (within the tree) is a ``hardlink`` entry naming
    that first one.

    Directories are opened one component at a time from a descriptor of root, never through a link,
    and listed, stat-ed and read (link targets, extended attributes) through their descriptors: a
    directory swapped for a link while the walk is in it is named, not followed out of the source.

    With ``files_as_stat``, a regular file with one link comes as a :class:`FileStat`, its entry
    not made yet (valid until the walk goes on); and with ``listed`` (:meth:`.ReadAhead.listing`),
    a directory the read-ahead helper listed (opening it beneath root through no link, too) is taken
    as it listed it, its files that have a head there in runs (:class:`ListedRun`)."""
    attrs = Attributes(warn)
    yield _entry_for("", os.lstat(root), root, attrs), False
    first_name: dict[tuple[int, int], str] = {}  # (st_dev, st_ino) -> first path, for st_nlink > 1
    by_fd = os.path.isdir("/proc/self/fd")  # (a name in a directory's descriptor, for listxattr/readlink)

    def walk(dfd: int, dirpath: str, rel: str):
        got = listed(rel, dfd) if listed is not None else None
        if got is not None:  # (names, heads, fields) from the helper
            items, heads, fields = got
        else:
            try:
                with os.scandir(dfd) as it:
                    items = sorted(it, key=lambda d: d.name)
            except OSError as exc:
                warn(rel or ".", f"cannot list directory: {exc.strerror}")
                return
            heads = None
        at = f"/proc/self/fd/{dfd}/" if by_fd else dirpath + "/"
        prefix = rel + "/" if rel else ""
        runs = heads is not None and files_as_stat
        # A batch of a directory's entries is looked at (stat, attributes) before any is handed on:
        # the caller reads files between, and its hashing threads then do not slow every stat down.
        for start in range(0, len(items), SCAN_BATCH):
            batch = []
            run_at = None  # (where the run of listed files being gathered began)
            stop = min(start + SCAN_BATCH, len(items))
            for k in range(start, stop):
                if runs:
                    if heads[k]:
                        if run_at is None:
                            run_at = k
                        continue
                    if run_at is not None:
                        batch.append((None, None, False, ListedRun(prefix, items, heads, fields, run_at, k, at, attrs)))
                        run_at = None
                name = items[k].name if heads is None else items[k]
                r = prefix + name
                try:
                    st = items[k].stat(follow_symlinks=False) if heads is None else \
                        os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    linked = st.st_nlink > 1 and stat.S_ISREG(st.st_mode)
                    if files_as_stat and not linked and stat.S_ISREG(st.st_mode):
                        batch.append((name, r, False, FileStat(r, st, at + name, attrs)))
                        continue
                    known = linked and (st.st_dev, st.st_ino) in first_name  # (a link to a file met before)
                    batch.append((name, r, linked and (st.st_dev, st.st_ino),
                                  None if known else _entry_for(r, st, at + name, attrs)))
                except OSError as exc:
                    warn(r, f"cannot stat: {exc.strerror}")
            if run_at is not None:
                batch.append((None, None, False, ListedRun(prefix, items, heads, fields, run_at, stop, at, attrs)))
            for name, r, inode, e in batch:
                if inode:  # the first name met, in the walk's order, is the file; the others link to it
                    if (first := first_name.get(inode)) is not None:
                        yield {"path": r, "type": "hardlink", "target": first}, False
                        continue
                    first_name[inode] = r
                yield e, bool(inode)
                if e.__class__ is dict and e["type"] == "dir":
                    try:
                        sub = _open_dir(name, dfd)
                    except OSError as exc:
                        why = ("it was replaced by a link or a file since it was listed; not followed"
                               if exc.errno in NOT_BENEATH else exc.strerror)
                        warn(r, f"cannot list directory: {why}")
                        continue
                    try:
                        yield from walk(sub, os.path.join(dirpath, name), r)
                    finally:
                        os.close(sub)

    top = _open_dir(root)
    try:
        yield from walk(top, root, "")
    finally:
        os.close(top)


def scan_tree(root: str, warn) -> list[dict]:
    """All entries under root (:func:`walk_tree`), as a list."""
    return [e for e, _linked in walk_tree(root, warn)]


def count_tree(root: str) -> tuple[int, int]:
    """The files under root and their bytes, as a backup will count them (a hard-linked file once):
    a quick walk for the progress totals. Like :func:`walk_tree`, it opens each directory from its
    parent's descriptor through no link: a directory swapped for a link is not counted into."""
    files = size = 0
    seen: set[tuple[int, int]] = set()

    def visit(dfd: int) -> None:
        nonlocal files, size
        try:
            with os.scandir(dfd) as it:
                entries = list(it)
        except OSError:
            return
        for d in entries:
            try:
                if d.is_dir(follow_symlinks=False):
                    sub = _open_dir(d.name, dfd)
                    try:
                        visit(sub)
                    finally:
                        os.close(sub)
                elif d.is_file(follow_symlinks=False):
                    st = d.stat(follow_symlinks=False)
                    if st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    files += 1
                    size += st.st_size
            except OSError:
                pass

    try:
        top = _open_dir(root)
    except OSError:
        return 0, 0
    try:
        visit(top)
    finally:
        os.close(top)
    return files, size


# --- the engine --------------------------------------------------------------------------
@dataclass
class Stats:
    size_bytes: int = 0
    stored_bytes: int = 0
    files: int = 0
    chunks_total: int = 0
    chunks_new: int = 0
    files_reused: int = 0
    skipped: list = field(default_factory=list)


def _parent_for(points: list[PointRef], source: Source, kind: str) -> PointRef | None:
    same = [p for p in points if p.header.get("source") == source.describe()]
    if kind == "differential":
        same = [p for p in same if p.header.get("type") == "full"]
    return max(same, key=lambda p: (p.header.get("start_time", ""), p.id)) if same else None


def run_backup(repo: Repository, provider, source: Source, *, kind: str = "incremental",
               tags: list[str] | None = None, at: float | None = None, progress: Progress | None = None,
               workers: int | None = None, notice=None, lock_wait: float = 0.0) -> dict:
    notice = notice or (lambda msg: None)
    if kind not in TYPES:
        raise UsageError(f"unknown backup type {kind!r} (use one of {', '.join(TYPES)})")
    workers = workers or max(2, min(4, usable_cores()))  # savers: compress and encrypt, and wait on storage
    start = time.time()
    start_time = at if at is not None else start
    progress = progress or Progress("backup", enabled=False)
    ahead = None
    lock = repo.lock(exclusive=False, command=f"backup {source.kind}:{source.name}", wait=lock_wait)
    try:
        points, _bad = repo.list_points()
        parent = None
        if kind != "full":
            parent = _parent_for(points, source, kind)
            if parent is None:
                notice(f"no earlier {'full ' if kind == 'differential' else ''}point for this source: "
                       "taking a full backup")
                kind = "full"

        parent_tree: Tree | None = None
        parent_header: dict | None = None
        known: Container[bytes]
        if parent is not None and not repo.backend.exists(key_name(parent.header["epoch"])):
            notice(f"the key epoch of parent point {parent.id} was destroyed: taking a full backup")
            kind, parent = "full", None
        if parent is not None and repo.immutability is not None:  # a shredded epoch's objects stay there a while
            try:
                repo.epoch_keys(parent.header["epoch"], provider)
            except ShreddedEpoch:
                notice(f"the key epoch of parent point {parent.id} was crypto-shredded: taking a full backup")
                kind, parent = "full", None
        if parent is not None:  # an incremental's time is its walk: a helper starts on the inodes now
            ahead = _walk_ahead(source, repo)
        if kind == "full":
            _check_provider(repo, provider, points)
            keys = repo.new_epoch(provider)
            known = frozenset()
        else:
            # (an incremental reads the parent's tree once, alongside its walk: in pieces it lets go)
            parent_header, parent_tree, keys = repo.open_point(parent.id, provider, pieces=kind == "incremental")
            # chunk ids are keyed per epoch; only lookups are needed, not the packs' entries
            known = repo.load_index(provider, epochs={keys.epoch_id}, ids_only=True)
            if kind == "differential":  # what the full has (and is really stored) counts as stored
                index, known = known, IdSet()
                for e in parent_tree:
                    for c in e.get("chunks", ()) if isinstance(e, dict) else ():
                        cid = bytes.fromhex(c)
                        if cid in index:
                            known.add(cid)
                del index
        chunker = Chunker(keys.cdc_seed, **repo.chunk_params)
        stats = Stats()
        tree = TreeWriter()
        with repo.blob_saver(keys, known, workers=workers) as store:
            if source.kind == "dir":
                _backup_tree(source, chunker, store, stats, parent_tree, known, progress, tree, ahead,
                             _totals_of(parent_header))
            else:
                for e in _backup_stream(source, chunker, store, stats, progress):
                    tree.add(e)
        del known, parent_tree  # (the index and the parent's tree: not needed to publish)
        stats.chunks_total += store.chunks_total
        stats.chunks_new += store.chunks_new
        stats.stored_bytes += store.stored_bytes
        completion = time.time() if at is None else start_time + (time.time() - start)
        point_id = secrets.token_hex(16)
        header = {
            "version": POINT_VERSION,
            "id": point_id,
            "type": kind,
            "parent": parent.id if parent else None,
            "epoch": keys.epoch_id,
            "cipher": keys.cipher,
            "key_ref": repo.epoch_record(keys.epoch_id).get("key_ref", provider.ref),
            "source": source.describe(),
            "hostname": socket.gethostname(),
            "tags": sorted(set(tags or [])),
            "start_time": rfc3339(start_time),
            "completion_time": rfc3339(completion),
            "size_bytes": stats.size_bytes,
            "stored_bytes": stats.stored_bytes,
            "files": stats.files,
            "chunks_total": stats.chunks_total,
            "chunks_new": stats.chunks_new,
            "skipped": len(stats.skipped),
        }
        _confirm_key(repo, provider, keys)
        checksum = catalogue.publish(repo, provider, keys, header, tree, lock_wait=lock_wait)
    finally:
        try:
            lock.release()
        finally:
            if ahead is not None:
                ahead.close()
    summary = {
        "point_id": point_id,
        "type": kind,
        "parent_id": header["parent"],
        "repository": repo.url,
        "epoch": keys.epoch_id,
        "cipher": keys.cipher,
        "source": header["source"],
        "size_bytes": stats.size_bytes,
        "stored_bytes": stats.stored_bytes,
        "files": stats.files,
        "files_unchanged": stats.files_reused,
        "chunks_total": stats.chunks_total,
        "chunks_new": stats.chunks_new,
        "manifest_checksum": checksum,
        "key_ref": header["key_ref"],
        "start_time": header["start_time"],
        "completion_time": header["completion_time"],
        "duration_seconds": round(time.time() - start, 3),
        "tags": header["tags"],
        "skipped": stats.skipped,
    }
    return summary


def _totals_of(header: dict | None) -> tuple[int, int] | None:
    """(files, bytes) of a parent point, as its (authenticated) header gives them, if it does."""
    if header is None:
        return None
    files, size = header.get("files"), header.get("size_bytes")
    if type(files) is int and type(size) is int and files >= 0 and size >= 0:
        return files, size
    return None


def _confirm_key(repo: Repository, provider, keys: EpochKeys) -> None:
    """Publish a point only if its data key can be unwrapped *now*: a key service that went
    away (or a key version retired) during the backup must not yield a point nobody can read."""
    record = repo.epoch_record(keys.epoch_id)
    try:
        dek = provider.unwrap(base64.b64decode(record["wrapped"]))
    except LifelineError as exc:
        exc.args = (f"the backup was not published: its data key could not be unwrapped again "
                    f"before publishing ({exc})",)
        raise
    if EpochKeys(keys.epoch_id, dek, cipher=keys.cipher).id_key != keys.id_key:
        raise LifelineError(f"the backup was not published: keys/{keys.epoch_id} no longer opens "
                            "to the key this backup used")


def _check_provider(repo: Repository, provider, points: list[PointRef]) -> None:
    """Refuse a key that cannot open the newest existing epoch (a wrong --key would
    otherwise start a new epoch nobody else can read)."""
    if not points:
        return
    newest = max(points, key=lambda p: p.header.get("start_time", ""))
    try:
        repo.epoch_keys(newest.header["epoch"], provider)
    except LifelineError as exc:
        if exc.__class__.__name__ == "ShreddedEpoch":
            return
        raise


def _same_file(old: dict | None, new: dict) -> bool:
    return (old is not None and old.get("size") == new["size"] and old.get("mtime_ns") == new["mtime_ns"]
            and old.get("ino") == new["ino"] and old.get("ctime_ns") == new["ctime_ns"])


def _walk_ahead(source: Source, repo: Repository) -> ReadAhead | None:
    """A read-ahead helper for a directory source, walking it from now on (see :mod:`.read_ahead`)."""
    if source.kind != "dir":
        return None
    try:
        root = _open_dir(source.path)
    except OSError:
        return None  # (the backup says why when it opens it)
    try:
        return ReadAhead(root, repo.chunk_params["min_size"] + 1, walk=True)
    finally:
        os.close(root)


def _backup_tree(source: Source, chunker: Chunker, store: BlobSaver, stats: Stats, parent: Tree | None,
                 known, progress: Progress, out: TreeWriter, ahead: ReadAhead | None = None,
                 estimate: tuple[int, int] | None = None) -> None:
    """:func:`_backup_files`, with every file read beneath a descriptor of the source directory
    (``ahead``: a read-ahead helper started already, on the same directory)."""
    root = _open_dir(source.path)
    ahead = ahead or ReadAhead(root, chunker.min_size + 1)
    try:
        _backup_files(Beneath(root), ahead, source, chunker, store, stats, parent, known, progress, out, estimate)
    finally:
        ahead.close()
        os.close(root)


def _backup_files(files: Beneath, ahead: ReadAhead, source: Source, chunker: Chunker, store: BlobSaver,
                  stats: Stats, parent: Tree | None, known, progress: Progress, out: TreeWriter,
                  estimate: tuple[int, int] | None = None) -> None:
    """Walk the source, read what changed, and add every entry to ``out`` in the walk's order, each
    once its chunk ids are known. Nothing scales with the tree but ``out`` (compressed): entries wait
    only while their chunks are in the saver's window; the parent's are read alongside the walk.
    ``estimate``: (files, bytes) the progress shows as the totals (the parent point's), instead of
    counting the tree first."""
    def warn(path, why):
        stats.skipped.append({"path": path, "error": why})

    if progress.enabled or progress.lines is not None:  # the totals, for the bar and its ETA
        if estimate is not None:  # (the parent's: a walk of the tree first would cost a third more)
            (progress.files_total, progress.bytes_total), progress.estimated = estimate, True
        else:
            progress.files_total, progress.bytes_total = count_tree(source.path)
    # A file no bigger than the minimum chunk size is exactly one chunk: read it whole, in a worker,
    # with others of its batch (the saver's save_small); a file with other names is read here, so
    # that its other names know at once whether it could be read.
    small_max = chunker.min_size
    batch: list[tuple[list, str]] = []  # ([entry, waits], path) of small files to read
    batch_bytes = 0
    behind = 0  # copied entries waiting behind the batch's first file

    cursor = ParentCursor(parent.entry_reader(consume=True) or parent.with_text()) if parent is not None else None
    has_all = known.has_all if cursor is not None else None  # (every chunk id of a parent's entry stored?)
    lost: set[str] = set()  # linked files that could not be read: their other names are left out too
    reused: set[str] = set()  # linked files whose chunks the parent point had
    # in the walk's order: an unchanged file's entry as the parent has it (text), or [entry or None
    # (left out), chunk ids it waits for]
    pending: deque[str | list] = deque()

    def emit() -> None:
        while pending:
            item = pending[0]
            if type(item) is str:
                out.add_text(item)
                pending.popleft()
                continue
            e, n = item
            if e is not None:
                if n and len(e["chunks"]) < n:
                    if len(pending) > PENDING_MAX:
                        flush_small()
                        store.drain()
                        continue
                    return
                out.add(e)
            pending.popleft()

    def read_job(job: tuple[list, str]) -> bytes:
        return read_small(files, job[1], job[0][0]["size"], small_max)

    def small_done(job: tuple[list, str], cid: str | None, size: int, grown: bytes | None,
                   error: OSError | None) -> None:
        item = job[0]
        e = item[0]
        progress.files_done += 1
        if error is not None:
            warn(e["path"], f"cannot read: {error.strerror or error}")
            item[0] = None
            return
        if grown is not None:  # (it grew past the minimum while we looked: read again and chunked here, rare)
            chunks, size = [], 0
            try:
                with open(_open_source(files, job[1]), "rb", buffering=0) as f:
                    for piece in chunker.chunk_file(f):
                        chunks.append(store.save_now(piece))
                        size += len(piece)
            except OSError as exc:
                warn(e["path"], f"cannot read: {exc.strerror or exc}")
                item[0] = None
                return
            e["chunks"] = chunks
        else:
            e["chunks"] = [cid] if cid is not None else []
        e["size"] = size  # (what was read, if it changed meanwhile)
        stats.files += 1
        stats.size_bytes += size
        progress.bytes_done += size
        item[1] = 0

    def flush_small() -> None:
        nonlocal batch, batch_bytes, behind
        if batch:
            ahead.flush()
            store.save_small(batch, read_job, small_max, small_done)
            batch, batch_bytes, behind = [], 0, 0

    def copied(texts: list[str], size: int, ids_len: int) -> None:
        """Unchanged files' entries, as the parent has them, in the walk's order (``size``: their
        bytes; ``ids_len``: their chunk ids' bytes)."""
        nonlocal behind
        n = len(texts)
        stats.files += n
        stats.files_reused += n
        stats.size_bytes += size
        stats.chunks_total += ids_len // 32
        progress.files_done += n
        progress.bytes_done += size  # (done with: a bar of an incremental moves with its walk)
        i = 0
        while i < n:
            if not pending:
                out.add_texts(texts[i:] if i else texts)
                return
            # (behind a changed file: as many at once as reach neither bound, then one by one)
            room = PENDING_MAX - len(pending)
            if batch:
                room = min(room, (PENDING_MAX >> 2) - behind)
            if room > 1:
                take = texts[i:i + room]
                pending.extend(take)
                i += len(take)
                if batch:
                    behind += len(take)
                continue
            pending.append(texts[i])
            i += 1
            if len(pending) > PENDING_MAX:
                emit()  # (which bounds what waits behind a changed file's batch)
            elif batch:
                behind += 1
                if behind > PENDING_MAX >> 2:
                    flush_small()  # (read while the walk goes on: waited for only past the bound)

    def backed_up_run(run: ListedRun) -> None:
        """A run of listed files: the unchanged ones copied from the parent, a run at a time; each
        other one backed up on its own."""
        names, heads, fields, prefix = run.names, run.heads, run.fields, run.prefix
        texts: list[str] = []
        size = ids_len = 0
        for k in range(run.start, run.stop):
            head = heads[k]
            text = same_text(prefix + names[k], head)
            if text is not None and (ids := reused_chunks(text, head)) is not None and has_all(ids):
                texts.append(text)
                size += fields[k * FIELDS + 6]
                ids_len += len(ids)
                continue
            # (changed, or its entry not in the shape copied: the parent's entry, if passed, is not
            # found again, and the file is read; its chunks that are stored are not sent again)
            if texts:
                copied(texts, size, ids_len)
                texts, size, ids_len = [], 0, 0
            backed_up(run.file(k).entry(), False)
        if texts:
            copied(texts, size, ids_len)

    def backed_up(e: dict, linked: bool) -> None:
        """One entry of the walk (a file read unless the parent has it) added in its turn."""
        nonlocal batch_bytes
        if e["type"] != "file":
            if e["type"] == "hardlink":  # another name of a file above: counted, not read again
                if e["target"] in lost:
                    warn(e["path"], f"not backed up: it is a hard link to {e['target']!r}, which could not be read")
                    return
                stats.files += 1
                stats.files_reused += e["target"] in reused
            pending.append([e, 0])
            emit()
            return
        old = cursor.find(e["path"], e["ino"]) if cursor is not None else None
        waits = 0
        if _same_file(old, e) and type(old_chunks := old.get("chunks", [])) is list \
                and has_all(bytes.fromhex("".join(old_chunks))):
            e["chunks"] = list(old_chunks)
            stats.chunks_total += len(e["chunks"])
            stats.files_reused += 1
            progress.bytes_done += e["size"]
            if linked:
                reused.add(e["path"])
            if cursor.text is not None and e == old:  # (nothing changed, atime included: copy its text)
                stats.files += 1
                stats.size_bytes += e["size"]
                progress.files_done += 1
                pending.append(cursor.text)
                emit()
                return
        elif e["size"] <= small_max and not linked:
            e["chunks"] = []
            item = [e, SMALL_WAIT]
            pending.append(item)
            batch.append((item, e["path"]))
            ahead.want(e["path"])  # (many small files to read: a helper reads ahead of the workers)
            batch_bytes += e["size"]
            if len(batch) >= SMALL_BATCH_FILES or batch_bytes >= SMALL_BATCH_BYTES:
                flush_small()
            emit()
            return
        else:
            chunks: list = []
            e["chunks"] = chunks
            size = 0
            try:
                with open(_open_source(files, e["path"]), "rb", buffering=0) as f:
                    for piece in chunker.chunk_file(f, size_hint=e["size"]):
                        if len(piece):
                            size += len(piece)
                            store.save(piece, chunks)
                            waits += 1
                            progress.bytes_done += len(piece)
            except OSError as exc:
                store.drain()  # chunks already submitted must land before we drop the entry
                warn(e["path"], f"cannot read: {exc.strerror or exc}")
                if linked:
                    lost.add(e["path"])
                progress.files_done += 1
                emit()
                return
            if size != e["size"]:
                e["size"] = size  # changed while reading: record what was read
        stats.files += 1
        stats.size_bytes += e["size"]
        progress.files_done += 1
        pending.append([e, waits])
        emit()

    same_text = cursor.same_text if cursor is not None else None
    listed = ahead.listing if cursor is not None and ahead.walking else None
    for e, linked in walk_tree(source.path, warn, files_as_stat=cursor is not None, listed=listed):
        if (c := e.__class__) is ListedRun:  # (files the helper listed, in an incremental)
            backed_up_run(e)
            continue
        if c is FileStat:  # (a file with one link, in an incremental, listed by the walk itself)
            head = e.text_head()
            text = same_text(e.rel, head)
            if text is not None and (ids := reused_chunks(text, head)) is not None and has_all(ids):
                copied([text], e.size, len(ids))
                continue
            e = e.entry()
        backed_up(e, linked)
    flush_small()
    store.drain()
    emit()
    assert not pending, "an entry was left waiting for chunks"  # (a miscount would drop it silently)


def _backup_stream(source: Source, chunker: Chunker, store: BlobSaver, stats: Stats,
                   progress: Progress) -> list[dict]:
    proc = None
    if source.kind == "command":
        try:
            proc = subprocess.Popen(source.command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise SourceError(f"--command: program {source.command[0]!r} not found") from None
        except PermissionError:
            raise SourceError(f"--command: program {source.command[0]!r} is not executable") from None
        stream = proc.stdout
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("--stdin given but standard input is a terminal; pipe the data in")
        stream = sys.stdin.buffer
    chunks: list = []
    size = 0
    readinto = stream.readinto
    try:
        for data in chunker.chunk_stream(readinto):
            size += len(data)
            store.save(data, chunks)
            progress.bytes_done += len(data)
    finally:
        if proc is not None:
            try:
                proc.stdout.close()
            finally:
                rc = proc.wait()
    if proc is not None and rc != 0:
        raise SourceError(f"--command {shlex.join(source.command)} exited with status {rc}; "
                          "nothing was published")
    store.drain()
    now = time.time_ns()
    stats.files = 1
    stats.size_bytes = size
    progress.files_done = 1
    return [
        {"path": "", "type": "dir", "mode": 0o700, "uid": os.getuid(), "gid": os.getgid(), "mtime_ns": now},
        {"path": source.stream_name, "type": "file", "mode": 0o600, "uid": os.getuid(),
         "gid": os.getgid(), "mtime_ns": now, "size": size, "chunks": chunks},
    ]
