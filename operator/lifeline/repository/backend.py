"""Storage backends: a tiny object-store interface and the URL factory.

A backend stores named objects ("data/ab/abcd...", "points/..."). Every ``put`` is
atomic: a reader sees the whole object or nothing. That property, plus writing the
point manifest last, is what makes an interrupted backup publish nothing.
"""
from __future__ import annotations

import abc
import urllib.parse
from dataclasses import dataclass, field

from .errors import UsageError


@dataclass
class ObjectInfo:
    name: str
    size: int
    mtime: float | None = None


class Backend(abc.ABC):
    """Minimal object-store operations used by the repository."""

    #: URL shown to people and written into summaries (never holds credentials).
    url: str

    @abc.abstractmethod
    def put(self, name: str, data, *, exclusive: bool = False, durable: bool = True) -> None:
        """Store ``data`` (a buffer or a list of buffers) under ``name`` atomically.

        ``exclusive`` fails with RepositoryExists if the object exists. ``durable=False``
        (locks) lets a local backend skip fsync."""

    @abc.abstractmethod
    def get(self, name: str) -> bytes: ...

    @abc.abstractmethod
    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]: ...

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete ``name``; deleting a missing object is not an error."""

    @abc.abstractmethod
    def stat(self, name: str) -> ObjectInfo | None: ...

    def exists(self, name: str) -> bool:
        return self.stat(name) is not None

    def list_temporaries(self) -> list[ObjectInfo]:
        """Half-written objects left by a killed writer (backend specific)."""
        return []

    def delete_temporary(self, name: str) -> None:  # pragma: no cover - trivial
        pass

    def close(self) -> None:
        pass


@dataclass
class S3Options:
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    allow_http: bool | None = None
    extra: dict = field(default_factory=dict)


def open_backend(url: str, s3: S3Options | None = None, *, create: bool = False) -> Backend:
    """Backend for a repository URL: ``file:///path``, a plain path, ``s3://bucket/prefix`` or
    ``azure://container/prefix``."""
    if not url:
        raise UsageError("no repository given: pass --repo URL or set LIFELINE_REPOSITORY "
                         "(file:///path or s3://bucket/prefix)")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        from .backend_file import FileBackend

        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise UsageError(f"repository URL {url!r}: file URLs must look like file:///absolute/path")
            path = urllib.parse.unquote(parsed.path)
        else:
            path = url
        return FileBackend(path, create=create)
    if parsed.scheme in ("s3", "s3a"):
        from .backend_s3 import S3Backend

        bucket = parsed.netloc
        if not bucket:
            raise UsageError(f"repository URL {url!r}: expected s3://bucket/prefix")
        if parsed.username or parsed.password:
            raise UsageError("do not put credentials in the repository URL; use AWS_ACCESS_KEY_ID / "
                             "AWS_SECRET_ACCESS_KEY or --s3-access-key-id / --s3-secret-access-key")
        prefix = parsed.path.strip("/")
        return S3Backend(bucket, prefix, s3 or S3Options())
    if parsed.scheme == "azure":
        if not parsed.netloc:
            raise UsageError(f"repository URL {url!r}: expected azure://container/prefix")
        if parsed.username or parsed.password or parsed.query:
            raise UsageError("do not put credentials in the repository URL; use the environment "
                             "(AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, ...: docs/storage.md)")
        from .backend_azure import AzureBackend

        return AzureBackend(parsed.netloc, parsed.path.strip("/"))
    raise UsageError(f"repository URL {url!r}: unsupported scheme {parsed.scheme!r} "
                     "(use file:///path, s3://bucket/prefix or azure://container/prefix)")
