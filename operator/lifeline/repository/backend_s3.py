"""``s3://bucket/prefix`` backend on obstore (Rust object_store)."""
from __future__ import annotations


from lifeline.errors import UsageError

from .backend_base import S3Options
from .backend_object import ObjectStoreBackend, endpoint_of, env


class S3Backend(ObjectStoreBackend):
    service = "S3"
    scheme = "s3"
    credentials_hint = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    default_endpoint = "AWS"

    def __init__(self, bucket: str, prefix: str, opts: S3Options):
        import obstore  # noqa: F401 - imported lazily so file:// works without it
        from obstore.store import S3Store

        endpoint = opts.endpoint or env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        region = opts.region or env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        key_id = opts.access_key_id or env("AWS_ACCESS_KEY_ID")
        secret = opts.secret_access_key or env("AWS_SECRET_ACCESS_KEY")
        token = opts.session_token or env("AWS_SESSION_TOKEN")
        config: dict = {"region": region}
        client_options: dict = {}
        if endpoint:
            try:
                config["endpoint"], http = endpoint_of(endpoint, "S3", opts.allow_http, "LIFELINE_S3_ALLOW_HTTP")
            except UsageError as exc:
                raise UsageError(str(exc).replace("if the network is trusted",
                                                  "(or pass --s3-allow-http) if the network is trusted")) from None
            if http:
                client_options["allow_http"] = True
        if key_id and secret:
            config["access_key_id"] = key_id
            config["secret_access_key"] = secret
            if token:
                config["session_token"] = token
        config.update(opts.extra)
        self.bucket = bucket
        self.opts = opts
        self._open(bucket, prefix, endpoint, lambda: S3Store(bucket, prefix=prefix or None, config=config,
                                                             client_options=client_options or None))

    def write_once_view(self, immutability=None):
        """The same bucket and prefix through S3's object versions and Object Lock (boto3): what an
        immutable repository is read and written with (:mod:`.backend_s3_locked`)."""
        from .backend_s3_locked import S3ObjectLockBackend

        return S3ObjectLockBackend(self.bucket, self.prefix, self.opts, immutability)


__all__ = ["S3Backend"]
