"""Backup → restore round trips of a generated tree on file:// (> 100 MiB, every kind of file), and S3's
flags; the round trip on every backend is test_every_backend.py's."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from .helpers import Repo, assert_same_tree, make_key, run_agent, write_random

MiB = 1 << 20


def build_tree(root: Path, *, big: int = 110 * MiB, sparse: int = 64 * MiB) -> None:
    """Sizes from 0 bytes to > 100 MiB; sparse, random, text; symlinks; empty dirs;
    permissions and owners; unicode names; a fifo."""
    root.mkdir(parents=True)
    (root / "empty.bin").write_bytes(b"")
    (root / "one").write_bytes(b"x")
    (root / "text.log").write_bytes(b"".join(b"line %d: patient record ok\n" % i for i in range(50_000)))
    write_random(root / "rand-4095", 4095)
    write_random(root / "rand-300k", 300_000)
    write_random(root / "rand-5m", 5 * MiB + 17)
    if big:
        write_random(root / "big-random", big)
    if sparse:
        with open(root / "sparse.img", "wb") as f:
            f.truncate(sparse)
            f.seek(sparse // 3)
            f.write(os.urandom(70_000))
            f.seek(sparse - 5)
            f.write(b"tail!")
        with open(root / "trailing-hole.img", "wb") as f:  # data, then only zeros to the end
            f.write(os.urandom(300_000) + bytes(5 * MiB))
            f.truncate(sparse // 2)
    uni = root / "ünïcødé 文件 🩺"
    uni.mkdir()
    (uni / "résumé – naïve.txt").write_text("unicode ✓\n")
    (uni / "nested" / "deeper" / "empty-dir").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    small = root / "many-small"
    small.mkdir()
    for i in range(300):
        (small / f"f{i:04d}.txt").write_bytes(os.urandom(i * 7))
    os.symlink("text.log", root / "link-rel")
    os.symlink("/nonexistent/target", root / "link-dangling")
    os.symlink("ünïcødé 文件 🩺/résumé – naïve.txt", root / "link-unicode")
    os.mkfifo(root / "a-fifo", 0o640)
    exe = root / "run.sh"
    exe.write_text("#!/bin/sh\necho hi\n")
    os.chmod(exe, 0o755)
    secret = root / "secret"
    secret.write_text("s3cr3t")
    os.chmod(secret, 0o600)
    ro = root / "readonly-dir"
    ro.mkdir()
    (ro / "inside").write_text("in a 0555 dir")
    if os.geteuid() == 0:
        os.chown(root / "text.log", 1234, 5678)
        os.lchown(root / "link-rel", 4321, 8765)
        os.chown(uni, 1000, 1000)
    # mtimes at nanosecond precision, directories last (writing inside changes them)
    t = 1_600_000_000_123_456_789
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(p, ns=(t + i * 1_000_000_007, t + i * 1_000_000_007), follow_symlinks=False)
    os.chmod(ro, 0o555)
    os.utime(ro, ns=(t, t))
    os.utime(root, ns=(t, t))


@pytest.mark.slow
def test_round_trip_file(repo: Repo, tmp_path):
    src = tmp_path / "src"
    build_tree(src)
    s1 = repo.backup(src, "--tag", "first")
    assert s1["type"] == "full" and s1["parent_id"] is None
    assert s1["files"] == len([p for p in src.rglob("*") if p.is_file() and not p.is_symlink()])
    assert s1["size_bytes"] > 170 * MiB
    # sparse zeros and repeated data are stored once; random data does not compress
    assert s1["stored_bytes"] < s1["size_bytes"] - 50 * MiB
    assert s1["manifest_checksum"].startswith("blake3:") and len(s1["manifest_checksum"]) == 7 + 64
    assert s1["repository"] == repo.url and s1["key_ref"] == repo.key and s1["tags"] == ["first"]
    assert s1["start_time"].endswith("Z") and s1["completion_time"] >= s1["start_time"]

    out = tmp_path / "out"
    r = repo.ok("restore", s1["point_id"][:10], "--to", out, "--json")
    assert r.json["files"] == s1["files"]
    assert_same_tree(src, out)
    # holes come back as holes
    assert os.stat(out / "sparse.img").st_blocks * 512 < 8 * MiB

    # second backup: unchanged files are not even read; nothing new stored but the index/point
    s2 = repo.backup(src)
    assert s2["type"] == "incremental" and s2["parent_id"] == s1["point_id"]
    assert s2["chunks_new"] == 0 and s2["stored_bytes"] == 0
    assert s2["files_unchanged"] == s2["files"]
    out2 = tmp_path / "out2"
    repo.ok("restore", "latest", "--to", out2)
    assert_same_tree(src, out2)

    r = repo.ok("verify", "--read-data")
    assert "no damage found" in r.text
    r = repo.ok("check", "--json")
    assert r.json["ok"] and r.json["leftovers"] == {}


def test_restore_single_path_and_stdout(repo: Repo, tmp_path):
    src = tmp_path / "src"
    build_tree(src, big=0, sparse=0)
    s = repo.backup(src)
    out = tmp_path / "part"
    repo.ok("restore", s["point_id"], "--to", out, "--path", "ünïcødé 文件 🩺")
    assert (out / "ünïcødé 文件 🩺" / "résumé – naïve.txt").read_text() == "unicode ✓\n"
    assert not (out / "text.log").exists()
    r = repo.ok("restore", s["point_id"], "--to", "-", "--path", "text.log")
    assert r.out == (src / "text.log").read_bytes()


def test_stdin_round_trip(repo: Repo, tmp_path):
    data = os.urandom(3 * MiB) + b"\0" * (5 * MiB) + os.urandom(1000)
    s = repo.backup("--stdin", "--stdin-name", "db.dump", input=data)
    assert s["size_bytes"] == len(data) and s["files"] == 1
    r = repo.ok("restore", s["point_id"], "--to", "-")
    assert r.out == data
    r = repo.ok("restore", s["point_id"], "--to", tmp_path / "d")
    assert (tmp_path / "d" / "db.dump").read_bytes() == data


def backup_change_restore(repo: Repo, src: Path, out: Path, *, big: int, sparse: int) -> tuple[dict, dict]:
    """A full backup of a generated tree, an incremental after a change, its restore compared with the
    tree, and a verify that reads the data back: (first summary, second summary)."""
    build_tree(src, big=big, sparse=sparse)
    s1 = repo.backup(src)
    (src / "rand-5m").write_bytes(os.urandom(1000))
    s2 = repo.backup(src)
    assert s2["parent_id"] == s1["point_id"] and s2["chunks_new"] >= 1
    repo.ok("restore", s2["point_id"], "--to", out)
    assert_same_tree(src, out)
    repo.ok("verify", "--read-data")
    return s1, s2


def test_s3_flags_instead_of_env(s3_server, tmp_path):
    bucket = s3_server.make_bucket(f"ll-{uuid.uuid4().hex[:12]}")
    key = make_key(tmp_path / "key")
    flags = ["--s3-endpoint", s3_server.endpoint, "--s3-region", s3_server.region,
             "--s3-access-key-id", s3_server.access_key, "--s3-secret-access-key", s3_server.secret_key]
    url = f"s3://{bucket}"
    assert run_agent("init", "--repo", url, "--key", key, *flags).rc == 0
    r = run_agent("backup", "--stdin", "--repo", url, "--key", key, "--json", *flags, input=b"hello s3")
    assert r.rc == 0, r.err
    r = run_agent("restore", "latest", "--to", "-", "--repo", url, "--key", key, *flags)
    assert r.out == b"hello s3"


def test_backup_summary_contract(repo: Repo, tmp_path):
    """The JSON the operator turns into a RecoveryPoint: fields, formats, checksum of the stored manifest."""
    import re
    import subprocess
    import sys

    import blake3

    s = repo.backup("--stdin", "--tag", "nightly", "--tag", "his", input=b"rows" * 1000)
    for field in ("point_id", "type", "parent_id", "repository", "size_bytes", "stored_bytes", "files",
                  "chunks_total", "chunks_new", "manifest_checksum", "key_ref", "start_time",
                  "completion_time", "tags"):
        assert field in s, field
    assert re.fullmatch(r"blake3:[0-9a-f]{64}", s["manifest_checksum"])
    stored = (Path(repo.url[len("file://"):]) / "points" / s["point_id"]).read_bytes()
    assert s["manifest_checksum"] == "blake3:" + blake3.blake3(stored).hexdigest()
    rfc3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(rfc3339, s["start_time"]) and re.fullmatch(rfc3339, s["completion_time"])
    assert s["tags"] == ["his", "nightly"] and s["key_ref"] == repo.key
    listed = repo.ok("points", "--json").json["points"]
    assert listed[0]["point_id"] == s["point_id"] and listed[0]["tags"] == ["his", "nightly"]
    # the same commands hang off the top-level CLI
    r = subprocess.run([sys.executable, "-m", "lifeline.cli", "agent", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("init", "backup", "restore", "verify", "check", "prune", "points"):
        assert cmd in r.stdout
    assert "exit codes" in r.stdout
