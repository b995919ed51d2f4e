"""PostgreSQL for the continuous-protection tests: an archiving primary and restored clusters.

The primary is the real server from tests/realparts/postgres.py with 1 MiB WAL segments,
archiving on, ``archive_timeout = 1s`` and commit timestamps tracked (each row's commit
time is then ``pg_xact_commit_timestamp(xmin)``, the same clock ``recovery_target_time``
compares against). PostgreSQL runs as the ``postgres`` user when we are root, and so do
its archive and restore commands: they need a Python that user may execute. This venv's
interpreter may live under a private home directory; then the system's ``python3`` of the
same version runs the agent from this venv's site-packages instead.
"""
from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from functools import lru_cache
from pathlib import Path

from tests.realparts.ports import ChildServer, NotReady, free_port, wait_for
from tests.realparts.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def _runs_as_postgres() -> bool:
    return os.geteuid() == 0


def as_postgres_kwargs() -> dict:
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if _runs_as_postgres() else {}


def chown_postgres(path: Path) -> None:
    if not _runs_as_postgres():
        return
    pg = pwd.getpwnam("postgres")
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pg.pw_uid, pg.pw_gid)
        for n in filenames + dirnames:
            os.lchown(os.path.join(dirpath, n), pg.pw_uid, pg.pw_gid)


@lru_cache(maxsize=1)
def agent_prefix() -> str:
    """A shell command prefix that runs `lifeline agent` as the server's user."""
    if not _runs_as_postgres():
        return f"{shlex.quote(sys.executable)} -m lifeline.agent"
    try:
        ok = subprocess.run([sys.executable, "-c", "0"], user="postgres", capture_output=True).returncode == 0
    except OSError:
        ok = False
    if ok:
        return f"{shlex.quote(sys.executable)} -m lifeline.agent"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        raise RuntimeError(f"the postgres user cannot run {sys.executable} and there is no system {version}")
    path = f"{ROOT / 'operator'}:{sysconfig.get_paths()['purelib']}"
    return f"env PYTHONPATH={shlex.quote(path)} {system} -m lifeline.agent"


def run_agent(*args: str, as_postgres: bool = False, timeout: float = 120,
              env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    if as_postgres and _runs_as_postgres():
        argv = shlex.split(agent_prefix()) + list(args)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/", env=full_env,
                              **as_postgres_kwargs())
    return subprocess.run([sys.executable, "-m", "lifeline.agent", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


class ArchivingPostgres(PostgresServer):
    """A primary whose archive_command is given; 1 MiB segments by default; commit timestamps on."""

    def __init__(self, archive_command: str, *, wal_segment_mib: int = 1, **kw):
        super().__init__(**kw)
        self.archive_command = archive_command
        self.wal_segment_mib = wal_segment_mib

    def _initdb(self, data: Path, log: Path) -> None:
        child = ChildServer(
            [self.bin_dir / "initdb", "-D", data, "-A", "trust", "-U", self.user, "--no-sync", "-E", "UTF8",
             "--locale=C", f"--wal-segsize={self.wal_segment_mib}"],
            log_path=log, cwd=self._scratch, scratch=self._scratch, **self._as_server_user())
        try:
            code = child.proc.wait(120)
        finally:
            child.stop()
        if code != 0:
            raise RuntimeError(f"initdb failed ({code}):\n{child.log_tail(30)}")
        with open(data / "postgresql.conf", "a") as f:
            f.write("\n# continuous protection test\nwal_level = replica\narchive_mode = on\n"
                    f"archive_command = '{self.archive_command}'\narchive_timeout = 1\n"
                    "track_commit_timestamp = on\nmax_wal_senders = 4\n")

    def destroy(self) -> float:
        """SIGKILL the whole server (archiver and archive commands too), then delete it. Returns the time."""
        at = time.time()
        if self._child is not None:
            try:
                os.killpg(self._child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.stop()
        return at


class RestoredPostgres:
    """PostgreSQL started on a restored data directory; ready once recovery has ended."""

    def __init__(self, data: Path, bin_dir: Path):
        self.data, self.bin_dir = data, bin_dir
        self.port = free_port()
        self.sockets = data.parent / f"{data.name}-sock"
        self.sockets.mkdir(exist_ok=True)
        chown_postgres(data)
        chown_postgres(self.sockets)
        os.chmod(data, 0o700)
        kw = {k: v for k, v in as_postgres_kwargs().items() if k != "extra_groups"}
        self.child = ChildServer(
            [bin_dir / "postgres", "-D", data, "-k", self.sockets, "-h", "127.0.0.1", "-p", str(self.port),
             "-c", "fsync=off", "-c", "max_connections=50", "-c", "shared_buffers=32MB"],
            log_path=data.parent / f"{data.name}.log", cwd=data.parent, stop_signal=signal.SIGINT, **kw)

    def psql(self, sql: str) -> str:
        r = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return r.stdout

    def wait_promoted(self, timeout: float = 90) -> None:
        wait_for(lambda: self.psql("SELECT NOT pg_is_in_recovery()").strip() == "t", timeout,
                 "the restored cluster to finish recovery", interval=0.2, abort=self.child.exited,
                 detail=lambda: self.child.log_tail(25))

    def log(self) -> str:
        return self.child.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.child.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


__all__ = ["ArchivingPostgres", "NotReady", "RestoredPostgres", "agent_prefix", "chown_postgres", "run_agent"]
