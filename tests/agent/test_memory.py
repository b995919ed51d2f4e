"""Memory bounded as the repository grows (issue #19): the compact index, trees written and read entry
by entry, the parent's entries found alongside the walk, the manifest checked without every path.

The figures are bench/memory.py's (docs/performance.md, "Memory"); these tests hold the parts to the
behaviour of what they replace: same bytes on storage, same lookups, same refusals."""
from __future__ import annotations

import json
import os
import random
import subprocess

import pytest
import zstandard

from lifeline.agent.backup import walk_tree
from lifeline.agent.parent_cursor import ParentCursor
from lifeline.agent.manifest_check import check_manifest
from lifeline.repository.crypto import EpochKeys
from lifeline.repository.errors import DamagedData
from lifeline.repository.index import ChunkTable, IdSet, Index, PackInfo, decode_segment, encode_segment
from lifeline.repository.manifest import decode_tree, encode_point
from lifeline.repository.tree import Tree, TreeWriter, open_tree, seal_tree


def _keys() -> EpochKeys:
    return EpochKeys(os.urandom(16).hex(), os.urandom(32))


# --- the index ----------------------------------------------------------------------------------
def test_index_finds_every_chunk_first_segment_wins_and_packs_keep_their_entries():
    keys = _keys()
    rng = random.Random(5)
    packs = [PackInfo(os.urandom(16).hex(), keys.epoch_id, 1 << 20,
                      [(rng.randbytes(32), 24 + 100 * j, 90 + j, 200 + j) for j in range(n)]) for n in (0, 1, 700, 3000)]
    dup = packs[2].entries[5]
    again = PackInfo(os.urandom(16).hex(), keys.epoch_id, 999, [(dup[0], 1, 2, 3)])  # a later copy of a chunk
    idx = Index()
    _epoch, decoded = decode_segment("index/a", encode_segment(keys, packs), keys)
    assert decoded == packs  # (entries kept packed, decoded when asked for)
    idx.add_segment("index/a", keys.epoch_id, decoded)
    idx.add_segment("index/b", keys.epoch_id, [again])
    assert len(idx) == 3701 and idx.segments["index/b"] == [again.pack_id]
    for p in packs:
        for cid, off, length, raw in p.entries:
            ref = idx.get(cid)
            assert (ref.pack_id, ref.offset, ref.length, ref.raw_len) == (p.pack_id, off, length, raw)
            assert cid in idx
    assert idx.get(dup[0]).pack_id == packs[2].pack_id  # the first segment's
    assert idx.packs[again.pack_id].entries == again.entries
    assert idx.get(os.urandom(32)) is None and os.urandom(32) not in idx and b"short" not in idx
    assert sorted(idx.chunk_ids()) == sorted({e[0] for p in packs + [again] for e in p.entries})

    lookups = Index(pack_entries=False)
    lookups.add_segment("index/a", keys.epoch_id, decoded)
    assert lookups.get(dup[0]) == idx.get(dup[0]) and lookups.packs[packs[3].pack_id].size == 1 << 20
    with pytest.raises(RuntimeError):
        lookups.packs[packs[3].pack_id].entries

    # a backup's index: whether each chunk is stored, in 32 bytes a chunk and no location
    ids = Index(ids_only=True)
    ids.add_segment("index/a", keys.epoch_id, decoded)
    ids.add_segment("index/b", keys.epoch_id, [again])
    assert len(ids) == 3701 and sorted(ids.chunk_ids()) == sorted(idx.chunk_ids())
    stored = b"".join(e[0] for e in packs[3].entries[:40])
    assert ids.has_all(stored) and not ids.has_all(stored + os.urandom(32)) and os.urandom(32) not in ids
    assert sum(map(len, ids._table._buckets)) == 32 * 3701
    with pytest.raises(TypeError):
        ids.get(dup[0])
    with pytest.raises(RuntimeError):
        ids.packs[packs[3].pack_id].entries  # (ids alone: no pack entries either)


def test_chunk_table_never_matches_across_records():
    t = ChunkTable(40)
    a, b = b"\0" * 4 + os.urandom(28), b"\0" * 4 + os.urandom(28)  # one bucket
    t.add(a, b"\0" * 8)
    t.add(b, b"\0" * 8)
    across = b"\0" * 8 + b[:24]  # a's value and b's head: in the bucket's bytes, not at a record
    assert across in bytes(t._buckets[0]) and across not in t and t.locate(across) is None
    assert t.add(across, b"\1" * 8) and t.locate(across) is not None and b in t


