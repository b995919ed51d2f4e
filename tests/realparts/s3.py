"""A real S3 API (moto's server) on a loopback port, for the repository's S3 backend.

moto's ThreadedMotoServer serves the S3 HTTP API from a thread of this process, so it dies
with the process by construction; any access key is accepted.
"""

from __future__ import annotations

import logging
import urllib.request

from .ports import wait_for


class S3Server:
    """moto's S3 on 127.0.0.1. Use as a context manager or start()/stop()."""

    region = "us-east-1"
    access_key = "lifeline-test-key"
    secret_key = "lifeline-test-secret"

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._server = None

    @staticmethod
    def available() -> tuple[bool, str]:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            return False, f"pip package moto[server] not installed ({exc}); run `make test`"
        return True, ""

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("S3Server is not started")
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self):
        """A boto3 S3 client bound to this server."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )

    def make_bucket(self, name: str) -> str:
        if not 3 <= len(name) <= 63:
            raise ValueError(f"S3 bucket names need 3-63 characters, got {name!r}")
        self.client().create_bucket(Bucket=name)
        return name

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2) as resp:
            return resp.status == 200

    def start(self) -> "S3Server":
        if self._server is not None:
            return self
        from moto.server import ThreadedMotoServer

        access_log = logging.getLogger("werkzeug")  # one stderr line per request otherwise
        if access_log.level == logging.NOTSET:
            access_log.setLevel(logging.WARNING)

        # Port 0: the kernel picks a free port at bind time, so no race with other workers.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        self.port = server.get_host_and_port()[1]
        self._server = server
        wait_for(self._answers, self.startup_timeout, f"moto S3 server on {self.endpoint}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
