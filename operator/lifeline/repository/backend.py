"""Storage backends by URL (:func:`open_backend`); the interface is :mod:`.backend_base`, re-exported here."""
from __future__ import annotations

import urllib.parse

from lifeline.errors import UsageError

from .backend_azure import AzureBackend
from .backend_base import Backend, ObjectInfo, S3Options
from .backend_file import FileBackend
from .backend_gcs import GCSBackend
from .backend_s3 import S3Backend
from .throttle import Limits, throttled

__all__ = ["Backend", "Limits", "ObjectInfo", "S3Options", "open_backend"]


def open_backend(url: str, s3: S3Options | None = None, *, create: bool = False,
                 limits: Limits | None = None) -> Backend:
    """Backend for a repository URL: ``file:///path``, a plain path, ``s3://bucket/prefix``,
    ``azure://container/prefix`` or ``gs://bucket/prefix``; under bandwidth ``limits`` when given
    (:mod:`.throttle`)."""
    return throttled(_backend(url, s3, create=create), limits)


def _backend(url: str, s3: S3Options | None = None, *, create: bool = False) -> Backend:
    if not url:
        raise UsageError("no repository given: pass --repo URL or set LIFELINE_REPOSITORY "
                         "(file:///path or s3://bucket/prefix)")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise UsageError(f"repository URL {url!r}: file URLs must look like file:///absolute/path")
            path = urllib.parse.unquote(parsed.path)
        else:
            path = url
        return FileBackend(path, create=create)
    if parsed.scheme in ("s3", "s3a"):
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
        return AzureBackend(parsed.netloc, parsed.path.strip("/"))
    if parsed.scheme == "gs":
        if not parsed.netloc:
            raise UsageError(f"repository URL {url!r}: expected gs://bucket/prefix")
        if parsed.username or parsed.password or parsed.query:
            raise UsageError("do not put credentials in the repository URL; use the environment "
                             "(GOOGLE_APPLICATION_CREDENTIALS or Workload Identity: docs/storage.md)")
        return GCSBackend(parsed.netloc, parsed.path.strip("/"))
    raise UsageError(f"repository URL {url!r}: unsupported scheme {parsed.scheme!r} "
                     "(use file:///path, s3://bucket/prefix, azure://container/prefix or gs://bucket/prefix)")
