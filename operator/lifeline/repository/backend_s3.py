"""``s3://bucket/prefix`` backend on obstore (Rust object_store)."""
from __future__ import annotations

import ipaddress
import os
import urllib.parse

from .backend import Backend, ObjectInfo, S3Options
from .errors import BackendError, ObjectNotFound, RepositoryExists, UsageError


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class S3Backend(Backend):
    def __init__(self, bucket: str, prefix: str, opts: S3Options):
        import obstore  # noqa: F401 - imported lazily so file:// works without it
        from obstore.store import S3Store

        endpoint = opts.endpoint or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        region = opts.region or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        key_id = opts.access_key_id or _env("AWS_ACCESS_KEY_ID")
        secret = opts.secret_access_key or _env("AWS_SECRET_ACCESS_KEY")
        token = opts.session_token or _env("AWS_SESSION_TOKEN")
        config: dict = {"region": region}
        client_options: dict = {}
        if endpoint:
            ep = urllib.parse.urlparse(endpoint)
            if ep.scheme not in ("http", "https") or not ep.hostname:
                raise UsageError(f"S3 endpoint {endpoint!r} must be an http(s) URL")
            if ep.scheme == "http":
                allow = opts.allow_http
                if allow is None:
                    allow = _is_loopback(ep.hostname) or os.environ.get("LIFELINE_S3_ALLOW_HTTP") == "1"
                if not allow:
                    raise UsageError(
                        f"S3 endpoint {endpoint} is plain http on a non-loopback host; use https, or pass "
                        "--s3-allow-http (or LIFELINE_S3_ALLOW_HTTP=1) if the network is trusted")
                client_options["allow_http"] = True
            config["endpoint"] = endpoint.rstrip("/")
        if key_id and secret:
            config["access_key_id"] = key_id
            config["secret_access_key"] = secret
            if token:
                config["session_token"] = token
        config.update(opts.extra)
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        if endpoint:
            # Endpoint without any userinfo: for the record, never credentials.
            ep = urllib.parse.urlparse(endpoint)
            self.endpoint = f"{ep.scheme}://{ep.hostname}" + (f":{ep.port}" if ep.port else "")
        else:
            self.endpoint = None
        try:
            self.store = S3Store(bucket, prefix=prefix or None, config=config,
                                 client_options=client_options or None)
        except Exception as exc:  # configuration errors from object_store
            raise UsageError(f"cannot configure S3 access to {self.url}: {exc}") from exc

    def _err(self, exc: Exception, what: str, name: str) -> Exception:
        from obstore import exceptions as oe

        if isinstance(exc, oe.NotFoundError) or isinstance(exc, FileNotFoundError):
            return ObjectNotFound(name)
        if isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError)):
            return BackendError(f"S3 refused to {what} {self.url}/{name}: check the credentials "
                                f"(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and bucket policy: {_short(exc)}")
        msg = _short(exc)
        if "NoSuchBucket" in msg or "bucket does not exist" in msg.lower():
            return BackendError(f"S3 bucket {self.bucket!r} does not exist at "
                                f"{self.endpoint or 'AWS'}; create it first")
        return BackendError(f"S3 failed to {what} {self.url}/{name}: {msg}")

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
                err = BackendError(f"S3 bucket {self.bucket!r} does not exist at "
                                   f"{self.endpoint or 'AWS'}; create it first")
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
