"""Incremental and differential backups store what changed, not more."""
from __future__ import annotations

import os
import stat

import pytest

from .helpers import Repo, assert_same_tree, write_random

MiB = 1 << 20


@pytest.mark.slow
def test_one_percent_change_uploads_about_one_percent(repo: Repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for d in range(10):
        sub = src / f"dir{d}"
        sub.mkdir()
        for i in range(20):  # 200 files x 1 MiB = 200 MiB
            write_random(sub / f"f{i:02d}", MiB)
    full = repo.backup(src, "--type", "full")
    assert full["size_bytes"] == 200 * MiB
    assert 200 * MiB <= full["stored_bytes"] < 202 * MiB  # random: no compression, small overhead

    # change 1 % (2 MiB): one file rewritten, two half files overwritten in place
    write_random(src / "dir3" / "f07", MiB)
    for name in ("dir5/f01", "dir8/f19"):
        with open(src / name, "r+b") as f:
            f.seek(256 * 1024)
            f.write(os.urandom(MiB // 2))
    inc = repo.backup(src)
    assert inc["type"] == "incremental" and inc["parent_id"] == full["point_id"]
    assert inc["files_unchanged"] == 197
    changed = 2 * MiB
    # CDC granularity (~1 MiB chunks) costs at most a chunk per edit; allow 2x and metadata
    assert changed <= inc["stored_bytes"] <= 2 * changed + 256 * 1024, inc["stored_bytes"]
    out = tmp_path / "out"
    repo.ok("restore", inc["point_id"], "--to", out)
    assert_same_tree(src, out)

    # a differential after a further change stores both changes (relative to the full)
    write_random(src / "dir0" / "f00", MiB)
    diff = repo.backup(src, "--type", "differential")
    assert diff["parent_id"] == full["point_id"] and diff["type"] == "differential"
    assert 3 * MiB <= diff["stored_bytes"] <= 2 * 3 * MiB + 256 * 1024
    # ...and the next incremental only the newest one
    write_random(src / "dir1" / "f00", MiB)
    inc2 = repo.backup(src)
    assert inc2["parent_id"] == diff["point_id"]
    assert MiB <= inc2["stored_bytes"] <= 2 * MiB + 256 * 1024
    out2 = tmp_path / "out2"
    repo.ok("restore", diff["point_id"], "--to", out2)
    assert (out2 / "dir0" / "f00").read_bytes() != (src / "dir1" / "f00").read_bytes()
    assert (out2 / "dir3" / "f07").read_bytes() == (src / "dir3" / "f07").read_bytes()


def test_insert_shifts_few_chunks(repo: Repo, tmp_path):
    """Content-defined chunking: bytes inserted near the start do not re-store the file."""
    data = os.urandom(24 * MiB)
    first = repo.backup("--stdin", input=data)
    second = repo.backup("--stdin", input=data[:1000] + b"inserted!" + data[1000:])
    assert second["stored_bytes"] < 2 * 4 * MiB + 64 * 1024, second  # at most two max-size chunks, not 24 MiB
    assert second["chunks_new"] <= 3
    assert repo.ok("restore", second["point_id"], "--to", "-").out == data[:1000] + b"inserted!" + data[1000:]
    assert repo.ok("restore", first["point_id"], "--to", "-").out == data


def test_full_opens_a_new_epoch(repo: Repo):
    data = os.urandom(2 * MiB)
    a = repo.backup("--stdin", input=data)
    b = repo.backup("--stdin", "--type", "full", input=data)
    assert a["epoch"] != b["epoch"] and b["parent_id"] is None
    assert b["stored_bytes"] >= 2 * MiB  # a full is independent of earlier data (own key epoch)
    c = repo.backup("--stdin", input=data)
    assert c["epoch"] == b["epoch"] and c["stored_bytes"] == 0


def test_an_unchanged_file_keeps_its_entry_and_a_metadata_change_is_recorded(repo: Repo, tmp_path):
    """An incremental copies an unchanged file's entry from the parent as it is, but not when only its
    access time moved (the first backup's read moves it, with no change of ctime); a change of
    mode or owner is recorded too."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("same", "mode", "owner", "read"):
        (src / name).write_bytes(name.encode() * 100)
    st = os.stat(src / "read")
    os.utime(src / "read", ns=(st.st_mtime_ns - 3600 * 10**9, st.st_mtime_ns))  # atime < mtime: a read moves it
    repo.backup(src)
    os.chmod(src / "mode", 0o640)
    if os.geteuid() == 0:
        os.chown(src / "owner", 4321, 4321)
    before = {name: os.stat(src / name) for name in ("same", "read")}
    second = repo.backup(src)
    assert second["type"] == "incremental" and second["chunks_new"] == 0
    out = tmp_path / "out"
    repo.ok("restore", second["point_id"], "--to", out)
    assert stat.S_IMODE(os.stat(out / "mode").st_mode) == 0o640
    if os.geteuid() == 0:
        assert os.stat(out / "owner").st_uid == 4321
    for name, st in before.items():  # (on a relatime mount the first backup moved "read"'s atime)
        assert (os.stat(out / name).st_atime_ns, os.stat(out / name).st_mtime_ns) == (st.st_atime_ns, st.st_mtime_ns)
    assert (out / "same").read_bytes() == b"same" * 100
    # Nothing moved since: every entry of the third point is the second's text, and restores as such.
    third = repo.backup(src)
    assert third["files_unchanged"] == 4 and third["chunks_new"] == 0
    out3 = tmp_path / "out3"
    repo.ok("restore", third["point_id"], "--to", out3)
    for name in ("same", "mode", "owner", "read"):
        a, b = os.stat(src / name), os.stat(out3 / name)
        assert (b.st_mode, b.st_uid, b.st_atime_ns, b.st_mtime_ns) == (a.st_mode, a.st_uid, a.st_atime_ns, a.st_mtime_ns)
        assert (out3 / name).read_bytes() == (src / name).read_bytes()
