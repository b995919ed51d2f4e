"""The read-ahead helper of a backup of many small files: it reads regular files beneath the
source and nothing else (no link out of it, no FIFO it would wait on), and it is only a hint."""
from __future__ import annotations

import os

import pytest

from lifeline.agent import read_ahead
from lifeline.agent.read_ahead import ReadAhead


@pytest.fixture
def source(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "token").write_bytes(b"secret" * 100)
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a").write_bytes(b"a" * 1000)
    (src / "d" / "b").write_bytes(b"b" * 3000)
    (src / "big").write_bytes(b"c" * 100_000)
    os.symlink(outside / "token", src / "link")
    os.symlink(outside, src / "dirlink")
    os.mkfifo(src / "fifo")
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_it_reads_regular_files_beneath_the_source_and_nothing_else(source, monkeypatch):
    monkeypatch.setattr(read_ahead, "START_AFTER", 1)
    monkeypatch.delenv("LIFELINE_READ_AHEAD", raising=False)
    ahead = ReadAhead(source, limit=4097)
    for rel in ("a", "d/b", "big", "link", "dirlink/token", "fifo", "missing", "d"):
        ahead.want(rel)
    ahead.flush()
    # a, d/b and big (up to the limit: 4097 of its 100,000 bytes); not the links, the FIFO, the directory
    assert ahead.close(report=True) == (3, 1000 + 3000 + 4097, 0)


def test_for_an_incremental_it_walks_the_source_at_once_through_no_link(source, monkeypatch):
    """It meets every entry beneath the source (7), and nothing behind the link to a directory."""
    monkeypatch.delenv("LIFELINE_READ_AHEAD", raising=False)
    ahead = ReadAhead(source, limit=4097, walk=True)
    assert ahead.proc is not None  # (started before any file is wanted)
    ahead.want("a")
    ahead.flush()
    assert ahead.close(report=True) == (1, 1000, 7)
    assert ahead.close(report=True) is None and ahead.close() is None  # (closed once)
    monkeypatch.setenv("LIFELINE_READ_AHEAD", "0")
    assert ReadAhead(source, limit=4097, walk=True).proc is None


def test_it_starts_only_for_many_files_and_not_when_turned_off(source, monkeypatch):
    monkeypatch.delenv("LIFELINE_READ_AHEAD", raising=False)
    ahead = ReadAhead(source, limit=4097)
    for _ in range(read_ahead.START_AFTER - 1):
        ahead.want("a")
    assert ahead.proc is None
    ahead.want("a")
    assert ahead.proc is not None
    ahead.close()
    assert ahead.proc.returncode is not None  # (stopped at once)

    monkeypatch.setenv("LIFELINE_READ_AHEAD", "0")
    off = ReadAhead(source, limit=4097)
    for _ in range(read_ahead.START_AFTER * 2):
        off.want("a")
    off.flush()
    assert off.proc is None and off.close() is None
