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


# --- listings: what the walking helper hands an incremental backup ---------------------------------
def _odd_tree(src) -> None:
    """Everything a walk meets: files (one of them non-UTF-8, quoted, with a newline), a hard-linked
    pair, links, a FIFO, nested and empty directories, a file with an extended attribute; most of it
    again in ``odd``, which the second of two walking helpers lists (the others are the first's)."""
    (src / "d" / "e").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "odd").mkdir()
    for rel in ('odd/q"uote', "odd/new\nline", "odd/ünï"):
        (src / rel).write_bytes(rel.encode() * 3)
    (src / "odd" / os.fsdecode(b"raw-\xfe")).write_bytes(b"not utf-8 either")
    os.symlink("../d", src / "odd" / "dirlink")
    os.mkfifo(src / "odd" / "fifo")
    for rel in ("a", "d/b", "d/e/c", 'q"uote', "back\\slash", "new\nline", "ünï"):
        (src / rel).write_bytes(rel.encode() * 10)
    (src / os.fsdecode(b"raw-\xff")).write_bytes(b"not utf-8")
    os.link(src / "a", src / "d" / "a-again")
    os.symlink("a", src / "link")
    os.mkfifo(src / "fifo")
    os.setxattr(src / "d" / "b", "user.note", b"kept")
    os.link(src / "a", src / "odd" / "a-third")
    os.setxattr(src / "odd" / "ünï", "user.note", b"kept too")
    os.utime(src / "d" / "e" / "c", ns=(9_460_000_000_000_000_000, 9_460_000_000_000_000_000))  # (2269)


def _walked(root, listed=None) -> list:
    from lifeline.agent.backup import FileStat, ListedRun, walk_tree

    out = []
    for e, linked in walk_tree(str(root), lambda rel, why: out.append(("warn", rel, why)), files_as_stat=True,
                               listed=listed):
        if isinstance(e, ListedRun):
            out.extend((type(f).__name__, f.text_head(), f.size, f.entry(), linked) for f in e)
        elif isinstance(e, FileStat):
            out.append((type(e).__name__, e.text_head(), e.size, e.entry(), linked))
        else:
            out.append(("entry", e, linked))
    return out


def _odd_tree_and_helper(tmp_path, monkeypatch) -> tuple:
    """(an odd tree, the backup's own walk of it, a walking helper started on it)."""
    monkeypatch.delenv("LIFELINE_READ_AHEAD", raising=False)
    monkeypatch.setattr(read_ahead, "usable_cores", lambda: 2)  # (two walkers, wherever it runs)
    src = tmp_path / "src"
    _odd_tree(src)
    _walked(src)  # (listing a new directory moves its access time, once)
    own = _walked(src)
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return src, own, ReadAhead(fd, limit=4097, walk=True)
    finally:
        os.close(fd)


@pytest.mark.parametrize("scan_batch", [None, 2])
def test_a_listed_walk_is_the_walk_the_backup_makes_itself(tmp_path, monkeypatch, scan_batch):
    """The same entries, heads and sizes whether the helper listed the directories or the backup did;
    only that the files with one link came as ListedFile (no system call of the backup's). A directory
    is looked at SCAN_BATCH entries at a time: with 2, runs of listed files end with every batch."""
    if scan_batch:
        from lifeline.agent import backup

        monkeypatch.setattr(backup, "SCAN_BATCH", scan_batch)
    src, own, ahead = _odd_tree_and_helper(tmp_path, monkeypatch)
    try:
        listed = _walked(src, ahead.listing)
    finally:
        ahead.close()
    assert [x[1:] for x in listed] == [x[1:] for x in own]
    # every file with one link came from a listing but the one whose times do not fit in its fields
    assert sum(x[0] == "ListedFile" for x in listed) == sum(x[0] == "FileStat" for x in own) - 1
    assert [x[3]["path"] for x in listed if x[0] == "FileStat"] == ["d/e/c"]
    assert {x[0] for x in own} == {"entry", "FileStat"}
    assert [x[1]["path"] for x in own if x[0] == "entry" and x[1].get("type") == "hardlink"] == \
        ["d/a-again", "odd/a-third"]
    assert {read_ahead.walk_part(rel, 2) for rel in ("", "d", "d/e", "empty", "odd")} == {0, 1}


