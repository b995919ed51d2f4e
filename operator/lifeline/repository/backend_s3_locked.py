"""An immutable repository on S3: object versions and Object Lock, through boto3.

Why not obstore (the other backends' library): Rust's object_store, under obstore 0.12, puts an object
with a fixed set of attributes (content type, encoding, disposition, language, cache control, storage
class, user metadata): it cannot send ``x-amz-object-lock-mode`` / ``x-amz-object-lock-retain-until-date``
with a PUT, and it has no call for PutObjectRetention, GetObjectRetention, ListObjectVersions or a
delete of one version. (Its client's ``default_headers`` would send lock headers with every request,
GETs included, one fixed date per store.) boto3 has all of them, signs with the same credentials
(environment, web identity, instance profile) and sends the checksum Object Lock requires with a PUT.

The rules, all of which make an attacker holding these credentials harmless to what was written:

* **put** writes a name once: ``If-None-Match: *`` and the lock (mode and retain-until date, ``days`` of
  the repository, :data:`~.immutability.LOCK_RETENTION` for a lock record) in the same request;
* **the first version of a name is the object**: listings come from ListObjectVersions and every read
  names the version. Lifeline never writes a name twice, so a later version is somebody's overwrite
  and a delete marker somebody's delete: both are ignored;
* **delete** removes every version of a name (delete markers too), newest first, and stops with
  :class:`~.errors.RetentionActive` at the first that storage still retains: the first version goes last;
* **retention** and **extend_retention** read and lengthen the lock of the first version.
"""
from __future__ import annotations

import datetime as dt
import threading
import time

from lifeline.errors import LifelineError, UsageError

from .backend_base import Backend, ObjectInfo, S3Options
from .backend_object import endpoint_of, env, safe_endpoint
from .errors import BackendError, ObjectNotFound, RepositoryExists, RetentionActive
from .immutability import LOCK_RETENTION, Retention
from .layout import LOCKS_DIR

_NOT_FOUND = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden",
            "InvalidToken", "ExpiredToken"}


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


