"""Read-ahead for a backup of many small files: a helper process reads the files the backup is
about to read, many at a time, so that the backup's own reads find them in the page cache.

Why: a cold small file costs one random read of the disk (~180 us here), and the backup's reader
threads share one GIL with its main thread, so few reads are in flight. 200,000 files of 2 KiB,
cold: one at a time 18 s, this helper's 4 threads 8.7 s (8 threads: 10 s, as they wait for their
own GIL); the backup 21 s without it, 12.7 s with it.

For an incremental backup (a parent point found), the same helper first walks the source
(``walk``), in the backup's order (directories by name, depth first), lists and stats every
directory, and hands the backup each listing (:meth:`ReadAhead.listing`): the names, and for each
regular file with one link its stat fields and the beginning its entry would have
(:func:`lifeline.agent.attributes.file_head`). For an unchanged file the backup's one thread then
compares that text with the parent's and makes no system call of its own (the ``stat`` was a quarter
of its time, the rendering another tenth); everything else (directories, links, devices, files with
other names, what the helper could not stat) the backup stats itself. The helper starts while the
backup loads its index, and on a cold cache its walk is the incremental's time: the kernel reading
200,000 inodes is ~0.9 s of one thread (two or four threads took as long or longer; a second thread
of the helper stat-ing ahead of its lister made it 2.5 times slower, the two taking turns on the GIL).
Two helper *processes* do not take turns (200,000 small files, cold: 1.37 s alone, 0.83 s each with
half of the directories; the bench's incremental of them 2.12 s to 1.83 s): so a walk is shared by
:data:`WALKERS` helpers where the agent may use two cores (:mod:`.cores`), each stat-ing the files of
its part of the directories (:func:`walk_part`) and finding the others' subdirectories from the
listing's entry types alone. Only the first reads ahead; the others leave once their walk is sent
(and read: a pipe holds the last 1 MiB of it).

Trust: the helper is the agent's own code, started from ``/`` with ``python -P``, without
credentials (:mod:`.helper_process`), and what a listing says of a file (its stat) is what the
backup records, as it would its own stat. A listing is used only for the very directory the backup
is in (the same path, device and inode: a directory swapped, or the source's path pointed elsewhere
between the two opens, is listed by the backup), only if it names entries of that directory and
nothing else (no slash, ``.``, ``..``), and only while the helper keeps up (:data:`LISTING_WAIT`);
a directory of more than :data:`LISTING_MAX` entries is not listed (memory). Otherwise the backup
lists by itself: a helper that fails or stops changes nothing but the speed.

The reading is a hint: names are sent when the pipe takes them and dropped when it does not, and
what the helper reads is thrown away. It opens only regular files and directories beneath the
source's descriptor (inherited), through no link, without blocking, and reads at most ``limit``
bytes of each file. At the end of its input it reports what it read: files, bytes, entries walked.
"""
from __future__ import annotations

import fcntl
import os
import queue
import select
import stat
import struct
import subprocess
import sys
import threading
import zlib
from array import array

from . import helper_process
from .cores import usable_cores
from .attributes import Attributes, file_head
from .beneath import without_atime

THREADS = 4  # reads in flight (the disk's queue, not the CPU, is what they share)
START_AFTER = 256  # small files a backup reads before it starts the helper (an incremental often reads fewer)
PIPE_MAX = 1 << 20  # bytes of names waiting for the pipe; more are dropped
LISTING_PIPE = 1 << 20  # bytes of listings the helper may send ahead (Linux's limit for anyone, by default)
LISTING_WAIT = 60.0  # seconds the backup waits for a listing before it lists the rest by itself
LISTING_MAX = 1 << 16  # entries of a directory the helper lists for the backup (more: the backup lists it)
WALKERS = 2  # walking helpers where the agent may use two cores or more (see walk_part)