def test_chunk_table_grows_and_keeps_the_first_record():
    t = ChunkTable(40)
    ids = [bytes([i % 251]) * 32 for i in range(251)] + [os.urandom(32) for _ in range(20_000)]
    for i, cid in enumerate(ids):
        assert t.add(cid, i.to_bytes(8, "little"))
    assert not t.add(ids[3], b"\0" * 8) and len(t) == len(ids) and t._bits > 8
    for i, cid in enumerate(ids):
        b, at = t.locate(cid)
        assert int.from_bytes(b[at:at + 8], "little") == i
    s = IdSet(ids[:100])
    assert all(c in s for c in ids[:100]) and ids[100] not in s and len(s) == 100


def test_chunk_table_adds_many_records_as_it_adds_one():
    """add_records (an index's load) keeps the same rules as add while the table grows under it:
    the first record of an id wins, an id met again changes nothing, a cut record at the end is
    not one."""
    width = 40
    ids = [os.urandom(32) for _ in range(12_000)]
    ids += ids[5:3000:7]  # met again, later in the same call
    raw = b"".join(cid + i.to_bytes(8, "little") for i, cid in enumerate(ids)) + os.urandom(width - 1)
    one, many = ChunkTable(width + 4), ChunkTable(width + 4)
    for i, cid in enumerate(ids):
        one.add(cid, i.to_bytes(8, "little") + b"SUFX")
    many.add_records(raw[:width * 100], width, b"SUFX")  # two calls: the second grows the table
    many.add_records(raw[width * 100:], width, b"SUFX")
    assert len(many) == len(one) == 12_000 and many._bits == one._bits > 8
    for cid in ids:
        (b1, at1), (b2, at2) = one.locate(cid), many.locate(cid)
        assert b1[at1:at1 + 12] == b2[at2:at2 + 12]
    assert sorted(many.ids()) == sorted(set(ids))


# --- trees --------------------------------------------------------------------------------------
def _entries(n: int, rng: random.Random) -> list[dict]:
    out = [{"path": "", "type": "dir", "mode": 0o755}]
    for i in range(n):
        e = {"path": f"d{i // 100:03d}/f{i:06d}" + ("\udcff" if i % 97 == 0 else ""), "type": "file", "mode": 0o644,
             "size": rng.randint(0, 1 << 20), "mtime_ns": rng.getrandbits(62), "chunks": [os.urandom(32).hex()]}
        if i % 500 == 0:
            e["xattrs"] = {"user.big": "QUJD" * rng.randint(1, 200_000)}  # entries that span reads
        out.append(e)
    return out


@pytest.mark.parametrize("n", [0, 1, 30_000])
def test_a_tree_written_entry_by_entry_is_the_tree_encode_point_writes(n):
    keys, entries = _keys(), _entries(n, random.Random(n))
    header = {"version": 4, "id": "ab" * 16, "epoch": keys.epoch_id, "cipher": keys.cipher}
    w = TreeWriter()
    for e in entries:
        w.add(e)
    tree = w.finish()
    plain = json.dumps({"entries": entries}, separators=(",", ":"), ensure_ascii=True).encode()
    assert zstandard.frame_content_size(tree) == len(plain)  # one-call readers need the size
    assert zstandard.ZstdDecompressor().decompress(tree) == plain
    assert subprocess.run(["zstd", "-d", "-c"], input=tree, capture_output=True).stdout == plain
    parts, checksum = seal_tree(keys, header, tree)
    data = b"".join(parts)
    assert decode_tree(keys, "points/p", data) == (header, entries)  # what every reader before reads
    got_header, t = open_tree(keys, "points/p", data)
    assert got_header == header and list(t) == entries and list(t) == entries  # and again
    assert open_tree(keys, "points/p", encode_point(keys, header, entries))[1].compressed == \
        zstandard.ZstdCompressor(level=3).compress(plain)


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "sm4-gcm"])
def test_a_tree_opened_in_pieces_is_read_once_and_let_go_piece_by_piece(cipher):
    """An incremental reads its parent's tree once: decrypted in pieces, every piece authenticated
    before any is returned, and each let go as the reader passes it."""
    from lifeline.repository import crypto

    if crypto.cipher_problem(cipher):
        pytest.skip(crypto.cipher_problem(cipher))
    keys = EpochKeys(os.urandom(16).hex(), os.urandom(32), cipher=cipher)
    entries = _entries(3000, random.Random(7))
    header = {"version": 4, "id": "ab" * 16, "epoch": keys.epoch_id, "cipher": keys.cipher}
    w = TreeWriter()
    for e in entries:
        w.add(e)
    data = b"".join(seal_tree(keys, header, w.finish())[0])
    whole = open_tree(keys, "points/p", data)[1]
    n = len(open_tree(keys, "points/p", data)[1].compressed)
    assert keys.open_object_pieces(data[-(n + 28):], data[:-(n + 28)], "p", piece=1000) == \
        [whole.compressed[i:i + 1000] for i in range(0, n, 1000)]
    texts = list(iter(whole.entry_reader().next_text, None))

    got_header, t = open_tree(keys, "points/p", data, pieces=True)
    t.compressed = [b for p in t.compressed for b in (p[i:i + 1000] for i in range(0, len(p), 1000))]
    assert got_header == header and len(t.compressed) > 10 and list(t) == entries  # (read whole: kept)
    reader = t.entry_reader(consume=True)
    first = [reader.next_text() for _ in range(10)]
    assert first == texts[:10] and t.compressed[0] is None and t.compressed[-1] is not None
    assert first + list(iter(reader.next_text, None)) == texts and set(t.compressed) == {None}
    with pytest.raises(RuntimeError):
        list(t)  # (read once, as opened to be)

    tampered = bytearray(data)
    tampered[-100] ^= 1
    with pytest.raises(DamagedData):
        open_tree(keys, "points/p", bytes(tampered), pieces=True)