def test_one_core_gets_one_walker(tmp_path, monkeypatch):
    src, own = _twelve_directories(tmp_path, monkeypatch)
    monkeypatch.setattr(read_ahead, "usable_cores", lambda: 1)
    ahead = _walk_shared(src)
    try:
        assert ahead.others == []
        listed = _walked(src, ahead.listing)
    finally:
        report = ahead.close(report=True)
    assert [x[1:] for x in listed] == [x[1:] for x in own] and report == (0, 0, 12 + 36)


def _twelve_directories(tmp_path, monkeypatch):
    """(a source of 12 directories of 3 files, the backup's own walk of it), two walkers wanted."""
    monkeypatch.delenv("LIFELINE_READ_AHEAD", raising=False)
    monkeypatch.setattr(read_ahead, "WALKERS", 2)
    monkeypatch.setattr(read_ahead, "usable_cores", lambda: 2)
    src = tmp_path / "src"
    for i in range(12):
        for j in range(3):
            (src / f"d{i:02d}").mkdir(parents=True, exist_ok=True)
            (src / f"d{i:02d}" / f"f{j}").write_bytes(b"x" * (i + j))
    _walked(src)  # (listing a new directory moves its access time, once)
    return src, _walked(src)


def _walk_shared(src):
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return ReadAhead(fd, limit=4097, walk=True)
    finally:
        os.close(fd)


def test_a_walk_is_shared_by_two_helpers_each_listing_its_part(tmp_path, monkeypatch):
    """Each directory is listed by the helper whose part it is; together they list them all, and the
    walk is the one the backup makes itself."""
    src, own = _twelve_directories(tmp_path, monkeypatch)
    parts = {read_ahead.walk_part(f"d{i:02d}", 2) for i in range(12)}
    assert parts == {0, 1}  # (both helpers have directories of this tree to list)
    ahead = _walk_shared(src)
    assert len(ahead.others) == 1
    try:
        listed = _walked(src, ahead.listing)
        assert ahead.others[0].proc.wait(timeout=10) == 0  # (a walker only: it left once its walk was sent)
    finally:
        report = ahead.close(report=True)
    assert [x[1:] for x in listed] == [x[1:] for x in own]
    assert [x[0] for x in listed if x[0] != "entry"] == ["ListedFile"] * 36
    assert report == (0, 0, 12 + 36)  # (the entries both walks met: each directory's once)


def test_the_part_of_a_helper_that_stopped_is_listed_by_the_backup(tmp_path, monkeypatch):
    src, own = _twelve_directories(tmp_path, monkeypatch)
    ahead = _walk_shared(src)
    gone = ahead.others[0]
    gone.proc.kill()
    gone.proc.wait()
    gone._take = lambda n: None  # (what it wrote before it went, if anything, ends mid-frame)
    try:
        listed = _walked(src, ahead.listing)
    finally:
        ahead.close()
    assert [x[1:] for x in listed] == [x[1:] for x in own]
    by_whom = {(x[3]["path"].split("/")[0], x[0]) for x in listed if x[0] != "entry"}
    assert by_whom == {(f"d{i:02d}", "ListedFile" if read_ahead.walk_part(f"d{i:02d}", 2) == 0 else "FileStat")
                       for i in range(12)}


def test_a_helper_that_stops_mid_walk_leaves_the_rest_to_the_backup(tmp_path, monkeypatch):
    src, own, ahead = _odd_tree_and_helper(tmp_path, monkeypatch)
    asked = []

    def listing(rel, dir_fd):
        got = ahead.listing(rel, dir_fd)
        asked.append((rel, got is not None))
        if rel == "d":  # (gone: what it wrote before it went, if anything, ends mid-frame)
            ahead.proc.kill()
            ahead.proc.wait()
            ahead._take = lambda n: None
        return got
    try:
        listed = _walked(src, listing)
    finally:
        ahead.close()
    assert [x[1:] for x in listed] == [x[1:] for x in own]
    assert asked[:2] == [("", True), ("d", True)] and not ahead.walking


class _Frames(ReadAhead):
    """A ReadAhead that reads scripted frames, not a helper's."""

    def __init__(self, frames):
        self.walking, self._next, self._frames, self.others = True, None, list(frames), []

    def _frame(self):
        return self._frames.pop(0) if self._frames else None


