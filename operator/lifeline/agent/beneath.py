"""File operations confined beneath one directory: the only way a restore touches its target.

Every operation is relative to a descriptor of the target directory (opened once, with
``O_NOFOLLOW``), never to a joined path string. The components leading to an entry are resolved
without following any symbolic link and without leaving the target:

- with Linux ``openat2(2)`` and ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS``:
  one system call, the kernel refuses (``ELOOP``/``EXDEV``) a path through any link;
- where ``openat2`` is missing (kernels before 5.6, seccomp filters answering ``ENOSYS`` or
  ``EPERM``), by walking component by component with ``openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)``.

The final component is created relative to its parent's descriptor with ``O_CREAT | O_EXCL |
O_NOFOLLOW``, ``mkdirat``, ``symlinkat`` or ``mknodat``, so it is never followed either; what is
already there is only ever removed by ``unlinkat`` (a link is removed itself, never what it points
to) or by ``shutil.rmtree(dir_fd=...)``, which does not follow links. Metadata goes through a
descriptor of the object (``fchmod``, ``fchown``, ``futimens``) or the ``*at`` calls with
``AT_SYMLINK_NOFOLLOW``.

Paths given here must already be checked (relative, no empty, ``.`` or ``..`` component): see
:func:`lifeline.agent.manifest_check.check_manifest`. The checks here are the second line: a target
changed under the restore, or a link planted in it.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import shutil
import stat
from collections.abc import Callable
from contextlib import contextmanager

O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = os.O_NOFOLLOW
O_DIRECTORY = os.O_DIRECTORY
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
O_NOATIME = getattr(os, "O_NOATIME", 0)

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

# openat2 has number 437 on every architecture that uses the common system call table (all the
# ones added since 5.1 share numbers); the exceptions are listed, anything unknown walks instead.
_NR_OPENAT2 = {"alpha": 547, "ia64": 1547}
_COMMON = ("x86_64", "amd64", "i386", "i486", "i586", "i686", "aarch64", "arm64", "armv6l", "armv7l",
           "armv8l", "ppc", "ppc64", "ppc64le", "s390x", "riscv64", "loongarch64", "sparc64", "parisc64")

# Errors of the probe that mean "no usable openat2 here": walk instead.
_NO_OPENAT2 = {errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP}
# Errors that mean "a component on the way is not a directory of ours" (a link, a file).
NOT_BENEATH = {errno.ELOOP, errno.EXDEV, errno.ENOTDIR}


def _syscall_number() -> int | None:
    if not hasattr(os, "O_PATH"):  # not Linux
        return None
    machine = platform.machine().lower()
    if machine in _NR_OPENAT2:
        return _NR_OPENAT2[machine]
    return 437 if machine in _COMMON else None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_NR = _syscall_number()
_SIZE = ctypes.c_size_t(ctypes.sizeof(_OpenHow))
try:
    _syscall = ctypes.CDLL(None, use_errno=True).syscall if _NR is not None else None
    if _syscall is not None:
        _syscall.restype = ctypes.c_long
except (OSError, AttributeError):  # pragma: no cover - no libc symbol table
    _syscall = None

_NR_ARG = ctypes.c_long(_NR or 0)
_HOWS: dict[tuple[int, int, int], object] = {}  # (flags, mode, resolve) -> a reference to its open_how

# Tests set this to False to exercise the component walk on a kernel that has openat2.
OPENAT2: bool | None = None


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = RESOLVE) -> int:
    """openat2(2) with ``resolve``; raises OSError (ENOSYS where there is none)."""
    if _syscall is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)
    key = (flags, mode if flags & os.O_CREAT else 0, resolve)
    how = _HOWS.get(key)
    if how is None:  # (one a kind: a restore opens 200,000 files with the same three)
        how = _HOWS[key] = ctypes.byref(_OpenHow(flags | O_CLOEXEC, key[1], resolve))
    for _attempt in range(64):
        fd = _syscall(_NR_ARG, ctypes.c_int(dirfd), os.fsencode(path), how, _SIZE)
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):  # EAGAIN: a rename raced the lookup; try again
            break
    raise OSError(err, os.strerror(err), path)


def without_atime(opener: Callable[[int], int]) -> int:
    """``opener(O_NOATIME)``: a backup reads a file or lists a directory without moving its access
    time (which the next backup would take for a change, and which the owner may rely on); the
    kernel allows that flag only to the owner or a holder of CAP_FOWNER, so where it answers EPERM
    the same open is made without it."""
    try:
        return opener(O_NOATIME)
    except PermissionError as exc:
        if exc.errno != errno.EPERM or not O_NOATIME:
            raise
    return opener(0)


def split(rel: str) -> tuple[str, str]:
    """``"a/b/c"`` -> ``("a/b", "c")``; ``"c"`` -> ``("", "c")``."""
    head, _, name = rel.rpartition("/")
    return head, name


class Beneath:
    """Operations on paths relative to ``root_fd`` that never leave it nor follow a link."""

    def __init__(self, root_fd: int, *, use_openat2: bool | None = None):
        self.root = root_fd
        if use_openat2 is None:
            use_openat2 = OPENAT2
        if use_openat2 is None:
            use_openat2 = self._probe()
        self.openat2 = bool(use_openat2)

    def _probe(self) -> bool:
        try:
            os.close(openat2(self.root, ".", O_PATH | O_DIRECTORY))
            return True
        except OSError as exc:
            if exc.errno in _NO_OPENAT2:
                return False
            raise

    # --- resolution ---------------------------------------------------------------------
    def open(self, rel: str, flags: int, mode: int = 0) -> int:
        """Open ``rel`` (not ``""``) beneath the root; no component, the last included, is followed."""
        flags |= O_NOFOLLOW | O_CLOEXEC
        if self.openat2:
            return openat2(self.root, rel, flags, mode)
        head, name = split(rel)
        pfd = self.open_dir(head) if head else self.root
        try:
            return os.open(name, flags, mode, dir_fd=pfd)
        finally:
            if pfd != self.root:
                os.close(pfd)

    def open_file(self, rel: str) -> int:
        """A regular file beneath the root, opened for reading without blocking (a FIFO that took
        its place is refused, not waited on): OSError ``EINVAL`` if it is not a regular file."""
        fd = without_atime(lambda quiet: self.open(rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | quiet))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "it is no longer a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_dir(self, rel: str, flags: int = O_PATH) -> int:
        """A new descriptor of the directory ``rel`` (``""``: the root itself)."""
        if not rel:
            return os.open(".", flags | O_DIRECTORY | O_CLOEXEC, dir_fd=self.root)
        if self.openat2:
            return openat2(self.root, rel, flags | O_DIRECTORY | O_NOFOLLOW)
        cur = self.root
        parts = rel.split("/")
        try:
            for i, part in enumerate(parts):
                f = flags if i == len(parts) - 1 else O_PATH
                nxt = os.open(part, f | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, dir_fd=cur)
                if cur != self.root:
                    os.close(cur)
                cur = nxt
        except BaseException:
            if cur != self.root:
                os.close(cur)
            raise
        return cur

    @contextmanager
    def parent(self, rel: str):
        """``with b.parent("a/b/c") as (dir_fd, "c")``: the parent directory's descriptor."""
        head, name = split(rel)
        pfd = self.open_dir(head) if head else self.root
        try:
            yield pfd, name
        finally:
            if pfd != self.root:
                os.close(pfd)

    def obstacle(self, rel: str) -> tuple[str, str] | None:
        """The first component of ``rel`` that is not a directory: (its path, what it is)."""
        cur = ""
        for part in rel.split("/"):
            cur = f"{cur}/{part}" if cur else part
            name = split(cur)[1]
            try:
                with self.parent(cur) as (pfd, _):
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        try:
                            to = os.readlink(name, dir_fd=pfd)
                        except OSError:
                            to = "?"
                        return cur, f"a symbolic link (to {to!r})"
            except OSError:
                return None
            if not stat.S_ISDIR(st.st_mode):
                return cur, "not a directory"
        return None

    # --- creation ---------------------------------------------------------------------------
    def create_file(self, rel: str, *, replace: bool) -> int:
        """A new, empty file ``rel`` open for writing (mode 0600 until the restore sets it).

        Whatever is at ``rel`` already (a file, a hard link to a file elsewhere, a symbolic link, a
        directory) is an error, or with ``replace`` is removed first: never written through."""
        try:
            return self.open(rel, CREATE_FLAGS, 0o600)
        except FileExistsError:
            if not replace:
                raise
        with self.parent(rel) as (pfd, name):
            remove_at(pfd, name)
            return os.open(name, CREATE_FLAGS, 0o600, dir_fd=pfd)

    def mkdir(self, rel: str, *, replace: bool) -> bool:
        """Make the directory ``rel`` (mode 0700 until the restore sets it); True when made.

        A directory already there is kept (False); anything else there (a link, a file) is an
        error, or with ``replace`` is removed (the link itself, never what it points to)."""
        with self.parent(rel) as (pfd, name):
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
                return True
            except FileExistsError:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    return False
                if not replace:
                    raise
                os.unlink(name, dir_fd=pfd)
                os.mkdir(name, 0o700, dir_fd=pfd)
                return True

    def unlink(self, rel: str) -> None:
        """Remove the file ``rel`` (a link itself); a missing one is fine."""
        try:
            with self.parent(rel) as (pfd, name):
                os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass


def remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` whatever it is: a directory recursively without following
    links (``shutil.rmtree`` on descriptors), anything else (links included) with unlinkat."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - not on Linux
            raise OSError(errno.ENOTSUP, "cannot remove a directory safely on this platform", name)
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def chmod_node(dir_fd: int, name: str, mode: int, kind: int) -> None:
    """chmod a device node without following a link there and without opening the device:
    through an O_PATH descriptor (checked to be a ``kind`` node) and /proc/self/fd."""
    fd = os.open(name, O_PATH | O_NOFOLLOW | O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if stat.S_IFMT(st.st_mode) != kind:
            raise OSError(errno.EEXIST, "replaced while being restored", name)
        try:
            os.chmod(f"/proc/self/fd/{fd}", mode)
        except FileNotFoundError:  # no /proc: AT_SYMLINK_NOFOLLOW (glibc >= 2.32 does it)
            os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(fd)
