"""A large tree's manifest check in two halves (manifest_check.checked_plan): whatever the tree and
wherever the seam, the halves refuse what one pass refuses and gather the same plan."""
from __future__ import annotations

import pickle

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from lifeline.agent import manifest_check
from lifeline.agent.manifest_check import Plan, check_manifest, check_second_half, checked_plan
from lifeline.repository.errors import DamagedData
from lifeline.repository.manifest import POINT_VERSION
from lifeline.repository.tree import Tree, TreeWriter



def _tree(entries: list[dict]) -> Tree:
    w = TreeWriter()
    for e in entries:
        w.add(e)
    return Tree("p", bytes(w.finish()), POINT_VERSION)


def _seams(tree: Tree) -> list[int]:
    """The byte offset of every entry's start but the first's (where a second half may begin)."""
    reader = tree.entry_reader(with_text=False)
    after = [reader.offset for _ in reader]  # (where each entry ends: the next one's ",", or the list's "]")
    return [at for at in after[:-1] if at is not None]


def _one_pass(tree: Tree, includes=None):
    plan = Plan(includes)
    try:
        check_manifest(tree, "p", plan.visit)
    except DamagedData as exc:
        return "refused", str(exc)
    return "ok", plan.state()


def _halves(tree: Tree, at: int, includes=None):
    def second():  # (through pickle, as from the helper's pipe)
        return pickle.loads(pickle.dumps(check_second_half(tree, at, "p", includes)))
    try:
        return "ok", manifest_check._in_halves(tree, at, "p", includes, second).state()
    except DamagedData as exc:
        return "refused", str(exc)


_NAMES = st.sampled_from(["a", "b", "a-b", "a.b", "a/x", "a/y", "b/x", "a/x/z", "..", "a//b", "", "/a"])


@st.composite
def _entries(draw):
    out = [{"path": "", "type": "dir"}]
    for path in draw(st.lists(_NAMES, min_size=1, max_size=9)):
        kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "hardlink", "fifo"]))
        e = {"path": path, "type": kind, "size": draw(st.integers(0, 9)), "chunks": []}
        if kind in ("symlink", "hardlink"):
            e["target"] = draw(st.sampled_from([o["path"] for o in out] + ["nowhere"]))
        if draw(st.booleans()) and len(out) > 2:  # sorted as a backup does, or not
            out.sort(key=lambda o: o["path"].split("/"))
        out.append(e)
    if draw(st.booleans()):
        out.sort(key=lambda o: o["path"].split("/"))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_entries(), st.sampled_from([None, ["a"], ["b/x"]]))
def test_two_halves_at_any_seam_decide_as_one_pass(entries, includes):
    tree = _tree(entries)
    verdict, what = _one_pass(tree, includes)
    for at in _seams(tree):
        got = _halves(tree, at, includes)
        assert got[0] == verdict, (at, got, what)
        if verdict == "ok":
            assert got[1] == what


def test_a_seam_that_is_not_an_entry_start_is_not_used():
    tree = _tree([{"path": "", "type": "dir"}, {"path": "a", "type": "file"}, {"path": "b", "type": "file"}])
    at = _seams(tree)[1]
    assert tree.entries_from(at + 1) is None and tree.entries_from(at - 1) is None
    assert check_second_half(tree, at + 1, "p", None) == {"split": False}
    with pytest.raises(manifest_check._NotThere):  # (the first half would run past it)
        manifest_check._in_halves(tree, at + 1, "p", None, lambda: {"split": False})