def test_trees_of_another_shape_are_read_whole_and_broken_ones_refused():
    z = zstandard.ZstdCompressor().compress
    assert list(Tree("p", z(b'{ "entries": [{"path": ""}] }'))) == [{"path": ""}]
    assert list(Tree("p", z(b'{"entries":[1,"x",[2]]}'))) == [1, "x", [2]]
    spaced = z(b'{ "entries": [{"path": ""}, {"path": "a"}] }')
    assert list(Tree("p", [spaced[:7], spaced[7:]])) == [{"path": ""}, {"path": "a"}]  # (in pieces)
    for bad in (b'{"entries":[{"path":""}]}x', b'{"entries":[{"path":""}{"path":"a"}]}',
                b'{"entries":[{"path":""},', b'{"entries":[{"path":"', b'{"other":1}'):
        with pytest.raises(DamagedData):
            list(Tree("p", z(bad)))


def test_a_version_2_tree_with_version_4_entries_is_refused_while_read():
    bad = zstandard.ZstdCompressor().compress(b'{"entries":[{"path":"","type":"dir"},{"path":"a","type":"hardlink"}]}')
    with pytest.raises(DamagedData, match="only version 4 writes"):
        list(Tree("p", bad, version=2))


# --- listing the points -------------------------------------------------------------------------
def test_listing_points_reads_their_headers_not_their_trees(repo, tmp_path, monkeypatch):
    """A point's tree is megabytes for a large source; every command that picks a point lists them
    all (a backup its parent, a restore "latest"): that costs a header's bytes a point, not a tree's."""
    from lifeline.repository import repo as repo_module
    from lifeline.repository.backend import open_backend
    from lifeline.repository.layout import POINTS_DIR
    from lifeline.repository.manifest import decode_header, header_end

    src = tmp_path / "src"
    src.mkdir()
    for i in range(1500):  # (names that do not compress: a tree bigger than the first read)
        (src / f"{os.urandom(12).hex()}-{i}").write_bytes(b"x")
    repo.backup(src)
    (src / "another").write_bytes(b"y")
    repo.backup(src)

    backend = open_backend(repo.url)
    objects = backend.list(POINTS_DIR)
    whole = {o.name: decode_header(o.name, backend.get(o.name)) for o in objects}
    assert len(whole) == 2 and all(o.size > repo_module.POINT_HEAD_READ for o in objects)

    r = repo_module.Repository.open(backend)
    read: dict[str, list[int]] = {}
    real_range = backend.get_range

    def get_range(name, offset, length):
        data = real_range(name, offset, length)
        read.setdefault(name, []).append(len(data))
        return data

    def get(name):
        raise AssertionError(f"{name} read whole")
    monkeypatch.setattr(backend, "get_range", get_range)
    monkeypatch.setattr(backend, "get", get)

    points, bad = r.list_points()
    assert {p.name: p.header for p in points} == whole and not bad
    assert read == {name: [repo_module.POINT_HEAD_READ] for name in whole}

    # a header longer than the first read: read again, up to its end and no further
    read.clear()
    monkeypatch.setattr(repo_module, "POINT_HEAD_READ", 40)
    points, bad = r.list_points()
    assert {p.name: p.header for p in points} == whole and not bad
    assert read == {name: [40, header_end(real_range(name, 0, 40))] for name in whole}

    # a point cut short inside its header is named as unreadable, not listed (what it holds is read)
    name = next(iter(whole))
    backend.put(POINTS_DIR + "cut", real_range(name, 0, 60))
    read.clear()
    points, bad = r.list_points()
    assert {p.name for p in points} == set(whole) and "truncated header" in bad[POINTS_DIR + "cut"]
    assert read[POINTS_DIR + "cut"] == [40, 60]

    # the sizes a listing gives are not what the reads go by (storage may give wrong ones)
    backend.delete(POINTS_DIR + "cut")
    listed = backend.list
    monkeypatch.setattr(backend, "list", lambda prefix: [type(o)(o.name, 0) for o in listed(prefix)])
    points, bad = r.list_points()
    assert {p.name: p.header for p in points} == whole and not bad


