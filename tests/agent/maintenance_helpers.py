"""Shared by test_repack.py and test_rebuild_index.py: a pruned history, sizes, crashes."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lifeline.keys import provider_from_ref
from lifeline.repository.backend import S3Options, open_backend
from lifeline.repository.repo import Repository

from .helpers import Repo, assert_same_tree, make_key, write_random

MiB = 1 << 20
STEPS = 8
FILES = 6
SLOW_AGENT = Path(__file__).with_name("slow_agent.py")


def backend_of(r: Repo, *, create: bool = False):
    """The repository's storage, opened in this process with the repository's environment (the azure:// and
    gs:// backends read their credentials from the environment while they are built)."""
    env = r.env
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return open_backend(r.url, S3Options(endpoint=env.get("AWS_ENDPOINT_URL"), region=env.get("AWS_REGION"),
                                             access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                                             secret_access_key=env.get("AWS_SECRET_ACCESS_KEY")), create=create)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def open_repo(r: Repo, backend=None) -> tuple[Repository, object]:
    """The repository in this process, and its key provider."""
    return Repository.open(backend or backend_of(r)), provider_from_ref(r.key)


def stored_bytes(r: Repo) -> dict[str, int]:
    """Bytes of the packs (data/), of the index (index/) and of every object but locks."""
    b = backend_of(r)
    out = {"data": sum(o.size for o in b.list("data/")), "index": sum(o.size for o in b.list("index/"))}
    out["all"] = sum(o.size for o in b.list("") if not o.name.startswith("locks/"))
    return out


def fill_history(r: Repo, tmp_path: Path, *, prune: bool = True) -> dict[str, Path]:
    """Eight backups of a directory of six 1 MiB files, two a day over four days; between backups two
    files get new contents, and every file the day's first backup changed, the second changes again
    or keeps. ``prune --keep-daily 4`` then forgets the day's first backup: half the points, and in
    each forgotten point's pack a third to a half of the bytes no kept point uses (what repack is for).
    Returns {kept point id: a copy of the tree it holds (mtimes kept)}."""
    src = tmp_path / "src"
    src.mkdir()
    states = tmp_path / "states"
    states.mkdir()
    for i in range(FILES):
        write_random(src / f"f{i}", MiB)
    by_step: dict[int, tuple[str, Path]] = {}
    for s in range(STEPS):
        if s:
            for i in (s % FILES, (s + 1) % FILES):
                write_random(src / f"f{i}", MiB)
        when = f"2026-03-0{s // 2 + 1}T0{s % 2 + 1}:00:00Z"
        pid = r.backup(src, "--source-name", "src", "--time", when)["point_id"]
        copy = states / f"step{s}"
        shutil.copytree(src, copy, copy_function=shutil.copy2)
        by_step[s] = (pid, copy)
    if not prune:
        return {pid: copy for pid, copy in by_step.values()}
    res = r.ok("prune", "--keep-daily", str(STEPS // 2), "--json").json
    assert {f["point_id"] for f in res["forget"]} == {by_step[s][0] for s in range(0, STEPS, 2)}
    assert res["packs_deleted"] == 0  # every forgotten point's pack still holds live chunks
    return {by_step[s][0]: by_step[s][1] for s in range(1, STEPS, 2)}


def fresh_size(kept: dict[str, Path], tmp_path: Path) -> dict[str, int]:
    """The sizes of a new repository holding the same trees, backed up in the same order."""
    fresh = Repo((tmp_path / "fresh").as_uri(), make_key(tmp_path / "fresh-key"))
    fresh.ok("init")
    for tree in kept.values():  # dicts keep the order of the backups
        fresh.backup(tree, "--source-name", "src")
    return stored_bytes(fresh)


def assert_restores(r: Repo, kept: dict[str, Path], tmp_path: Path, tag: str) -> None:
    for pid, tree in kept.items():
        out = tmp_path / f"restore-{tag}-{pid[:8]}"
        r.ok("restore", pid, "--to", out)
        assert_same_tree(tree, out)


def clean_env(r: Repo) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIFELINE_"))}
    env.update(r.env)
    return env


def slow_run(r: Repo, *args, delay: float = 0.1, env: dict | None = None) -> subprocess.Popen:
    """Start `lifeline agent ARGS` on storage whose every write and delete takes ``delay`` more seconds
    (``env``: more of slow_agent.py's knobs)."""
    env = {**clean_env(r), "LIFELINE_TEST_WRITE_DELAY": str(delay), **{k: str(v) for k, v in (env or {}).items()}}
    return subprocess.Popen([sys.executable, str(SLOW_AGENT), *args, "--repo", r.url, "--key", r.key],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """kill -9 ``proc`` ``seconds`` after now; True when it was still running."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def timed(proc: subprocess.Popen, start: float) -> float:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - start


class Crash(BaseException):
    """The process died here (a BaseException: nothing on the way catches it)."""


class CrashingBackend:
    """Wraps a backend: the ``at``-th write or delete (1-based) and every call after it raise
    :class:`Crash`, leaving storage as a process killed at that moment leaves it (each put is atomic).
    With ``at=None`` it only records the writes and deletes (``log``)."""

    MUTATING = ("put", "delete", "delete_temporary")

    def __init__(self, inner, at: int | None = None):
        self.inner, self.at = inner, at
        self.log: list[str] = []
        self.crashed = False
        self._lock = threading.Lock()

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kw):
            with self._lock:
                if self.crashed:
                    raise Crash()
                if name in self.MUTATING:
                    if self.at is not None and len(self.log) + 1 >= self.at:
                        self.crashed = True
                        raise Crash()
                    self.log.append(f"{name} {args[0]}")
            return attr(*args, **kw)

        return call


def drop_locks(r: Repo) -> None:
    """Remove the locks a simulated crash left: they name this (live) test process, so they would not
    be stale as a killed agent's are."""
    b = backend_of(r)
    for o in b.list("locks/"):
        b.delete(o.name)
