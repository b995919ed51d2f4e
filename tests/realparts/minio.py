"""MinIO, a real S3 server that enforces Object Lock, on 127.0.0.1: for the immutable-repository tests.

moto's S3 server (tests/realparts/s3.py) refuses to delete a locked version, but lets a COMPLIANCE
retention be shortened, the mode be changed, and versioning be suspended on a locked bucket: it
cannot show that an attacker holding the backup credentials is harmless. MinIO refuses all of
those (docs/immutability.md lists what was tried on both). The binary is upstream MinIO
(github.com/minio/minio, pinned in tools/minio/go.mod), built from its Go module into .tools/bin by
scripts/build-minio.sh. One drive in a temporary directory; the root user's credentials are the
only ones, and under COMPLIANCE retention even they cannot delete or shorten anything.
"""
from __future__ import annotations

import urllib.request
from pathlib import Path

from lifeline.devstack.children import ChildServer, free_port, start_on_free_port

from .scratch_server import ScratchServer
from .tools import repo_root


def binary() -> Path | None:
    found = repo_root() / ".tools" / "bin" / "minio"
    return found if found.is_file() else None


class MinIO(ScratchServer):
    prefix = "minio-"
    region = "us-east-1"
    access_key = "lifeline-minio-root"
    secret_key = "lifeline-minio-secret"


    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def make_bucket(self, name: str, *, object_lock: bool = True) -> str:
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=2) as resp:
            return resp.status == 200

    def _launch(self, port: int) -> tuple[ChildServer, str]:
        self.port = port
        where = self.where
        argv = [str(binary()), "server", str(where / "data"), "--quiet", "--address", f"127.0.0.1:{port}",
                "--console-address", f"127.0.0.1:{free_port()}"]
        env = {"MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key,
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "HOME": str(where)}
        child = ChildServer(argv, log_path=where / f"minio-{port}.log", env=env, scratch=where)
        return child, f"MinIO on {self.endpoint}"

    def __enter__(self) -> "MinIO":
        (self._scratch() / "data").mkdir()
        self._child = start_on_free_port(self._launch, self._answers, 60)
        return self
