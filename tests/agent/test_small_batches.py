"""Small files are read and saved by the batch, in workers: the point still lists every file in the
walk's order with its own chunk, duplicates are stored once, and an entry never waits unbounded.

In-process (``lifeline.agent.__main__.main``) so the batch and waiting limits can be made tiny:
a few dozen files then cross many batch boundaries and the waiting limit."""
from __future__ import annotations

import json
import os

import pytest

from lifeline.agent import backup as backup_mod
from lifeline.agent.beneath import Beneath
from lifeline.agent.__main__ import main

from .helpers import Repo, assert_same_tree


@pytest.fixture
def tiny_batches(monkeypatch):
    monkeypatch.setattr(backup_mod, "SMALL_BATCH_FILES", 3)
    monkeypatch.setattr(backup_mod, "PENDING_MAX", 5)


def _backup(repo: Repo, src, capsys) -> dict:
    rc = main(["backup", str(src), "--json", "--repo", repo.url, "--key", repo.key])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return json.loads(cap.out)


def _tree(src, n: int) -> None:
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
    for i in range(n):
        if i % 7 == 0:
            data = b""  # empty: no chunk at all
        elif i % 5 == 0:
            data = b"the same bytes in several files"
        else:
            data = os.urandom(100 + i)
        (src / f"d{i % 3}" / f"f{i:03d}").write_bytes(data)
    (src / "d1" / "big").write_bytes(os.urandom(600 * 1024))  # chunked in between the batches


def test_small_files_by_the_batch_restore_identical_and_dedup(repo: Repo, tmp_path, tiny_batches, capsys):
    src = tmp_path / "src"
    _tree(src, 60)
    s = _backup(repo, src, capsys)
    unique = {(src / f"d{i % 3}" / f"f{i:03d}").read_bytes() for i in range(60)} - {b""}
    big_chunks = s["chunks_total"] - sum(1 for i in range(60) if i % 7)
    assert s["files"] == 61 and s["chunks_new"] == len(unique) + big_chunks
    listed = repo.ok("ls", s["point_id"], "--json").text.splitlines()
    paths = [json.loads(line)["path"] for line in listed]
    assert len(paths) == 1 + 3 + 61
    assert paths == sorted(paths, key=lambda p: p.split("/"))  # the walk's order, whatever the batches did
    out = tmp_path / "out"
    repo.ok("restore", s["point_id"], "--to", out)
    assert_same_tree(src, out)


def test_sparse_changes_among_unchanged_files(repo: Repo, tmp_path, tiny_batches, capsys):
    """An incremental where a few changed files sit among many unchanged ones: the entries between
    them wait for the batch at most PENDING_MAX long, and every change lands."""
    src = tmp_path / "src"
    _tree(src, 60)
    _backup(repo, src, capsys)
    changed = [src / f"d{i % 3}" / f"f{i:03d}" for i in (1, 22, 38, 59)]
    for p in changed:
        p.write_bytes(os.urandom(333))
    s = _backup(repo, src, capsys)
    assert s["type"] == "incremental" and s["chunks_new"] == 4 and s["files_unchanged"] == 61 - 4
    out = tmp_path / "out"
    repo.ok("restore", s["point_id"], "--to", out)
    assert_same_tree(src, out)


