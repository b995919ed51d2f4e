"""``file://`` backend: a directory tree, atomic writes by temp file + fsync + rename."""
from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from .backend_base import Backend, ObjectInfo
from .errors import BackendError, ObjectNotFound, RepositoryExists

TMP_DIR = "tmp"


class FileBackend(Backend):
    def __init__(self, path: str, *, create: bool = False):
        self.root = Path(path).expanduser().absolute()
        self.url = "file://" + str(self.root)
        self._made_dirs: set[Path] = set()
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendError(f"cannot create repository directory {self.root}: {exc.strerror}") from exc

    # --- helpers -----------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise BackendError(f"invalid object name {name!r}")
        return self.root / name

    def _ensure_dir(self, d: Path) -> None:
        if d in self._made_dirs:
            return
        if not d.is_dir():
            d.mkdir(parents=True, exist_ok=True)
            _fsync_dir(d.parent)
        self._made_dirs.add(d)

    # --- operations ----------------------------------------------------------------
    def put(self, name: str, data, *, exclusive: bool = False, durable: bool = True) -> None:
        final = self._path(name)
        tmpdir = self.root / TMP_DIR
        try:
            self._ensure_dir(tmpdir)
            self._ensure_dir(final.parent)
            tmp = tmpdir / f"{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                try:
                    os.link(tmp, final)
                except FileExistsError:
                    raise RepositoryExists(f"{final} already exists") from None
                finally:
                    os.unlink(tmp)
            else:
                os.replace(tmp, final)
            if durable:
                _fsync_dir(final.parent)
        except OSError as exc:
            raise BackendError(f"cannot write {final}: {exc.strerror or exc}") from exc

    def get(self, name: str) -> bytes:
        p = self._path(name)
        try:
            with open(p, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise BackendError(f"cannot read {p}: {exc.strerror}") from exc

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        p = self._path(name)
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise BackendError(f"cannot read {p}: {exc.strerror}") from exc
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        out: list[ObjectInfo] = []
        if not base.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not (dirpath == str(self.root) and d == TMP_DIR)]
            for fn in filenames:
                full = os.path.join(dirpath, fn)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                out.append(ObjectInfo(rel, st.st_size, st.st_mtime))
        out.sort(key=lambda o: o.name)
        return out

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackendError(f"cannot delete {self._path(name)}: {exc.strerror}") from exc

    def stat(self, name: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(name))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        return ObjectInfo(name, st.st_size, st.st_mtime)

    def list_temporaries(self) -> list[ObjectInfo]:
        d = self.root / TMP_DIR
        out = []
        if d.is_dir():
            for e in os.scandir(d):
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                out.append(ObjectInfo(f"{TMP_DIR}/{e.name}", st.st_size, st.st_mtime))
        return out

    def delete_temporary(self, name: str) -> None:
        self.delete(name)


def _write_all(fd: int, data) -> None:
    """Write a buffer, or a list of buffers with gather writes (no joining copy)."""
    if not isinstance(data, list):
        data = [data]
    views = [memoryview(b).cast("B") for b in data if len(b)]
    while views:
        batch = views[:512]
        n = os.writev(fd, batch)
        # drop what was written, keep the rest of a partially written buffer
        while n and views:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


