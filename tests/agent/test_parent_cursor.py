"""An incremental backup copies an unchanged file's entry from the parent as text, decoding nothing,
and only when nothing that the entry records can have changed; else it looks at the file."""
from __future__ import annotations

import errno
import json
import os
import random
import stat
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lifeline.agent import backup
from lifeline.agent.backup import Attributes, FileStat, dir_source, run_backup
from lifeline.repository.blob_saver import BlobSaver
from lifeline.agent.parent_cursor import ParentCursor, reused_chunks
from lifeline.repository.tree import Tree, TreeWriter, entry_text

from .helpers import Repo
from .maintenance_helpers import backend_of, open_repo

# Names a file system takes (no "/" or NUL), with what JSON escapes: quotes, backslashes, control
# characters, DEL, non-ASCII, surrogate escapes of undecodable bytes.
_NAMES = st.lists(st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1,
                          max_size=8)
                  | st.sampled_from(['"', "\\", "\x01", "\x7f", "é", "\udcff", ',{"path":"']),
                  min_size=1, max_size=5).map("".join).filter(lambda s: s not in (".", "..") and len(os.fsencode(s)) < 250)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_NAMES)
def test_the_head_a_walk_renders_is_how_the_files_entry_begins(tmp_path, name):
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(b"x" * random.randrange(100))
    try:
        if os.geteuid() == 0:
            os.chown(p, 54321, 54322)  # (ids with no names: no "user"/"group" fields)
        os.setxattr(p, "user.a", b"1")
    except OSError:
        pass
    attrs = Attributes(lambda *a: None)
    rel = f"d/{name}"
    fs = FileStat(rel, os.lstat(p), p, attrs)
    text = entry_text(fs.entry() | {"chunks": ["ab" * 32]})
    assert text.startswith(fs.text_head()) and text.isascii()
    assert reused_chunks(text, fs.text_head()) == bytes.fromhex("ab" * 32)
    os.unlink(p)


def test_an_entry_whose_attributes_could_not_all_be_read_is_never_copied(tmp_path, monkeypatch):
    """Its extended attributes are read again next time, not copied from an entry that lacks some."""
    p = tmp_path / "f"
    p.write_bytes(b"x")

    def refuse(*_a, **_k):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "listxattr", refuse)
    warned = []
    fs = FileStat("f", os.lstat(p), str(p), Attributes(lambda *a: warned.append(a)))
    e = fs.entry()
    assert e["xattrs_incomplete"] is True and warned
    text = entry_text(e | {"chunks": ["ab" * 32]})
    assert text.startswith(fs.text_head()) and reused_chunks(text, fs.text_head()) is None
    monkeypatch.undo()
    assert "xattrs_incomplete" not in FileStat("f", os.lstat(p), str(p), Attributes(print)).entry()


def _tree_of(entries: list[dict]) -> Tree:
    w = TreeWriter()
    for e in entries:
        w.add(e)
    return Tree("p", bytes(w.finish()))


@settings(max_examples=40, deadline=None)
@given(names=st.lists(_NAMES, min_size=0, max_size=30, unique=True), seed=st.integers(0, 2**32))
def test_a_tree_read_as_texts_is_its_entries_text_by_text(names, seed):
    """Entries are told apart by how the next begins; a name holding that (escaped) changes nothing."""
    rng = random.Random(seed)
    entries = [{"path": "", "type": "dir"}] + [
        {"path": n, "type": "file", "size": rng.randrange(1 << 40), "chunks": [os.urandom(32).hex()]}
        | ({"xattrs": {n: "QUJD" * rng.randrange(1, 100_000)}} if rng.random() < 0.1 else {})
        for n in sorted(names)]
    reader = _tree_of(entries).entry_reader()
    texts = list(iter(reader.next_text, None))
    assert texts == [entry_text(e) for e in entries] and reader.next_text() is None
    # decoding and passing over mix
    reader = _tree_of(entries).entry_reader()
    got = []
    for i in range(len(entries)):
        got.append(reader.next_text() if i % 2 else next(reader)[1])
    assert got == texts


def test_only_an_entry_in_the_shape_lifeline_writes_is_reused():
    head = '{"path":"a","mode":420,"type":"file","size":3,"ino":1,"ctime_ns":5,'
    ids = ["ab" * 32, "cd" * 32]
    good = [f'"chunks":["{ids[0]}","{ids[1]}"]}}', '"chunks":[]}',
            f'"xattrs":{{"user.a":"QUJD","user.\\"b\\u00e9":""}},"chunks":["{ids[0]}"]}}']
    assert [reused_chunks(head + t, head) for t in good] == [bytes.fromhex("".join(ids)), b"",
                                                           bytes.fromhex(ids[0])]
    bad = ['"chunks":["' + "ab" * 31 + '"]}',  # a short id
           f'"chunks":["{ids[0]}"],"x":1}}',  # a field after the chunks
           f'"chunks":["{ids[0]}"]}},{{"path":"b"}}',  # more than one entry
           '"xattrs":{"user.a":"b},"chunks":[]}',  # a string left open
           '"xattrs":{"user.é":"QUJD"},"chunks":[]}',  # not ASCII
           '"xattrs":{"user.a":"\\q"},"chunks":[]}',  # not an escape JSON has
           '"chunks":["' + "AB" * 32 + '"]}', '"chunks":["' + "ab" * 31 + 'a "]}', '"chunks":["' + "g" * 64 + '"]}',
           '"chunks":[]']
    assert [reused_chunks(head + t, head) for t in bad] == [None] * len(bad)