def test_a_small_file_that_grows_while_read_is_chunked_whole(repo: Repo, tmp_path, monkeypatch, capsys):
    """The walk saw 10 bytes; by the time a worker opens the file it holds 700 KiB: what was read is
    what is recorded, chunked as a large file would be."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"before")
    grows = src / "grows"
    grows.write_bytes(b"0123456789")
    grown = os.urandom(700 * 1024)
    real_open = backup_mod._open_source

    def open_after_growth(files, rel):
        if rel == "grows":
            grows.write_bytes(grown)
        return real_open(files, rel)

    monkeypatch.setattr(backup_mod, "_open_source", open_after_growth)
    s = _backup(repo, src, capsys)
    assert s["size_bytes"] == len(grown) + len(b"before") and s["chunks_total"] >= 2
    out = tmp_path / "out"
    repo.ok("restore", s["point_id"], "--to", out)
    assert (out / "grows").read_bytes() == grown and (out / "a").read_bytes() == b"before"


def test_a_file_swapped_for_a_link_or_a_fifo_after_the_walk_is_refused(repo: Repo, tmp_path, monkeypatch, capsys):
    """The attack: someone who can write to the source swaps a file the walk saw for a symbolic link
    to a file outside the source (a token, a key) before the agent reads it, or a directory on its
    path for a link to a directory outside, or the file for a FIFO that would hold the reader
    forever. None is followed or waited on; each is named as not backed up."""
    secret = tmp_path / "outside-secret"
    secret.write_bytes(b"the Job's token")
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    for name in ("inner-small", "inner-large"):
        (outside / name).write_bytes(b"another tenant's data " * (40000 if name.endswith("large") else 1))
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok").write_bytes(b"fine")
    (src / "small").write_bytes(b"x" * 10)
    (src / "large").write_bytes(os.urandom(600 * 1024))
    (src / "pipe").write_bytes(b"y" * 10)
    (src / "sub").mkdir()
    (src / "sub" / "inner-small").write_bytes(b"z" * 10)
    (src / "sub" / "inner-large").write_bytes(os.urandom(600 * 1024))
    real_open = backup_mod._open_source

    def swap_then_open(files, rel):
        path = src / rel
        if rel in ("small", "large"):
            os.unlink(path)
            os.symlink(secret, path)
        elif rel == "pipe":
            os.unlink(path)
            os.mkfifo(path)
        elif rel.startswith("sub/") and not (src / "sub").is_symlink():
            (src / "sub").rename(tmp_path / "moved-sub")
            os.symlink(outside, src / "sub")
        return real_open(files, rel)

    monkeypatch.setattr(backup_mod, "_open_source", swap_then_open)
    rc = main(["backup", str(src), "--json", "--repo", repo.url, "--key", repo.key])
    cap = capsys.readouterr()
    assert rc == 7, cap.err
    summary = json.loads(cap.out)
    assert sorted(s["path"] for s in summary["skipped"]) == ["large", "pipe", "small", "sub/inner-large",
                                                           "sub/inner-small"]
    assert "replaced by a link" in cap.err
    assert summary["files"] == 1
    monkeypatch.undo()
    out = tmp_path / "out"
    repo.ok("restore", summary["point_id"], "--to", out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["ok", "sub"]


def test_a_directory_swapped_for_a_link_during_the_walk_is_not_followed(repo: Repo, tmp_path, monkeypatch, capsys):
    """The walk lists a directory, then opens it to go in: swapped between the two for a link to a
    directory outside, it is named as not listed, and nothing of the outside is recorded (names,
    sizes, attributes) or read."""
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / "another-tenants-file").write_bytes(b"theirs")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "mine").write_bytes(b"mine")
    (src / "z").write_bytes(b"after")
    real_entry = backup_mod._entry_for

    def swap_after_listing(rel, st, full, attrs):
        e = real_entry(rel, st, full, attrs)
        if rel == "sub":
            (src / "sub").rename(tmp_path / "moved-sub")
            os.symlink(outside, src / "sub")
        return e

    monkeypatch.setattr(backup_mod, "_entry_for", swap_after_listing)
    rc = main(["backup", str(src), "--json", "--repo", repo.url, "--key", repo.key])
    cap = capsys.readouterr()
    assert rc == 7, cap.err
    summary = json.loads(cap.out)
    assert [s["path"] for s in summary["skipped"]] == ["sub"]
    assert "replaced by a link" in summary["skipped"][0]["error"]
    monkeypatch.undo()
    listed = repo.ok("ls", summary["point_id"]).text.split()
    assert "another-tenants-file" not in " ".join(listed) and "sub/mine" not in listed and "z" in listed


def test_reading_a_small_file_stops_past_the_limit(tmp_path):
    """A file the walk saw small but that is large when read is not read whole by a worker: at most
    a byte past the limit (the backup then streams it through the chunker)."""
    p = tmp_path / "f"
    p.write_bytes(os.urandom(3 << 20))
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        files = Beneath(root)
        assert len(backup_mod.read_small(files, "f", 10, 4096)) == 4097
        p.write_bytes(b"short")
        assert backup_mod.read_small(files, "f", 10, 4096) == b"short"  # (it shrank: what is there)
        p.write_bytes(b"x" * 10)
        assert backup_mod.read_small(files, "f", 10, 4096) == b"x" * 10
    finally:
        os.close(root)