class S3ObjectLockBackend(Backend):
    service = "S3"
    write_once = True

    def __init__(self, bucket: str, prefix: str, opts: S3Options, immutability=None):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # a dependency; only a broken install lacks it
            raise UsageError(f"an immutable s3:// repository needs boto3 ({exc}): pip install boto3") from None
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.immutability = immutability
        endpoint = opts.endpoint or env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        kwargs: dict = {"region_name": opts.region or env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"}
        if endpoint:
            kwargs["endpoint_url"], _http = endpoint_of(endpoint, "S3", opts.allow_http, "LIFELINE_S3_ALLOW_HTTP")
        self.endpoint = safe_endpoint(endpoint)
        key_id = opts.access_key_id or env("AWS_ACCESS_KEY_ID")
        secret = opts.secret_access_key or env("AWS_SECRET_ACCESS_KEY")
        if key_id and secret:
            kwargs.update(aws_access_key_id=key_id, aws_secret_access_key=secret,
                          aws_session_token=opts.session_token or env("AWS_SESSION_TOKEN"))
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16,
                        s3={"addressing_style": "path" if endpoint else "auto"})
        self.client = boto3.session.Session().client("s3", config=config, **kwargs)
        self._versions: dict[str, tuple[str, int, float | None]] = {}  # name -> first version (id, size, mtime)
        self._lock = threading.Lock()

    # --- names ---------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    # --- errors --------------------------------------------------------------------
    def _err(self, exc: Exception, what: str, name: str) -> Exception:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return BackendError(f"S3 failed to {what} {self.url}/{name}: {str(exc)[:300]}")
        code = str(exc.response.get("Error", {}).get("Code", ""))
        msg = str(exc.response.get("Error", {}).get("Message", ""))
        if code == "NoSuchBucket":
            return BackendError(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint or 'AWS'}; create it "
                                "first, with Object Lock enabled")
        if code in _NOT_FOUND:
            return ObjectNotFound(name)
        if code in _REFUSED:
            return BackendError(f"S3 refused to {what} {self.url}/{name}: check the credentials "
                                f"(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and the access policy: {code} {msg}"[:500])
        return BackendError(f"S3 failed to {what} {self.url}/{name}: {code} {msg}"[:500])

    @staticmethod
    def _locked(exc: Exception) -> bool:
        """Whether a refused delete or retention change is the object lock speaking."""
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        err = exc.response.get("Error", {})
        text = f"{err.get('Code', '')} {err.get('Message', '')}".lower()
        return err.get("Code") in ("AccessDenied", "InvalidRequest") and (
            "lock" in text or "worm" in text or "retention" in text or err.get("Code") == "AccessDenied")

    # --- the bucket ----------------------------------------------------------------
    def check_bucket(self) -> None:
        """Refuse a bucket without Object Lock (``init --immutable-days``): nothing would be locked."""
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket).get("ObjectLockConfiguration", {})
        except Exception as exc:  # noqa: BLE001 - named below
            from botocore.exceptions import ClientError

            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
            if code in ("ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound"):
                conf = {}
            else:
                raise self._err(exc, "read the Object Lock configuration of", "") from exc
        if conf.get("ObjectLockEnabled") != "Enabled":
            raise UsageError(f"S3 bucket {self.bucket!r} has no Object Lock, so nothing written to it can be made "
                             "immutable: create the bucket with Object Lock enabled (aws s3api create-bucket "
                             "--object-lock-enabled-for-bucket ...; docs/immutability.md)")

    # --- versions ------------------------------------------------------------------
    def _scan(self, prefix_key: str) -> dict[str, tuple[str, int, float | None]]:
        """name -> its first version (id, size, mtime), for every name under ``prefix_key`` that has one."""
        first: dict[str, tuple[str, int, float | None]] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix_key):
            for v in page.get("Versions", ()):  # per key, newest first: the last one seen is the first written
                lm = v.get("LastModified")
                first[self._name(v["Key"])] = (v["VersionId"], int(v.get("Size", 0)),
                                               lm.timestamp() if lm is not None else None)
        return first

    def _all_versions(self, name: str) -> list[tuple[str, bool]]:
        """Every version of exactly ``name`` (id, is a delete marker), newest first."""
        key = self._key(name)
        out: list[tuple[str, bool, float]] = []
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                for v in page.get(kind, ()):
                    if v["Key"] == key:
                        lm = v.get("LastModified")
                        out.append((v["VersionId"], marker, lm.timestamp() if lm is not None else 0.0))
        out.sort(key=lambda v: v[2], reverse=True)
        return [(vid, marker) for vid, marker, _t in out]

    def _first(self, name: str) -> tuple[str, int, float | None]:
        with self._lock:
            hit = self._versions.get(name)
        if hit is not None:
            return hit
        try:
            found = self._scan(self._key(name)).get(name)
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "list the versions of", name) from exc
        if found is None:
            raise ObjectNotFound(name)
        with self._lock:
            self._versions[name] = found
        return found

    # --- operations ----------------------------------------------------------------
    def put(self, name: str, data, *, exclusive: bool = False, durable: bool = True) -> None:
        from botocore.exceptions import ClientError

        imm = self.immutability
        if imm is None:
            raise BackendError(f"{self.url}: not opened as an immutable repository; refusing to write {name}")
        if isinstance(data, list):
            data = b"".join(data)
        if exclusive and self.stat(name) is not None:  # a first version under a delete marker counts
            raise RepositoryExists(f"{self.url}/{name} already exists")
        now = time.time()
        until = now + (LOCK_RETENTION if name.startswith(LOCKS_DIR) else imm.seconds)
        try:
            r = self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=bytes(data), IfNoneMatch="*",
                                       ObjectLockMode=imm.mode.upper(), ObjectLockRetainUntilDate=_utc(until))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                if exclusive:
                    raise RepositoryExists(f"{self.url}/{name} already exists") from None
                raise BackendError(f"{self.url}/{name} exists already, and an immutable repository never "
                                   "overwrites an object") from None
            raise self._err(exc, "write", name) from exc
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "write", name) from exc
        with self._lock:
            self._versions.setdefault(name, (r.get("VersionId") or "null", len(data), now))

    def get(self, name: str) -> bytes:
        vid, _size, _mtime = self._first(name)
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name), VersionId=vid)["Body"].read()
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "read", name) from exc

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        vid, size, _mtime = self._first(name)
        if offset >= size:
            return b""
        end = min(offset + length, size) - 1
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name), VersionId=vid,
                                          Range=f"bytes={offset}-{end}")["Body"].read()
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "read", name) from exc

    def list(self, prefix: str) -> list[ObjectInfo]:
        try:
            found = self._scan(self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else ""))
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "list", prefix) from exc
        with self._lock:
            self._versions.update(found)
        return sorted((ObjectInfo(n, size, mtime) for n, (_v, size, mtime) in found.items()), key=lambda o: o.name)

    def stat(self, name: str) -> ObjectInfo | None:
        try:
            _vid, size, mtime = self._first(name)
        except ObjectNotFound:
            return None
        return ObjectInfo(name, size, mtime)

    def delete(self, name: str) -> None:
        """Every version of ``name``, newest first; RetentionActive at the first one still retained."""
        try:
            versions = self._all_versions(name)
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "list the versions of", name) from exc
        for vid, _marker in versions:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(name), VersionId=vid)
            except Exception as exc:  # noqa: BLE001
                if self._locked(exc):
                    try:
                        until = self._retention_of(name, vid).until
                    except LifelineError:
                        until = None
                    if until is None or until > time.time() - 60:  # else: refused for another reason
                        raise RetentionActive(name, until) from None
                raise self._err(exc, "delete", name) from exc
        with self._lock:
            self._versions.pop(name, None)

    # --- retention -------------------------------------------------------------------
    def _retention_of(self, name: str, vid: str) -> Retention:
        try:
            h = self.client.head_object(Bucket=self.bucket, Key=self._key(name), VersionId=vid)
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "inspect", name) from exc
        until = h.get("ObjectLockRetainUntilDate")
        return Retention(h.get("ObjectLockMode"), until.timestamp() if until is not None else None)

    def retention(self, name: str) -> Retention:
        vid, _size, _mtime = self._first(name)
        return self._retention_of(name, vid)

    def extend_retention(self, name: str, until: float, current: Retention | None = None) -> None:
        vid, _size, _mtime = self._first(name)
        mode = (current.mode if current is not None and current.mode else
                (self.immutability.mode if self.immutability else "compliance")).upper()
        try:
            self.client.put_object_retention(Bucket=self.bucket, Key=self._key(name), VersionId=vid,
                                             Retention={"Mode": mode, "RetainUntilDate": _utc(until)})
        except Exception as exc:  # noqa: BLE001
            raise self._err(exc, "extend the retention of", name) from exc