def _big(n: int, bad_at: int | None = None) -> list[dict]:
    entries = [{"path": "", "type": "dir"}]
    for d in range(n // 100):
        entries.append({"path": f"d{d:03d}", "type": "dir"})
        entries += [{"path": f"d{d:03d}/f{i:03d}", "type": "file", "chunks": []} for i in range(99)]
    if bad_at is not None:
        entries[bad_at]["path"] = entries[bad_at]["path"] + "/../../escape"
    return entries


def test_a_large_tree_is_checked_by_a_helper_process_for_its_second_half(monkeypatch):
    tree = _tree(_big(4000))
    monkeypatch.setattr(manifest_check, "SPLIT_FROM", 0)
    here = []
    visit = Plan.visit
    monkeypatch.setattr(Plan, "visit", lambda self, e: (here.append(e["path"]), visit(self, e)))
    started = []
    start = manifest_check._start_helper
    monkeypatch.setattr(manifest_check, "_start_helper", lambda *a: started.append(a) or start(*a))
    plan = checked_plan(tree, "p", None)
    assert started and plan.files == 3960 and len(plan.dirs) == 41
    assert 1000 < len(here) < 3000  # (this process visited the first half only)
    here.clear()
    assert _one_pass(tree) == ("ok", plan.state()) and len(here) == 4001


@pytest.mark.parametrize("bad_at", [3500, 1000])
def test_a_forged_entry_in_either_half_refuses_the_restore(monkeypatch, bad_at):
    monkeypatch.setattr(manifest_check, "SPLIT_FROM", 0)
    answers = []
    in_halves = manifest_check._in_halves

    def counted(tree, at, point_id, includes, second, meanwhile=None):
        return in_halves(tree, at, point_id, includes, lambda: answers.append(second()) or answers[-1], meanwhile)
    monkeypatch.setattr(manifest_check, "_in_halves", counted)
    tree = _tree(_big(4000, bad_at))
    with pytest.raises(DamagedData, match="an unsafe path .*escape.*nothing was restored"):
        checked_plan(tree, "p", None)
    if bad_at > 2000:  # (the helper's half: it is the one that refused)
        assert len(answers) == 1 and "escape" in str(answers[0]["raise"])
    else:  # (this process's half: refused before the helper's answer is read)
        assert answers == []


def _raw_tree(text: str) -> Tree:
    return Tree("p", zstandard.ZstdCompressor().compress(text.encode()), POINT_VERSION)


def test_a_seam_before_any_entry_is_not_used():
    """A second half that would begin right after the list's "[" (with a "," no tree has there)."""
    tree = _raw_tree('{"entries":[,{"path":"","type":"dir"},{"path":"a","type":"dir"}]}')
    at = len('{"entries":[')
    assert tree.entries_from(at) is None and check_second_half(tree, at, "p", None) == {"split": False}
    with pytest.raises(DamagedData, match="where an entry should be"):  # (the first half reads one first)
        manifest_check._in_halves(tree, at, "p", None, lambda: {"split": False})
    with pytest.raises(DamagedData, match="where an entry should be"):
        check_manifest(tree)


def test_a_marker_inside_an_entry_is_not_taken_for_a_seam():
    """A key holder can put ',{"path":"' inside an entry (in a list of objects): the first half then
    runs past it, and the tree is checked in one pass."""
    text = ('{"entries":[{"path":"","type":"dir"},{"path":"a","type":"dir","x":[1,{"path":"../../etc"}]},'
            '{"path":"b","type":"dir"}]}')
    tree = _raw_tree(text)
    at = text.index(',{"path":"../')
    with pytest.raises(manifest_check._NotThere):
        manifest_check._in_halves(tree, at, "p", None, lambda: check_second_half(tree, at, "p", None))


def test_a_restore_of_a_tree_checked_in_halves(repo, tmp_path, monkeypatch):
    from lifeline.agent.restore import Restorer
    from lifeline.keys import provider_from_ref
    from lifeline.repository import Repository, open_backend

    src = tmp_path / "src"
    for d in range(3):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(40):
            (src / f"d{d}" / f"f{i}").write_bytes(b"%d/%d\n" % (d, i))
    pid = repo.backup(str(src))["point_id"]
    monkeypatch.setattr(manifest_check, "SPLIT_FROM", 0)
    answers = []
    answer = manifest_check._Helper.answer
    monkeypatch.setattr(manifest_check._Helper, "answer", lambda self: answers.append(answer(self)) or answers[-1])
    r = Repository.open(open_backend(repo.url))
    summary = Restorer(r, provider_from_ref(repo.key), pid).to_directory(str(tmp_path / "out"))
    assert summary["files"] == 120 and not summary["damaged"]
    assert len(answers) == 1 and "run" in answers[0]  # (the helper checked the second half, it did not die)
    for d in range(3):
        for i in range(40):
            assert (tmp_path / "out" / f"d{d}" / f"f{i}").read_bytes() == b"%d/%d\n" % (d, i)


def test_a_helper_that_cannot_start_leaves_the_check_to_one_process(monkeypatch):
    monkeypatch.setattr(manifest_check, "SPLIT_FROM", 0)

    def no_process(*_a):
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(manifest_check, "_start_helper", no_process)
    tree = _tree(_big(1000))
    assert checked_plan(tree, "p", None).state() == _one_pass(tree)[1]


def test_a_hard_link_in_the_second_half_to_a_file_in_the_first():
    entries = [{"path": "", "type": "dir"}] + [{"path": f"f{i}", "type": "file", "chunks": []} for i in range(6)]
    entries += [{"path": "h", "type": "hardlink", "target": "f4"}, {"path": "i", "type": "hardlink", "target": "j"},
                {"path": "j", "type": "file", "chunks": []}]
    tree = _tree(entries)
    assert len(_seams(tree)) == len(entries) - 1
    for at in _seams(tree):  # "h" is fine; "i" links to a file listed after it, wherever the seam
        assert _halves(tree, at)[0] == "refused"
    tree = _tree(entries[:8])
    assert len(_seams(tree)) == 7
    for at in _seams(tree):
        assert _halves(tree, at) == _one_pass(tree) and _one_pass(tree)[0] == "ok"
