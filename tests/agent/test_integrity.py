"""Corruption anywhere is found and named; --skip-damaged restores the rest."""
from __future__ import annotations

import os
from pathlib import Path

from lifeline.repository import Repository, open_backend
from lifeline.repository.layout import pack_name, point_name
from lifeline.keys import provider_from_ref

from .helpers import Repo, write_random

MiB = 1 << 20


def _tree(root: Path) -> None:
    root.mkdir()
    for i in range(5):
        write_random(root / f"file{i}.bin", 5 * MiB + i)  # > max chunk: at least two chunks
    (root / "notes.txt").write_text("keep me\n" * 1000)


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def _locate(repo: Repo, point_id: str, file: str, which: int = 0):
    r = Repository.open(open_backend(repo.url))
    _h, entries, _k = r.load_point(point_id, provider_from_ref(repo.key))
    entry = next(e for e in entries if e["path"] == file)
    ref = r.load_index().get(bytes.fromhex(entry["chunks"][which]))
    return Path(repo.url[len("file://"):]) / pack_name(ref.pack_id), ref


def test_flipped_byte_in_chunk(repo: Repo, tmp_path, small_file_writers):
    src = tmp_path / "src"
    _tree(src)
    pid = repo.backup(src)["point_id"]
    pack, ref = _locate(repo, pid, "file2.bin", 1)
    _flip(pack, ref.offset + ref.length // 2)

    # metadata-only verify cannot see it; --read-data names point and file
    assert repo.run("verify").rc == 0
    r = repo.run("verify", "--read-data")
    assert r.rc == 3, r.err
    assert f"point {pid}, file 'file2.bin'" in r.text
    assert "file0.bin" not in r.text
    r = repo.run("check", "--read-data", "--json")
    assert r.rc == 3 and {d.get("path") for d in r.json["damaged"]} == {"file2.bin"}

    # plain restore stops with a clear message and exit code 3
    r = repo.run("restore", pid, "--to", tmp_path / "out1")
    assert r.rc == 3 and "file2.bin" in r.err and "--skip-damaged" in r.err
    assert "Traceback" not in r.err

    # --skip-damaged: every other file restored byte-for-byte, the damaged one left out
    out = tmp_path / "out2"
    r = repo.run("restore", pid, "--to", out, "--skip-damaged", "--json")
    assert r.rc == 3
    assert [d["path"] for d in r.json["damaged"]] == ["file2.bin"]
    assert not (out / "file2.bin").exists()
    os.unlink(src / "file2.bin")
    for p in src.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes()


def test_flipped_byte_in_manifest_and_index(repo: Repo, tmp_path):
    src = tmp_path / "src"
    _tree(src)
    p1 = repo.backup(src)["point_id"]
    (src / "file0.bin").write_bytes(os.urandom(1000))
    p2 = repo.backup(src)["point_id"]
    root = Path(repo.url[len("file://"):])

    # a flipped byte in the sealed tree of p2: p2 is reported, p1 restores fine
    pt = root / point_name(p2)
    _flip(pt, pt.stat().st_size - 20)
    r = repo.run("verify")
    assert r.rc == 3 and f"point {p2}" in r.text and f"point {p1}" not in r.text
    r = repo.run("restore", p2, "--to", tmp_path / "x")
    assert r.rc == 3 and "authentication failed" in r.err
    repo.ok("restore", p1, "--to", tmp_path / "ok")

    # a flipped byte in the (authenticated) clear header is caught as well
    _flip(pt, pt.stat().st_size - 20)  # undo
    _flip(pt, 40)
    assert repo.run("verify", p2).rc == 3
    _flip(pt, 40)
    repo.ok("verify", p2)

    # a flipped byte in an index segment: reported by check, prune refuses to run
    seg = sorted((root / "index").iterdir())[0]
    _flip(seg, seg.stat().st_size // 2)
    r = repo.run("check")
    assert r.rc == 3 and "index" in r.text
    r = repo.run("prune", "--keep-last", "1")
    assert r.rc == 3 and "nothing was deleted" in r.err


def test_flipped_byte_in_pack_directory(repo: Repo, tmp_path):
    src = tmp_path / "src"
    _tree(src)
    pid = repo.backup(src)["point_id"]
    pack, _ref = _locate(repo, pid, "file0.bin")
    _flip(pack, pack.stat().st_size - 30)  # inside the sealed pack directory
    r = repo.run("check", "--read-data")
    assert r.rc == 3 and "no file affected" in r.text
    repo.ok("restore", pid, "--to", tmp_path / "out")
