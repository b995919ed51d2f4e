"""Helpers for the agent tests: run the real CLI in a subprocess, build and compare trees."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

AGENT = [sys.executable, "-m", "lifeline.agent"]


@dataclass
class Result:
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def json(self):
        return json.loads(self.out)


def run_agent(*args, env: dict | None = None, input: bytes | None = None, stdin=None,
              timeout: float = 240) -> Result:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "LIFELINE_"))}
    full_env.update(env or {})
    p = subprocess.run([*AGENT, *map(str, args)], input=input, stdin=stdin, capture_output=True,
                       env=full_env, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr.decode(errors="replace"))


@dataclass
class Repo:
    url: str
    key: str
    env: dict = field(default_factory=dict)

    def run(self, cmd: str, *args, **kw) -> Result:
        env = {**self.env, **kw.pop("env", {})}
        return run_agent(cmd, "--repo", self.url, "--key", self.key, *args, env=env, **kw)

    def ok(self, cmd: str, *args, **kw) -> Result:
        r = self.run(cmd, *args, **kw)
        assert r.rc == 0, f"agent {cmd} failed rc={r.rc}\nstderr:\n{r.err}\nstdout:\n{r.text[:2000]}"
        assert "Traceback" not in r.err, r.err
        return r

    def backup(self, *args, **kw) -> dict:
        return self.ok("backup", "--json", *args, **kw).json


def make_key(path: Path) -> str:
    from lifeline.keys import create_key_file

    create_key_file(path)
    return "file://" + str(path)


@pytest.fixture
def repo(tmp_path) -> Repo:
    key = make_key(tmp_path / "key")
    r = Repo("file://" + str(tmp_path / "repo"), key)
    r.ok("init")
    return r


@pytest.fixture(params=["thread", "writer-processes"])
def small_file_writers(request, repo: Repo, monkeypatch) -> str:
    """A test taking this runs twice: its restores (the agent's, or a Restorer in this process)
    write small files in a thread, then in writer processes (forced: a restore picks them from
    thousands of small files). A test that patches this process's functions cannot see them in a
    writer: it does not take this fixture."""
    if request.param == "writer-processes":
        repo.env["LIFELINE_RESTORE_WRITERS"] = "2"
        monkeypatch.setenv("LIFELINE_RESTORE_WRITERS", "2")
    return request.param


# --- trees ------------------------------------------------------------------------------
def write_random(path: Path, size: int, *, block: int = 1 << 20) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n


def snapshot(root: Path, *, content: bool = True) -> dict:
    """path -> (type, mode, uid, gid, mtime_ns, size, sha256 | link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", st.st_uid, st.st_gid, st.st_mtime_ns, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                digest = None
                if content:
                    h = hashlib.sha256()
                    with open(full, "rb") as f:
                        while b := f.read(1 << 22):
                            h.update(b)
                    digest = h.hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
                            st.st_size, digest)
            elif stat.S_ISFIFO(st.st_mode):
                out[rel] = ("fifo", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                out[rel] = ("other", st.st_mode)
    return out


def assert_same_tree(a: Path, b: Path) -> None:
    sa, sb = snapshot(a), snapshot(b)
    assert sorted(sa) == sorted(sb), f"paths differ: only in source {sorted(set(sa) - set(sb))[:10]}, " \
                                     f"only in restore {sorted(set(sb) - set(sa))[:10]}"
    diffs = [(k, sa[k], sb[k]) for k in sa if sa[k] != sb[k]]
    assert not diffs, f"{len(diffs)} entries differ, e.g. {diffs[:5]}"


# --- editing a repository's objects, reading an agent's result -----------------------------------
def repo_root(r: Repo) -> Path:
    """The directory of a file:// repository."""
    return Path(r.url[len("file://"):])


def edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj, indent=1))


def clean(result):
    assert "Traceback" not in result.err, result.err
    return result
