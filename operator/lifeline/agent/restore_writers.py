"""Writer processes of a restore: small files are decrypted, created and given their attributes in
other processes than the one that reads the tree and the storage.

Why processes: a small file is mostly system calls (create, write, chmod, chown, times), each of
which gives up the GIL, so threads of one process take turns rather than overlap (200,000 files:
one thread 10.6 s, eight 18 s). A writer has its own interpreter and shares nothing with the main
process but a pipe and the target directory's descriptor.

A writer is started as :mod:`.helper_process` says: from ``/``, with no working directory on its
module path and no credentials in its environment. What it is given and may do: the epoch's
chunk keys (over its pipe, to open chunks; not the data key), the target's
descriptor (inherited: it resolves every path beneath it, as the main process does) and, per task,
the files' entries with their chunks' sealed bytes, read by the main process. It never reads the
storage nor the key provider; it never opens a path outside the target.

The protocol on the writer's stdin and stdout: frames of an 8-byte length and a pickle. First the
settings, then a task per frame, each answered by one frame; end of input ends the writer. The
pickles come only from the two processes of one command, never from storage. The writer's side is
:mod:`.restore_writer_main` (it imports the restorer, which imports this module).

The sealed bytes of a task's chunks do not go through the pipe: the main process reads a span's
stretches of the packs into a slot of :class:`SharedStretches`, memory it shares with the writers
(inherited, mapped read-only there), and a task names where each chunk lies in it. A pipe costs a
copy on each side and a pickle of each blob: ~1.2 s of CPU for the 350 MB of a 200,000-file
restore, on two cores that are both busy. The memory holds what storage holds (sealed bytes:
nothing a writer could not read from the packs), and a slot is reused only after its writer answered.
"""
from __future__ import annotations

import mmap
import os
import pickle
import queue
import struct
import subprocess

from lifeline.errors import LifelineError

from . import helper_process

_LEN = struct.Struct("<Q")
_F_SEAL_FUTURE_WRITE = 0x0010


def send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(_LEN.pack(len(data)))
    stream.write(data)
    stream.flush()


def picklable(exc: BaseException) -> BaseException:
    """``exc``, or a LifelineError with its words when it does not survive a frame (both ways)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return LifelineError(f"{type(exc).__name__}: {exc}")


def receive(stream):
    """The next frame's object, or None at the end of the stream."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    n = _LEN.unpack(head)[0]
    data = stream.read(n)
    if len(data) < n:
        return None
    return pickle.loads(data)


class SharedStretches:
    """``slots`` slots of :attr:`SLOT` bytes of memory that writer processes map too: a span's
    stretches are read into a slot (:meth:`take`, :meth:`put`) and read there by the writer that
    writes the span; the slot is given back (:meth:`give`) once it answered. Only this process
    writes to it (the memory is sealed against the writers' writes, see :meth:`_seal`)."""

    SLOT = 4 << 20  # what a span reads at most (restore.Span.MAX_BYTES)

    def __init__(self, slots: int):
        self.fd = os.memfd_create("lifeline-restore-stretches", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.fd, slots * self.SLOT)
            self.map = mmap.mmap(self.fd, slots * self.SLOT)
            self._seal()
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self.map)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for slot in range(slots):
            self._free.put(slot)

    def _seal(self) -> None:
        """Once this process has it mapped for writing: nobody (a writer reopening the descriptor
        through /proc among them) may resize it, write to it or map it for writing again."""
        import fcntl

        fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        try:  # (Linux 5.1 and later; Python has no name for it)
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, _F_SEAL_FUTURE_WRITE)
        except OSError:
            pass

    @classmethod
    def make(cls, slots: int) -> "SharedStretches | None":
        """Shared slots, or None where memory cannot be shared so (then the bytes go through the pipe)."""
        try:
            return cls(slots)
        except (AttributeError, OSError, ValueError):  # (no memfd_create: not Linux, or too old)
            return None

    def take(self) -> int:
        return self._free.get()

    def give(self, slot: int) -> None:
        self._free.put(slot)

    def put(self, slot: int, at: int, data) -> int:
        """Copy ``data`` to ``at`` bytes into ``slot``; where it starts in the whole memory."""
        start = slot * self.SLOT + at
        if at < 0 or at + len(data) > self.SLOT:
            raise ValueError("a stretch does not fit in its slot")
        self.view[start:start + len(data)] = data
        return start

    def close(self) -> None:
        self.view.release()
        self.map.close()
        os.close(self.fd)


def map_shared(fd: int) -> memoryview:
    """In a writer: the shared stretches (:class:`SharedStretches`), read-only."""
    return memoryview(mmap.mmap(fd, 0, prot=mmap.PROT_READ))


class WriterProcess:
    """One writer process, driven by one thread of the main process at a time."""

    def __init__(self, root_fd: int, settings: dict, shared_fd: int | None = None):
        fds = (root_fd,) if shared_fd is None else (root_fd, shared_fd)
        self.proc = helper_process.start("lifeline.agent.restore_writer_main", *map(str, fds), pass_fds=fds)
        try:
            send(self.proc.stdin, settings)
        except OSError:
            self.close()
            raise

    def call(self, task) -> dict:
        """Send a task, wait for its answer: a dict, with ``raise`` holding what the writer raised."""
        try:
            send(self.proc.stdin, task)
            answer = receive(self.proc.stdout)
        except OSError:  # (a broken pipe among them: the writer is gone)
            answer = None
        if answer is None:
            code = self.proc.poll()
            raise LifelineError(f"a restore writer process stopped (exit code {code}); the restore is incomplete")
        return answer

    def close(self) -> None:
        """End the writer: its input closes and it exits; one that does not within 30 s is killed."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