def test_the_cursor_gives_an_unchanged_entrys_text_and_still_finds_a_changed_one():
    entries = [{"path": "", "type": "dir"}, {"path": "a", "type": "dir"},
               {"path": "a/x", "type": "file", "ino": 1, "chunks": []},
               {"path": "a/y", "type": "file", "ino": 2, "chunks": []},
               {"path": "b", "type": "file", "ino": 3, "chunks": []}]
    cur = ParentCursor(_tree_of(entries).entry_reader())
    assert cur.same_text("a/x", '{"path":"a/x","type":"file"') == entry_text(entries[2])  # (dirs passed)
    assert cur.same_text("a/y", '{"path":"a/y","type":"file","ino":9') is None
    assert cur.find("a/y", 9) == entries[3] and cur.text == entry_text(entries[3])
    assert cur.same_text("a/z", '{"path":"a/z"') is None
    assert cur.same_text("b", '{"path":"b",') == entry_text(entries[4])
    assert cur.find("c", 0) is None


def _tree_text(r: Repo, point_id: str) -> list[str]:
    repo, provider = open_repo(r)
    _h, tree, _keys = repo.open_point(point_id, provider)
    return list(iter(tree.entry_reader().next_text, None))


@pytest.mark.slow
def test_an_incremental_copies_what_did_not_change_and_sees_every_change(repo: Repo, tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(40):
        (src / "d" / f"f{i:02d}").write_bytes(os.urandom(100 + i))
    first = repo.backup(src)
    second = repo.backup(src)  # (the first backup's reads may have moved access times)
    # Same size, mtime put back: only the change time says it changed.
    p = src / "d" / "f01"
    before = os.stat(p)
    p.write_bytes(os.urandom(101))
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.setxattr(src / "d" / "f02", "user.note", b"added")  # (moves the change time too)
    os.chmod(src / "d" / "f03", 0o600)
    third = repo.backup(src)
    assert third["chunks_new"] == 1 and third["files_unchanged"] == 37  # (a moved change time: read again)
    old, new = _tree_text(repo, second["point_id"]), _tree_text(repo, third["point_id"])
    changed = {json.loads(t)["path"] for t in set(new) - set(old)} - {"", "d"}  # (directories: their times)
    assert changed == {"d/f01", "d/f02", "d/f03"}
    out = tmp_path / "out"
    repo.ok("restore", third["point_id"], "--to", out)
    assert (out / "d" / "f01").read_bytes() == p.read_bytes()
    # and the files that did not change are copied without making their entries (in this process)
    made = []
    entry = FileStat.entry
    monkeypatch.setattr(FileStat, "entry", lambda self: made.append(self.rel) or entry(self))
    (src / "d" / "f04").write_bytes(os.urandom(104))
    r, provider = open_repo(repo)
    fourth = run_backup(r, provider, dir_source(str(src)))
    # (the files the third backup read may have new access times: their entries are made anew)
    assert "d/f04" in made and set(made) <= {"d/f01", "d/f02", "d/f03", "d/f04"}
    assert fourth["files_unchanged"] == 39 and fourth["chunks_new"] == 1
    assert os.getxattr(out / "d" / "f02", "user.note") == b"added"
    assert stat.S_IMODE(os.stat(out / "d" / "f03").st_mode) == 0o600
    assert first["files"] == third["files"] == 40


@pytest.mark.slow
def test_an_unchanged_file_whose_chunks_the_index_lost_is_read_again(repo: Repo, tmp_path):
    """After a pack is lost and the index rebuilt without it, a copied entry would name chunks no
    index finds: the file is read and stored again instead, and the new point restores whole."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "old").write_bytes(os.urandom(5000))
    repo.backup(src)
    b = backend_of(repo)
    packs_before = {o.name for o in b.list("data/")}
    (src / "new").write_bytes(os.urandom(5000))
    repo.backup(src)
    for name in packs_before:
        b.delete(name)
    for o in b.list("index/"):
        b.delete(o.name)
    repo.ok("rebuild-index")
    third = repo.backup(src)
    assert third["chunks_new"] == 1 and third["files_unchanged"] == 1
    out = tmp_path / "out"
    repo.ok("restore", third["point_id"], "--to", out)
    assert (out / "old").read_bytes() == (src / "old").read_bytes()


def _forty_small_files_backed_up(repo: Repo, tmp_path) -> tuple:
    """(a directory of 40 small files, the repository, its key provider), backed up twice (the
    access times settled by the first one's reads)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(os.urandom(100))
    r, provider = open_repo(repo)
    run_backup(r, provider, dir_source(str(src)))
    run_backup(r, provider, dir_source(str(src)))
    return src, r, provider


def _watch_waiting(monkeypatch) -> dict:
    """Watch the backup's queue of entries waiting for chunks: ``added`` counts the entries put in
    so far (how far the walk got behind a changed file), ``longest`` the most that waited at once."""
    seen = {"added": 0, "longest": 0}

    class Waiting(deque):
        def append(self, x):
            super().append(x)
            seen["added"] += 1
            seen["longest"] = max(seen["longest"], len(self))

        def extend(self, xs):
            for x in xs:
                self.append(x)

    monkeypatch.setattr(backup, "deque", Waiting)
    return seen


@pytest.mark.slow
def test_unchanged_files_copied_behind_a_changed_small_file_wait_no_longer_than_the_bound(repo: Repo, tmp_path,
                                                                                        monkeypatch):
    """Entries wait for a changed small file's batch at most PENDING_MAX long, copied ones too: past
    it, the batch is saved and waited for (else a flat directory of unchanged files would all wait)."""
    src, r, provider = _forty_small_files_backed_up(repo, tmp_path)
    (src / "f00").write_bytes(os.urandom(100))  # the first in the walk: the rest wait behind it
    seen, drains = _watch_waiting(monkeypatch), []  # (at each wait for the saver: entries queued by then)
    drain = BlobSaver.drain
    monkeypatch.setattr(BlobSaver, "drain", lambda self: drains.append(seen["added"]) or drain(self))
    monkeypatch.setattr(backup, "PENDING_MAX", 4)
    made = []
    entry = FileStat.entry
    monkeypatch.setattr(FileStat, "entry", lambda self: made.append(self.rel) or entry(self))
    third = run_backup(r, provider, dir_source(str(src)))
    assert made == ["f00"] and third["files_unchanged"] == 39 and third["chunks_new"] == 1
    # (waited for while the walk went on, not only at its end: the root, f00, then past the bound)
    assert drains and min(drains) <= 1 + 1 + 4 + 1
    assert seen["longest"] == 4 + 1


def test_a_changed_small_files_batch_is_sent_to_be_read_before_it_is_full(repo: Repo, tmp_path, monkeypatch):
    """1 % of small files changed fill a batch only every few thousand entries: the batch is sent once
    a quarter of PENDING_MAX waits behind it, so its files are read while the walk goes on, not when
    the bound is reached (where the walk would wait for the reads)."""
    src, r, provider = _forty_small_files_backed_up(repo, tmp_path)
    (src / "f00").write_bytes(os.urandom(100))
    seen, events = _watch_waiting(monkeypatch), []
    for name in ("save_small", "drain"):
        real = getattr(BlobSaver, name)
        monkeypatch.setattr(BlobSaver, name, lambda self, *a, _n=name, _r=real: (
            events.append((_n, seen["added"])), _r(self, *a))[1])
    monkeypatch.setattr(backup, "PENDING_MAX", 16)
    third = run_backup(r, provider, dir_source(str(src)))
    assert third["files_unchanged"] == 39 and third["chunks_new"] == 1
    # (the root, f00 itself, then past a quarter of the bound behind it)
    assert events[0] == ("save_small", 1 + 1 + 16 // 4 + 1)
    assert seen["longest"] <= 16 + 1


def test_a_batch_is_sent_early_after_a_quarter_behind_itself_not_behind_an_earlier_one(repo: Repo, tmp_path,
                                                                                     monkeypatch):
    """While an earlier batch is in flight, a new changed small file starts a batch that waits for
    its own quarter of the bound behind it: counted from the front of what waits, every changed file
    would go alone (one read per hand-off, and the walk waiting on the few in flight)."""
    src, r, provider = _forty_small_files_backed_up(repo, tmp_path)
    for name in ("f00", "f07", "f08"):
        (src / name).write_bytes(os.urandom(100))
    seen, sent = _watch_waiting(monkeypatch), []
    real = BlobSaver.save_small
    monkeypatch.setattr(BlobSaver, "save_small", lambda self, jobs, *a: (
        sent.append((seen["added"], [j[1] for j in jobs])), real(self, jobs, *a))[1])
    monkeypatch.setattr(backup, "PENDING_MAX", 16)
    third = run_backup(r, provider, dir_source(str(src)))
    assert third["files_unchanged"] == 37 and third["chunks_new"] == 3
    # (the root, then f00 and five behind it; f07's batch: after five behind it)
    assert sent[:2] == [(1 + 6, ["f00"]), (1 + 9 + 5, ["f07", "f08"])]
