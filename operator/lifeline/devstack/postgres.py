"""A real PostgreSQL server in a directory of its own on a loopback port, for `lifeline dev up` and tests.

Lifeline backs up the byte stream of `pg_dump` and verifies restores with a SQL row count,
so the demo's "HIS" database and the tests need a real server and the real client binaries (Debian's `postgresql`). initdb and
postgres refuse to run as root: as root, the data directory belongs to the `postgres` user
and both run as that user (Popen's user=/group=, so the server is our direct child and a
signal reaches it without a `runuser` in between).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .children import ChildServer, start_on_free_port

PG_ROOT = Path("/usr/lib/postgresql")
MISSING = "Debian package postgresql not installed (`make system-packages` as root installs it)"


def find_bin_dir() -> Path | None:
    """/usr/lib/postgresql/<highest version>/bin, if it has initdb."""
    if not PG_ROOT.is_dir():
        return None
    versions = []
    for entry in PG_ROOT.iterdir():
        if re.fullmatch(r"\d+(\.\d+)?", entry.name) and (entry / "bin" / "initdb").exists():
            versions.append((tuple(int(p) for p in entry.name.split(".")), entry / "bin"))
    return max(versions)[1] if versions else None


class PostgresServer:
    """initdb + postgres on 127.0.0.1. Use as a context manager or start()/stop()."""

    host = "127.0.0.1"
    user = "postgres"

    def __init__(self, *, bin_dir: Path | None = None, startup_timeout: float = 60.0,
                 workdir: Path | None = None) -> None:
        """``workdir``: where data and logs go (kept; the demo's state directory), else a temp dir."""
        self.bin_dir = bin_dir or find_bin_dir()
        self.workdir = Path(workdir) if workdir else None
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._child: ChildServer | None = None
        self._scratch: Path | None = None

    @staticmethod
    def available() -> tuple[bool, str]:
        if find_bin_dir() is None:
            return False, MISSING
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False, "running as root but there is no `postgres` user to run the server as"
        return True, ""

    # -- what clients need -------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user}

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def psql(self, db: str, sql: str, *, timeout: float = 60.0) -> str:
        """Run `sql` with the real psql; return its stdout (unaligned, tuples only)."""
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", db, "-f", "-"],
            input=sql, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql on {db!r} failed ({result.returncode}): "
                               f"{result.stderr.strip()}\nSQL: {sql}")
        return result.stdout

    def createdb(self, name: str) -> str:
        quoted = '"' + name.replace('"', '""') + '"'
        self.psql("postgres", f"CREATE DATABASE {quoted};")
        return name

    # -- lifecycle ---------------------------------------------------------------------
    def _as_server_user(self) -> dict:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def _initdb(self, data: Path, log: Path) -> None:
        # Under a watchdog too: if we die mid-initdb, nothing is left behind.
        child = ChildServer(
            [self.bin_dir / "initdb", "-D", data, "-A", "trust", "-U", self.user,
             "--no-sync", "-E", "UTF8", "--locale=C"],
            log_path=log, cwd=self._scratch, scratch=self._scratch, **self._as_server_user(),
        )
        try:
            code = child.proc.wait(120)
        finally:
            child.stop()
        if code != 0:
            raise RuntimeError(f"initdb failed ({code}):\n{child.log_tail(30)}")

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
             "-U", self.user, "-d", "postgres", "-t", "2"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
        )
        return result.returncode == 0

    def start(self) -> "PostgresServer":
        if self._child is not None:
            return self
        ok, reason = self.available() if self.bin_dir is None else (True, "")
        if not ok:
            raise RuntimeError(reason)
        if self.workdir is not None:
            if self.workdir.exists():
                shutil.rmtree(self.workdir)  # initdb wants an empty directory
            self.workdir.mkdir(parents=True)
            self._scratch = self.workdir
        else:
            self._scratch = Path(tempfile.mkdtemp(prefix="lifeline-pg-"))
        data, sockets = self._scratch / "data", self._scratch / "sock"
        sockets.mkdir()
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            for path in (self._scratch, sockets):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        try:
            self._initdb(data, self._scratch / "initdb.log")
            self._child = start_on_free_port(lambda port: self._launch(port, data, sockets), self._ready,
                                             self.startup_timeout)
            return self
        except BaseException:
            self.stop()
            raise

    def _launch(self, port: int, data: Path, sockets: Path) -> tuple[ChildServer, str]:
        self.port = port
        child = ChildServer(
            [self.bin_dir / "postgres", "-D", data, "-k", sockets,
             "-h", self.host, "-p", str(self.port),
             "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=50",
             "-c", "shared_buffers=32MB", "-c", "logging_collector=off"],
            log_path=self._scratch / f"postgres-{self.port}.log", cwd=self._scratch,
            stop_signal=signal.SIGINT,  # "fast" shutdown: disconnect clients, exit
            scratch=self._scratch, **self._as_server_user(),
        )
        return child, f"PostgreSQL on {self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self._scratch is not None:
            if self.workdir is None:
                shutil.rmtree(self._scratch, ignore_errors=True)
            else:  # keep the logs, drop the data files
                shutil.rmtree(self._scratch / "data", ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