def test_listings_are_matched_to_the_walk_by_path_in_walk_order_and_by_the_directory_itself(tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    fd = os.open(here, os.O_RDONLY | os.O_DIRECTORY)
    st = os.fstat(fd)
    fields = read_ahead.array("q", [0] * read_ahead.FIELDS)
    one = (["x"], [""], fields, (st.st_dev, st.st_ino))
    elsewhere = (["x"], [""], fields, (st.st_dev, st.st_ino + 1))  # (the same path, another directory)
    frames = _Frames([("", one), ("a", None), ("a/x", one), ("c", one), ("c/d", one), ("e", elsewhere), ("f", one)])
    try:
        assert frames.listing("", fd) == one[:3]
        assert frames.listing("a", fd) is None  # (the helper could not list it: the backup lists it itself)
        assert frames.listing("b", fd) is None  # (a/x passed over: the backup did not walk into a/x; c kept)
        assert frames.listing("c", fd) == one[:3] and frames.walking
        assert frames.listing("c/e", fd) is None  # (c/d passed over)
        assert frames.listing("e", fd) is None and frames.walking  # (not this directory: the backup lists it)
        assert frames.listing("f", fd) == one[:3]
        assert frames.listing("g", fd) is None and not frames.walking  # (the end)
    finally:
        os.close(fd)


def test_a_source_path_that_names_another_directory_by_the_walk_is_listed_by_the_backup(tmp_path, monkeypatch):
    """The helper opens the source when the parent is found, the backup's walk later: a path pointed
    elsewhere meanwhile (a link flipped, a volume mounted over it) must not get the first one's names."""
    monkeypatch.delenv("LIFELINE_READ_AHEAD", raising=False)
    first, then = tmp_path / "first", tmp_path / "then"
    for root, name in ((first, "only-first"), (then, "only-then")):
        (root / "sub").mkdir(parents=True)
        (root / name).write_bytes(b"x")
        (root / "sub" / name).write_bytes(b"y")
    _walked(then)
    own = _walked(then)
    fd = os.open(first, os.O_RDONLY | os.O_DIRECTORY)
    ahead = ReadAhead(fd, limit=4097, walk=True)
    os.close(fd)
    try:
        listed = _walked(then, ahead.listing)
    finally:
        ahead.close()
    assert [x[1:] for x in listed] == [x[1:] for x in own] and not any(x[0] == "ListedFile" for x in listed)


def test_a_directory_too_large_to_list_is_left_to_the_backup(tmp_path, monkeypatch):
    from lifeline.agent.beneath import Beneath

    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    for name in ("a", "big/1", "big/2", "big/3"):
        (src / name).write_bytes(b"x")
    monkeypatch.setattr(read_ahead, "LISTING_MAX", 2)
    sent = []
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        read_ahead._walk(Beneath(fd), [0], lambda rel, listing: sent.append((rel, listing is None)))
    finally:
        os.close(fd)
    assert sent == [("", False), ("big", True), ("", False)]  # (then the walk's end)


@pytest.mark.parametrize("names", [["a", "../escape"], ["a", ".."], ["."], ["a", ""], ["a/b"]])
def test_a_listing_naming_what_is_not_an_entry_of_the_directory_is_never_used(names, tmp_path):
    """The backup stats and opens what a listing names relative to the directory: a name with a
    slash, ``.``, ``..`` or nothing would take it out of it. The helper never sends one; if a listing
    held one, the backup lists every directory from there on itself."""
    data = "\0".join(names).encode()
    heads = "\0".join([""] * len(names)).encode()
    assert _read_frame(read_ahead.FRAME.pack(len(names), 1, len(data), len(heads), 0, 0) + b"d" + data + heads
                       + bytes(8 * read_ahead.FIELDS * len(names))) is None


def test_a_frame_cut_short_ends_the_listings():
    whole = read_ahead.FRAME.pack(1, 1, 1, 0, 0, 0) + b"d" + b"x" + bytes(8 * read_ahead.FIELDS)
    assert _read_frame(whole) == ("d", (["x"], [""], read_ahead.array("q", [0] * read_ahead.FIELDS), (0, 0)))
    for cut in (len(whole) - 1, read_ahead.FRAME.size - 1, read_ahead.FRAME.size + 1):
        assert _read_frame(whole[:cut]) is None


def _read_frame(data: bytes):
    """What ReadAhead._frame makes of ``data`` sent by a helper that then ended."""
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)

    class Pipe:
        returncode = None

        class stdout:
            @staticmethod
            def fileno():
                return r
    ahead = _Frames([])
    ahead.proc, ahead._in = Pipe, bytearray()
    try:
        return ReadAhead._frame(ahead)
    finally:
        os.close(r)
