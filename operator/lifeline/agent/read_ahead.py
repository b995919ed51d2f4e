"""Read-ahead for a backup of many small files: a helper process reads the files the backup is
about to read, many at a time, so that the backup's own reads find them in the page cache.

Why: a cold small file costs one random read of the disk (~180 us here), and the backup's reader
threads share one GIL with its main thread, so few reads are in flight. 200,000 files of 2 KiB,
cold: one at a time 18 s, this helper's 4 threads 8.7 s (8 threads: 10 s, as they wait for their
own GIL); the backup 21 s without it, 12.7 s with it.

For an incremental backup (a parent point found), the same helper first walks the source (``walk``), in the backup's
order (directories by name, depth first), and stats every entry, so that the walk's own ``stat``
calls find the inodes in memory: there the walk is the backup's time, and on a cold cache each
``stat`` waits for the disk and for the kernel to build the inode (200,000 small files: ~1 s of a
3.4 s incremental). The helper's walk does nothing else, so it keeps ahead from the start (it
starts while the backup loads its index); one thread of it: four took 1.7 s where one takes 1.0 s,
waiting on each other in the kernel. (A thread of the backup's own instead made it slower: 3.4 s,
as it waits for the GIL; a helper of its own would cost another ~13 MiB.)

It is a hint and nothing more: names are sent when the pipe takes them and dropped when it does not,
what the helper reads or learns is thrown away, and a helper that fails changes nothing but the
speed. It opens only regular files and directories beneath the source's descriptor (inherited),
through no link, without blocking, and reads at most ``limit`` bytes of each file. At the end of its
input it reports what it read as one line, ``<files> <bytes> <entries walked>``.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading

from . import helper_process

THREADS = 4  # reads in flight (the disk's queue, not the CPU, is what they share)
START_AFTER = 256  # small files a backup reads before it starts the helper (an incremental often reads fewer)
PIPE_MAX = 1 << 20  # bytes of names waiting for the pipe; more are dropped


class ReadAhead:
    """The backup's side: :meth:`want` a file's path relative to the source, :meth:`flush` after a
    batch, :meth:`close` at the end (the helper's report, or None). The helper starts at the
    START_AFTER-th file wanted, or at once with ``walk`` (then it walks the tree first); never with
    ``LIFELINE_READ_AHEAD=0`` or where it cannot start. ``root_fd`` is needed only until it starts."""

    def __init__(self, root_fd: int, limit: int, *, walk: bool = False):
        self.root_fd, self.limit = root_fd, limit
        self.wanted = 0
        self.enabled = os.environ.get("LIFELINE_READ_AHEAD", "").strip() != "0" and bool(sys.executable)
        self.proc: subprocess.Popen | None = None
        self._out = bytearray()
        if walk and self.enabled:
            self._start(walk=True)

    def _start(self, walk: bool = False) -> None:
        root_fd, self.root_fd = self.root_fd, None  # (the caller may close it once the helper has it)
        try:
            self.proc = helper_process.start("lifeline.agent.read_ahead", str(root_fd), str(self.limit),
                                             *(["walk"] if walk else []), pass_fds=(root_fd,))
        except OSError:
            self.enabled = False
            return
        os.set_blocking(self.proc.stdin.fileno(), False)

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

    def close(self, report: bool = False) -> tuple[int, int, int] | None:
        """Stop the helper: at once (what it has not read, the backup has); with ``report``, once it has
        read what it was sent and ended its walk: (files read, their bytes, entries the walk met);
        killed after 10 s."""
        proc, self.enabled = self.proc, False  # (never started again)
        if proc is None or proc.returncode is not None:
            return None
        self._out.clear()
        if not report:
            proc.kill()
            proc.communicate()
            return None
        try:
            report, _ = proc.communicate(timeout=10)  # (closes its input: the end of the names)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
        try:
            files, nbytes, walked = map(int, report.split())
        except ValueError:
            return None
        return files, nbytes, walked


def _walk(files, met: list) -> None:
    """Stat every entry beneath the root, in a backup's walk order (see the module's doc); ``met[0]``
    counts them."""
    todo: list[str] = [""]  # directories to list, the next one in the walk's order last
    while todo:
        rel = todo.pop()
        try:
            fd = files.open_dir(rel, os.O_RDONLY)
        except (OSError, ValueError):
            continue
        subdirs = []
        try:
            with os.scandir(fd) as it:
                for d in it:
                    met[0] += 1
                    try:
                        if d.is_dir(follow_symlinks=False):
                            subdirs.append(f"{rel}/{d.name}" if rel else d.name)
                        else:
                            d.stat(follow_symlinks=False)
                    except OSError:
                        pass
        except OSError:
            pass
        finally:
            os.close(fd)
        todo.extend(sorted(subdirs, reverse=True))


def _serve(root_fd: int, limit: int, walk: bool = False) -> int:
    from .beneath import Beneath

    helper_process.quiet_child()
    files = Beneath(root_fd)
    met = [0]
    walker = threading.Thread(target=_walk, args=(files, met), daemon=True) if walk else None
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

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(THREADS)]
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
    sys.stdout.write(f"{counts[0]} {counts[1]} {met[0]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:] == ["walk"]))