# The helper's frames: a directory's listing, the end of its walk, or its report: entries (NOT_LISTED:
# the directory could not be listed; WALKED: the walk's end; REPORT: the report), then the byte lengths of its path (or the
# report's text), of its names (joined by NUL) and of its files' heads (ASCII, joined by NUL: empty
# for an entry the backup stats itself); these three, then FIELDS int64 numbers for every entry.
FRAME = struct.Struct("<iIIIqq")  # (then the directory's device and inode, as int64: see listing)
NOT_LISTED, WALKED, REPORT = -1, -2, -3
FIELDS = 10  # mode, inode, device, links, uid, gid, size, atime_ns, mtime_ns, ctime_ns (a file's; else 0)
_RECORD = struct.Struct(f"={FIELDS}q")  # (an entry's fields as the array holds them: native order)
_NO_RECORD = bytes(_RECORD.size)  # (an entry the backup stats itself)
_U64 = (1 << 64) - 1


class ReadAhead:
    """The backup's side: :meth:`want` a file's path relative to the source, :meth:`flush` after a
    batch, :meth:`close` at the end (the helper's report, or None). The helper starts at the
    START_AFTER-th file wanted, or at once with ``walk`` (then it walks the tree first); never with
    ``LIFELINE_READ_AHEAD=0`` or where it cannot start. ``root_fd`` is needed only until it starts.

    A walk is shared by :data:`WALKERS` helpers (one on a single core), each listing its part of the
    directories (:func:`walk_part`): this one reads ahead and lists part 0, the others only list;
    :meth:`listing` asks the one whose part a directory is."""

    def __init__(self, root_fd: int, limit: int, *, walk: bool = False, part: tuple[int, int] | None = None):
        self.root_fd, self.limit = root_fd, limit
        self.others: list[ReadAhead] = []  # (the other walkers, parts 1 and on)
        self._closed = False
        self.wanted = 0
        self.enabled = os.environ.get("LIFELINE_READ_AHEAD", "").strip() != "0" and bool(sys.executable)
        self.proc: subprocess.Popen | None = None
        self._out = bytearray()
        self.walking = False  # (listings to come: see listing)
        self._in = bytearray()  # what the helper sent, not taken yet
        self._next: tuple | None = None  # a listing read for a directory the backup has not reached
        if walk and self.enabled:
            parts = part or (0, WALKERS if usable_cores() > 1 else 1)
            if part is None:  # (started before this one's own: they share the disk's queue and the cores)
                self.others = [ReadAhead(root_fd, limit, walk=True, part=(k, parts[1])) for k in range(1, parts[1])]
            self._start(walk=True, part=parts)
            self.walking = self.proc is not None
            if not self.walking:  # (the others' listings would never be asked for)
                for other in self.others:
                    other._close_own(False)
                self.others = []
            if self.walking and parts[0]:  # (sent no names to read: it leaves once its walk is sent)
                self.proc.stdin.close()
                self.proc.stdin = None  # (as Popen has it for no pipe: communicate leaves it be)

    def _start(self, walk: bool = False, part: tuple[int, int] = (0, 1)) -> None:
        root_fd, self.root_fd = self.root_fd, None  # (the caller may close it once the helper has it)
        try:
            self.proc = helper_process.start("lifeline.agent.read_ahead", str(root_fd), str(self.limit),
                                             *(["walk", *map(str, part)] if walk else []), pass_fds=(root_fd,))
        except OSError:
            self.enabled = False
            return
        os.set_blocking(self.proc.stdin.fileno(), False)
        if walk:  # (room for its listings to run ahead of the backup: a directory of 1,000 files is ~200 KB)
            try:
                fcntl.fcntl(self.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, LISTING_PIPE)
            except OSError:
                pass  # (a smaller pipe: the two take turns more often)

    def want(self, rel: str) -> None:
        self.wanted += 1
        if self.proc is None:
            if not self.enabled or self.wanted < START_AFTER or self.root_fd is None:
                return
            self._start()
            if self.proc is None:
                return
        if len(self._out) < PIPE_MAX:
            self._out += os.fsencode(rel) + b"\0"

    def flush(self) -> None:
        """Send what the pipe takes now; never wait for the helper."""
        if self.proc is None:
            return
        try:
            while self._out:
                n = os.write(self.proc.stdin.fileno(), self._out)
                del self._out[:n]
        except (BlockingIOError, BrokenPipeError):
            pass

    def listing(self, rel: str, dir_fd: int) -> tuple[list[str], list[str], array] | None:
        """The directory ``rel`` (``""``: the source), open as ``dir_fd``, as the walking helper listed
        it: its names in the walk's order, each regular file's head (``""`` for the others) and
        FIELDS numbers for each entry (:func:`listed_stat`); None if the helper did not list that
        directory (another at that path: see the module's doc) or is gone: list it yourself. Asked
        for in the walk's order; listings of directories the backup did not walk into are passed over."""
        if self.others and (k := walk_part(rel, len(self.others) + 1)):
            return self.others[k - 1].listing(rel, dir_fd)
        if not self.walking:
            return None
        key = rel.split("/")
        while True:
            got, self._next = self._next or self._frame(), None
            if got is None:
                self.walking = False  # (the helper is gone, or sent what the backup cannot use)
                return None
            other = got[0].split("/")
            if other == key:
                if got[1] is None:
                    return None
                st = os.fstat(dir_fd)
                return got[1][:3] if got[1][3] == (_signed(st.st_dev), _signed(st.st_ino)) else None
            if other > key:  # (a directory the helper did not list, or not yet: the backup lists it)
                self._next = got
                return None

    def _frame(self) -> tuple[str, tuple | None] | None:
        """The helper's next listing as (path, listing or None), or None."""
        head = self._take(FRAME.size)
        if head is None:
            return None
        count, n_rel, n_names, n_heads, dev, ino = FRAME.unpack(head)
        if count < NOT_LISTED:  # (the walk's end: nothing more to list)
            return None
        raw = self._take(_body_size(count, n_rel, n_names, n_heads))
        if raw is None:
            return None
        rel = os.fsdecode(raw[:n_rel])
        if count == NOT_LISTED:
            return rel, None
        names = os.fsdecode(raw[n_rel:n_rel + n_names]).split("\0") if count else []
        heads = raw[n_rel + n_names:n_rel + n_names + n_heads].decode("ascii").split("\0") if count else []
        fields = array("q")
        fields.frombytes(raw[n_rel + n_names + n_heads:])
        if len(names) != count or len(heads) != count or "" in names or "." in names or ".." in names \
                or any("/" in n for n in names):
            return None  # (names the backup would follow out of the directory: never from this helper)
        return rel, (names, heads, fields, (dev, ino))

    def _take(self, n: int) -> bytes | None:
        """``n`` bytes of what the helper sends, or None at its end, or when it sent nothing for
        :data:`LISTING_WAIT` seconds (stuck: on a directory the backup may well list faster itself,
        or stopped)."""
        buf, fd = self._in, self.proc.stdout.fileno()
        while len(buf) < n:
            try:
                ready, _, _ = select.select([fd], [], [], LISTING_WAIT)
                got = os.read(fd, 1 << 20) if ready else b""
            except OSError:
                got = b""
            if not got:
                return None
            buf += got
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def close(self, report: bool = False) -> tuple[int, int, int] | None:
        """Stop the helpers: at once (what they have not read, the backup has); with ``report``, once
        they have read what they were sent and ended their walk: (files read, their bytes, entries the
        walks met); each killed after 10 s."""
        got = self._close_own(report)
        for other in self.others:
            theirs = other._close_own(report)
            got = None if got is None or theirs is None else (got[0], got[1], got[2] + theirs[2])
        return got

    def _close_own(self, report: bool) -> tuple[int, int, int] | None:
        proc, self.enabled, self.walking = self.proc, False, False  # (never started again)
        if proc is None or self._closed:
            return None
        self._closed = True
        self._out.clear()
        if not report:
            proc.kill()  # (nothing, for a walker that left once its walk was sent: Popen polls first)
            proc.communicate()
            return None
        try:
            rest, _ = proc.communicate(timeout=10)  # (closes its input: the end of the names)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
        data, self._in = self._in + rest, bytearray()
        at = 0
        while at + FRAME.size <= len(data):  # (listings not asked for, then the report)
            count, n_rel, n_names, n_heads, _dev, _ino = FRAME.unpack_from(data, at)
            at += FRAME.size
            if count == REPORT:
                try:
                    files, nbytes, walked = map(int, data[at:at + n_rel].split())
                except ValueError:
                    return None
                return files, nbytes, walked
            at += _body_size(count, n_rel, n_names, n_heads)
        return None


