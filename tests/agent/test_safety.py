"""kill -9 mid-backup, concurrent backups, locks (on file://; kill -9 at a random write of a backup, a
prune and a repack, and two backups at once, on every backend: test_every_backend.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import AGENT, Repo, assert_same_tree, write_random

MiB = 1 << 20


def _packs(repo: Repo) -> list[Path]:
    d = Path(repo.url[len("file://"):]) / "data"
    return [p for p in d.rglob("*") if p.is_file()] if d.exists() else []


def _start_stream_backup(repo: Repo, *extra) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIFELINE_"))}
    return subprocess.Popen([*AGENT, "backup", "--stdin", "--repo", repo.url, "--key", repo.key, *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
def test_kill_9_mid_backup(repo: Repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_random(src / "a", 3 * MiB)
    first = repo.backup(src)

    # A stream backup that has stored packs (but not its index or point) when killed.
    proc = _start_stream_backup(repo, "--source-name", "killed")
    for _ in range(14):  # 112 MiB of fresh data: several packs are written
        proc.stdin.write(os.urandom(8 * MiB))
    proc.stdin.flush()
    _wait_for(lambda: len(_packs(repo)) >= 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass

    # Nothing was published.
    pts = repo.ok("points", "--json").json["points"]
    assert [p["point_id"] for p in pts] == [first["point_id"]]
    # check: consistent (exit 0) but reports what the dead writer left.
    r = repo.ok("check", "--json")
    left = r.json["leftovers"]
    assert left.get("unindexed_packs"), left
    assert left.get("stale_locks"), left
    assert left.get("unused_epoch_keys"), left  # the killed full backup's key epoch
    # The next backup succeeds (the stale lock does not block it) and restores.
    (src / "b").write_bytes(b"after the crash")
    s2 = repo.backup(src)
    out = tmp_path / "out"
    repo.ok("restore", s2["point_id"], "--to", out)
    assert_same_tree(src, out)
    # prune removes the leftovers; check is then clean; both points still restore.
    r = repo.ok("prune", "--json")
    assert r.json["packs_deleted"] >= 2 and r.json["stale_locks_deleted"] >= 1
    r = repo.ok("check", "--read-data", "--json")
    assert r.json["leftovers"] == {} and r.json["ok"]
    repo.ok("restore", first["point_id"], "--to", tmp_path / "first")
    assert (tmp_path / "first" / "a").read_bytes() == (src / "a").read_bytes()


def test_concurrent_backups(repo: Repo, tmp_path):
    srcs = []
    for n in range(2):
        s = tmp_path / f"src{n}"
        s.mkdir()
        for i in range(6):
            write_random(s / f"f{i}", 3 * MiB)
        (s / "shared").write_bytes(b"same in both" * 10000)
        srcs.append(s)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIFELINE_"))}
    procs = [subprocess.Popen([*AGENT, "backup", str(s), "--json", "--repo", repo.url, "--key", repo.key],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for s in srcs + srcs]  # two sources, each twice at the same time
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1] for o in outs]
    import json

    ids = [json.loads(o[0])["point_id"] for o in outs]
    assert len(set(ids)) == 4
    for pid, s in zip(ids, srcs + srcs):
        out = tmp_path / f"out-{pid}"
        repo.ok("restore", pid, "--to", out)
        assert_same_tree(s, out)
    r = repo.ok("check", "--read-data", "--json")
    assert r.json["ok"] and "unindexed_packs" not in r.json["leftovers"]


def test_prune_waits_for_running_backup(repo: Repo):
    proc = _start_stream_backup(repo, "--source-name", "slow")
    proc.stdin.write(os.urandom(MiB))
    proc.stdin.flush()
    locks = Path(repo.url[len("file://"):]) / "locks"
    _wait_for(lambda: locks.exists() and any(locks.iterdir()))
    r = repo.run("prune", "--lock-wait", "0")
    assert r.rc == 6 and "locked" in r.err and "backup" in r.err
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    repo.ok("prune", "--lock-wait", "0")
    assert len(repo.ok("points", "--json").json["points"]) == 1