# --- change detection alongside the walk ----------------------------------------------------------
def test_parent_cursor_finds_files_in_walk_order_and_a_moved_first_name_by_inode():
    parent = [{"path": "", "type": "dir"}, {"path": "a", "type": "dir"},
              {"path": "a/first", "type": "file", "ino": 7, "size": 3},
              {"path": "a-b", "type": "file", "ino": 8}, {"path": "b", "type": "dir"},
              {"path": "b/second", "type": "hardlink", "target": "a/first"},
              {"path": "b/x", "type": "symlink"}, {"path": "c", "type": "file", "ino": 9}]
    cur = ParentCursor((e, f"text of {e['path']}") for e in parent)
    assert cur.find("a-b", 8)["ino"] == 8  # ("a/first" passed: "a" < "a-b" component-wise)
    assert cur.text == "text of a-b"  # (what an unchanged file's new entry copies)
    assert cur.find("b/second", 7)["path"] == "a/first"  # its first name is gone: found by inode
    assert cur.text is None  # (that text names another path)
    assert cur.find("b/x", 0) is None and cur.find("b/y", 0) is None
    assert cur.find("c", 9)["ino"] == 9 and cur.find("d", 0) is None and cur.text is None


def test_walk_names_the_first_name_in_walk_order_across_batches(tmp_path, monkeypatch):
    from lifeline.agent import backup
    monkeypatch.setattr(backup, "SCAN_BATCH", 2)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "c").write_bytes(b"data")
    for name in ("b", "d", "e"):
        os.link(tmp_path / "a" / "c", tmp_path / name)
    (tmp_path / "f").write_bytes(b"other")
    walked = [(e["path"], e["type"], e.get("target"), linked) for e, linked in walk_tree(str(tmp_path), print)]
    assert walked == [("", "dir", None, False), ("a", "dir", None, False), ("a/c", "file", None, True),
                      ("b", "hardlink", "a/c", False), ("d", "hardlink", "a/c", False),
                      ("e", "hardlink", "a/c", False), ("f", "file", None, False)]


# --- the manifest check -----------------------------------------------------------------------
def _tree(*paths: tuple[str, str]) -> list[dict]:
    return [{"path": p, "type": t, **({"target": "a"} if t in ("hardlink", "symlink") else {})} for p, t in paths]


@pytest.mark.parametrize("entries, why", [
    (_tree(("", "dir"), ("a", "file"), ("a/b", "file")), "below 'a', which is a file"),
    (_tree(("", "dir"), ("a", "symlink"), ("a/x/y", "file")), "below 'a', which is a symlink"),
    (_tree(("", "dir"), ("a", "file"), ("a", "file")), "'a' twice"),
    (_tree(("", "dir"), ("b", "file"), ("a", "file"), ("b", "dir")), "'b' twice"),
    (_tree(("", "dir"), ("b/c", "file"), ("b", "file")), "below 'b', which is a file"),  # (out of order)
    (_tree(("", "dir"), ("h", "hardlink"), ("a", "file")), "a hard link 'h' whose target"),
    (_tree(("", "dir"), ("a", "dir"), ("h", "hardlink")), "a hard link 'h' whose target"),
])
def test_manifest_refusals_in_and_out_of_order(entries, why):
    with pytest.raises(DamagedData, match=why):
        check_manifest(entries)


def test_manifest_in_any_order_that_is_sound_passes_and_is_visited_once():
    ok = _tree(("", "dir"), ("a", "file"), ("a-b", "dir"), ("a-b/c", "file"), ("h", "hardlink"), ("z/y", "file"))
    seen = []
    check_manifest(ok, visit=seen.append)
    assert seen == ok
    check_manifest(ok[:1] + ok[2:4] + ok[1:2] + ok[4:])  # ("a-b" before "a": checked with every path)