def _body_size(count: int, n_rel: int, n_names: int, n_heads: int) -> int:
    """The bytes that follow a frame's header (:data:`FRAME`)."""
    return n_rel + n_names + n_heads + max(count, 0) * FIELDS * 8


def listed_stat(fields: array, k: int) -> os.stat_result:
    """The stat of entry ``k`` of a listing, as ``os.lstat`` gave it to the helper (its times to the
    nanosecond; no block counts)."""
    mode, ino, dev, nlink, uid, gid, size, a, m, c = fields[k * FIELDS:(k + 1) * FIELDS]
    return os.stat_result((mode, ino & _U64, dev & _U64, nlink, uid, gid, size, a // 10**9, m // 10**9,
                           c // 10**9, a / 1e9, m / 1e9, c / 1e9, a, m, c))


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n  # (an inode or device number above 2**63, as an int64)


def walk_part(rel: str, parts: int) -> int:
    """Which of ``parts`` walking helpers lists the directory ``rel`` (a source of many directories
    is shared about evenly; every process computes it alike, unlike ``hash``)."""
    return zlib.crc32(os.fsencode(rel)) % parts if parts > 1 else 0


def _walk(files, met: list, send, part: tuple[int, int] = (0, 1)) -> None:
    """List and stat every entry beneath the root, in a backup's walk order (see the module's doc),
    and ``send`` each directory's listing, then the walk's end (however it ends: the backup waits
    for a listing until it comes); ``met[0]`` counts the entries. Only the directories of ``part``
    (this one's, of how many) are listed and sent; of the others, only the subdirectories are found
    (by the entries' types, which a listing gives, with no stat)."""
    try:
        _list_all(files, met, send, part)
    except Exception:  # noqa: BLE001 - (a hint: the backup lists what is left by itself; not on its log)
        pass
    finally:
        send("", WALKED)


def _list_all(files, met: list, send, part: tuple[int, int] = (0, 1)) -> None:
    attrs = Attributes(lambda rel, why: None)  # (the backup reports what goes wrong, itself)
    todo: list[str] = [""]  # directories to list, the next one in the walk's order last
    mine, parts = part
    while todo:
        rel = todo.pop()
        listed = walk_part(rel, parts) == mine
        try:
            fd = without_atime(lambda quiet: files.open_dir(rel, os.O_RDONLY | quiet))
        except (OSError, ValueError):
            if listed:
                send(rel, None)
            continue
        try:
            with os.scandir(fd) as it:
                items = sorted(it, key=lambda d: d.name)  # (the backup's order)
            if not listed:  # (another helper's: only where the walk goes on)
                todo.extend(reversed(_subdirectories(rel, items)))
                continue
            here = os.fstat(fd)
            listing = _listing(rel, items, attrs)  # (each entry stat-ed through fd: closed after)
        except OSError:
            if listed:
                send(rel, None)
            continue
        finally:
            os.close(fd)
        met[0] += len(items)
        big = len(items) > LISTING_MAX  # (the backup lists it: its listing would be ~2x the memory)
        send(rel, None if big else listing[:3] + ((_signed(here.st_dev), _signed(here.st_ino)),))
        todo.extend(reversed(listing[3]))


def _subdirectories(rel: str, items: list) -> list[str]:
    """The paths of the directories among a directory's entries ``items``, in their order."""
    out = []
    for d in items:
        try:
            if d.is_dir(follow_symlinks=False):
                out.append(f"{rel}/{d.name}" if rel else d.name)
        except OSError:
            pass
    return out


def _listing(rel: str, items: list, attrs) -> tuple[list[str], list[str], array, list[str]]:
    """(names, heads, fields, subdirectories) of the directory ``rel``'s entries ``items``."""
    names, heads, fields, subdirs = [], [], array("q"), []
    for d in items:
        names.append(d.name)
        r = f"{rel}/{d.name}" if rel else d.name
        head, record = "", _NO_RECORD  # (the backup stats it itself)
        try:
            st = d.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                record = _RECORD.pack(st.st_mode, _signed(st.st_ino), _signed(st.st_dev), st.st_nlink, st.st_uid,
                                      st.st_gid, st.st_size, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)
                head = file_head(r, st, attrs)
            elif stat.S_ISDIR(st.st_mode):
                subdirs.append(r)
        except (OSError, struct.error):  # (gone, or a time past 2262 in nanoseconds: left to the backup)
            pass
        heads.append(head)
        fields.frombytes(record)
    return names, heads, fields, subdirs


def _sender(out_fd: int):
    """``send(rel, listing or None)``, ``send("", WALKED)`` and ``send(report_text, REPORT)``: frames
    on ``out_fd``."""
    lock = threading.Lock()

    def send(rel: str, listing) -> None:
        r = os.fsencode(rel)
        if listing is None or type(listing) is int:  # (not listed; the walk's end; the report)
            parts = [FRAME.pack(NOT_LISTED if listing is None else listing, len(r), 0, 0, 0, 0), r]
        else:
            names, heads, fields, (dev, ino) = listing
            n = os.fsencode("\0".join(names))
            h = "\0".join(heads).encode("ascii")
            parts = [FRAME.pack(len(names), len(r), len(n), len(h), dev, ino), r, n, h, fields.tobytes()]
        data = memoryview(b"".join(parts))
        with lock:
            while data:
                data = data[os.write(out_fd, data):]

    return send


def _serve(root_fd: int, limit: int, walk: tuple[int, int] | None = None) -> int:
    from .beneath import Beneath

    helper_process.quiet_child()
    files = Beneath(root_fd)
    met = [0]
    send = _sender(sys.stdout.fileno())
    walker = threading.Thread(target=_walk, args=(files, met, send, walk), daemon=True) if walk else None
    if walker is not None:
        walker.start()
    todo: queue.Queue = queue.Queue(maxsize=4 * THREADS)
    counts = [0, 0]
    lock = threading.Lock()

    def read(rel: str, buf: bytearray) -> int | None:
        """Bytes read of ``rel`` (at most ``limit``), None if it is not a regular file one can open."""
        try:
            fd = files.open_file(rel)
        except (OSError, ValueError):
            return None
        try:
            n = 0
            while n < limit and (got := os.readv(fd, [buf])):
                n += got
            return n
        except OSError:
            return None
        finally:
            os.close(fd)

    def reader() -> None:
        buf = bytearray(min(limit, 1 << 16))  # (read into, not allocated a read: a large read() costs page faults)
        while (names := todo.get()) is not None:
            for rel in names:
                n = read(rel, buf)
                if n is not None:
                    with lock:
                        counts[0] += 1
                        counts[1] += n

    # (the other walkers of a shared walk are sent no names: they only list)
    threads = [threading.Thread(target=reader, daemon=True) for _ in range(THREADS if not walk or not walk[0] else 0)]
    for t in threads:
        t.start()
    rest = b""
    inp = sys.stdin.buffer
    while block := inp.read1(1 << 16):
        *names, rest = (rest + block).split(b"\0")
        for i in range(0, len(names), 32):  # (handed on 32 at a time: a queue operation a name costs more)
            todo.put([os.fsdecode(n) for n in names[i:i + 32] if n])
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()
    if walker is not None:
        walker.join()
    send(f"{counts[0]} {counts[1]} {met[0]}", REPORT)
    return 0


if __name__ == "__main__":
    sys.exit(_serve(int(sys.argv[1]), int(sys.argv[2]),
                    (int(sys.argv[4]), int(sys.argv[5])) if sys.argv[3:4] == ["walk"] else None))
