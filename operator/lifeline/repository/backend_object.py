"""What every object-store backend (S3, Azure Blob Storage) shares, on obstore.

obstore (Rust's object_store) gives one API over the services: writes are whole-object
puts (atomic), ``mode="create"`` makes an exclusive put where the service supports it, reads and
ranged reads, listing, deletes. A subclass only builds its store and says how to name its service
and credentials in an error.
"""
from __future__ import annotations

import ipaddress
import os
import urllib.parse

from lifeline.errors import UsageError

from .backend_base import Backend, ObjectInfo
from .errors import BackendError, ObjectNotFound, RepositoryExists


def env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_of(url: str, what: str, allow_http: bool | None, allow_env: str) -> tuple[str, bool]:
    """``url`` checked (http(s); plain http only to loopback unless allowed) and whether it is http."""
    ep = urllib.parse.urlparse(url)
    if ep.scheme not in ("http", "https") or not ep.hostname:
        raise UsageError(f"{what} endpoint {url!r} must be an http(s) URL")
    if ep.scheme == "http":
        allow = allow_http if allow_http is not None else (is_loopback(ep.hostname) or os.environ.get(allow_env) == "1")
        if not allow:
            raise UsageError(f"{what} endpoint {url} is plain http on a non-loopback host; use https, or set "
                             f"{allow_env}=1 if the network is trusted")
    return url.rstrip("/"), ep.scheme == "http"


def safe_endpoint(url: str | None) -> str | None:
    """An endpoint for the record: scheme, host and port, never credentials or a query."""
    if not url:
        return None
    ep = urllib.parse.urlparse(url)
    return f"{ep.scheme}://{ep.hostname}" + (f":{ep.port}" if ep.port else "")


class ObjectStoreBackend(Backend):
    service = "object store"  # "S3", "Azure Blob Storage"
    scheme = ""
    container_word = "bucket"
    credentials_hint = ""
    default_endpoint = ""
    store = None
    container = ""
    endpoint: str | None = None

    def _open(self, container: str, prefix: str, endpoint: str | None, build) -> None:
        """Name the repository (URL, endpoint: never credentials) and build the store with ``build()``."""
        self.container, self.prefix = container, prefix
        self.url = f"{self.scheme}://{container}/{prefix}" if prefix else f"{self.scheme}://{container}"
        self.endpoint = safe_endpoint(endpoint)
        try:
            self.store = build()
        except Exception as exc:  # configuration errors from object_store
            raise UsageError(f"cannot configure {self.service} access to {self.url}: {exc}") from exc

    def _err(self, exc: Exception, what: str, name: str) -> Exception:
        from obstore import exceptions as oe

        if isinstance(exc, oe.NotFoundError) or isinstance(exc, FileNotFoundError):
            return ObjectNotFound(name)
        if isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError)):
            return BackendError(f"{self.service} refused to {what} {self.url}/{name}: check the credentials "
                                f"({self.credentials_hint}) and the access policy: {_short(exc)}")
        msg = _short(exc)
        if any(m in msg for m in ("NoSuchBucket", "ContainerNotFound")) or "bucket does not exist" in msg.lower():
            return self._missing()
        return BackendError(f"{self.service} failed to {what} {self.url}/{name}: {msg}")

    def _missing(self) -> BackendError:
        return BackendError(f"{self.service} {self.container_word} {self.container!r} does not exist at "
                            f"{self.endpoint or self.default_endpoint}; create it first")

    def put(self, name: str, data, *, exclusive: bool = False, durable: bool = True) -> None:
        import obstore
        from obstore import exceptions as oe

        if isinstance(data, list):
            data = b"".join(data)
        try:
            if exclusive:
                try:
                    obstore.put(self.store, name, data, mode="create", use_multipart=False)
                    return
                except oe.AlreadyExistsError:
                    raise RepositoryExists(f"{self.url}/{name} already exists") from None
                except (oe.NotSupportedError, oe.PreconditionError):
                    if self.stat(name) is not None:
                        raise RepositoryExists(f"{self.url}/{name} already exists") from None
            obstore.put(self.store, name, data, use_multipart=len(data) > 64 * 1024 * 1024)
        except RepositoryExists:
            raise
        except Exception as exc:
            err = self._err(exc, "write", name)
            if isinstance(err, ObjectNotFound):  # a PUT only 404s when the bucket is missing
                err = self._missing()
            raise err from exc

    def get(self, name: str) -> bytes:
        import obstore

        try:
            return bytes(obstore.get(self.store, name).bytes())
        except Exception as exc:
            raise self._err(exc, "read", name) from exc

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        import obstore

        if length == 0:
            return b""
        try:
            return bytes(obstore.get_range(self.store, name, start=offset, length=length))
        except Exception as exc:
            raise self._err(exc, "read", name) from exc

    def list(self, prefix: str) -> list[ObjectInfo]:
        import obstore

        out: list[ObjectInfo] = []
        try:
            for batch in obstore.list(self.store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    lm = meta.get("last_modified")
                    out.append(ObjectInfo(meta["path"], int(meta["size"]),
                                          lm.timestamp() if lm is not None else None))
        except Exception as exc:
            raise self._err(exc, "list", prefix) from exc
        out.sort(key=lambda o: o.name)
        return out

    def delete(self, name: str) -> None:
        import obstore

        try:
            obstore.delete(self.store, name)
        except Exception as exc:
            err = self._err(exc, "delete", name)
            if not isinstance(err, ObjectNotFound):
                raise err from exc

    def stat(self, name: str) -> ObjectInfo | None:
        import obstore

        try:
            meta = obstore.head(self.store, name)
        except Exception as exc:
            err = self._err(exc, "inspect", name)
            if isinstance(err, ObjectNotFound):
                return None
            raise err from exc
        lm = meta.get("last_modified")
        return ObjectInfo(name, int(meta["size"]), lm.timestamp() if lm is not None else None)



def _short(exc: Exception) -> str:
    s = str(exc).strip().splitlines()
    return " ".join(x.strip() for x in s[:3])[:400]
