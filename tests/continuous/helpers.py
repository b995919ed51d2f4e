"""Small helpers shared by the continuous-protection tests: repositories and fake segments."""
from __future__ import annotations

import os
from pathlib import Path

from lifeline.keys import create_key_file, provider_from_ref
from lifeline.repository.backend import open_backend
from lifeline.repository.repo import Repository
from lifeline.repository.segments import SegmentStore

SEG = 1024 * 1024  # a 1 MiB "WAL segment size" keeps fake segments small


def new_repo(tmp: Path, name: str = "repo", key: Path | None = None) -> tuple[str, str]:
    """(repository URL, key reference) of a fresh file:// repository."""
    key = key or tmp / "key"
    if not key.exists():
        create_key_file(key)
    url = f"file://{tmp / name}"
    Repository.init(open_backend(url, create=True), provider_from_ref(f"file://{key}"))
    return url, f"file://{key}"


def store(url: str, key_ref: str) -> SegmentStore:
    return SegmentStore(Repository.open(open_backend(url)), provider_from_ref(key_ref))


def wal_name(seq: int, timeline: int = 1, size: int = SEG) -> str:
    per = 0x100000000 // size
    return f"{timeline:08X}{seq // per:08X}{seq % per:08X}"


def make_segment(directory: Path, seq: int, *, timeline: int = 1, fill: bytes | None = None,
                 mtime: float | None = None) -> Path:
    """A fake closed WAL segment: SEG bytes, distinct per sequence number, written then renamed in."""
    directory.mkdir(parents=True, exist_ok=True)
    name = wal_name(seq, timeline)
    data = (fill or f"segment {seq} tl {timeline} ".encode()) * (SEG // 16)
    data = (data + bytes(SEG))[:SEG]
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(data)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    tmp.rename(directory / name)
    return directory / name
