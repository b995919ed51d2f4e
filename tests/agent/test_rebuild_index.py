"""rebuild-index: the index recreated from the packs' own sealed directories (after deleting every index
object on every backend: test_every_backend.py)."""
from __future__ import annotations

import shutil

import pytest

from lifeline.agent.repack import run_rebuild_index
from lifeline.agent.verify import run_check, run_verify
from lifeline.repository.layout import pack_name
from lifeline.repository.pack import TRAILER_LEN

from .helpers import Repo, make_key, repo_root, write_random
from .maintenance_helpers import (MiB, Crash, CrashingBackend, assert_restores, backend_of, drop_locks, fill_history,
                                  open_repo)


def _delete_index(r: Repo) -> int:
    b = backend_of(r)
    names = [o.name for o in b.list("index/")]
    for name in names:
        b.delete(name)
    return len(names)


def _two_epochs(r: Repo, tmp_path) -> dict:
    """The pruned history (one epoch) and a second source's full backup (another epoch)."""
    kept = fill_history(r, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        write_random(other / f"o{i}", MiB // 2)
    (other / "small").write_bytes(b"a small file" * 100)
    kept[r.backup(other, "--source-name", "other")["point_id"]] = other
    return kept


def _scenario(r: Repo, tmp_path) -> None:
    kept = _two_epochs(r, tmp_path)
    packs = len(backend_of(r).list("data/"))
    assert _delete_index(r) >= 2

    v = r.run("verify", "--json")
    assert v.rc == 3 and "missing from the index" in v.text
    refused = r.run("repack")
    assert refused.rc == 3 and "rebuild-index" in refused.err and len(backend_of(r).list("data/")) == packs

    dry = r.ok("rebuild-index", "--dry-run", "--json").json
    assert dry["packs_indexed"] == packs and backend_of(r).list("index/") == []
    rep = r.ok("rebuild-index", "--json", "--progress").json
    assert rep["packs_read"] == rep["packs_indexed"] == packs and rep["damaged"] == []
    assert rep["index_segments_before"] == 0 and rep["index_segments_written"] == 2  # one per epoch
    v = r.ok("verify", "--read-data", "--json").json
    assert v["ok"] and v["points_checked"] == len(kept)
    assert_restores(r, kept, tmp_path, "rebuilt")
    check = r.ok("check", "--read-data", "--json").json
    assert check["ok"] and check["leftovers"] == {}

    # over an index that is there: replaced by an equal one
    before = {o.name for o in backend_of(r).list("index/")}
    again = r.ok("rebuild-index", "--json").json
    assert again["chunks_indexed"] == rep["chunks_indexed"] and again["index_segments_before"] == 2
    assert not before & {o.name for o in backend_of(r).list("index/")}
    assert r.ok("verify", "--read-data", "--json").json["ok"]
    # and the rebuilt index is one repack and prune work with
    r.ok("repack")
    r.ok("prune", "--keep-last", "10")
    assert_restores(r, kept, tmp_path, "after-repack")


def test_rebuild_index_after_deleting_every_index_object(repo: Repo, tmp_path):
    _scenario(repo, tmp_path)


def _newest_pack(r: Repo) -> str:
    newest = max((p for p in (repo_root(r) / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    return newest.name


def test_damaged_pack_is_named_not_fatal(repo: Repo, tmp_path):
    kept = fill_history(repo, tmp_path)
    last_point = list(kept)[-1]  # its new files are the newest pack's chunks, which no other kept point uses
    victim = _newest_pack(repo)
    path = repo_root(repo) / pack_name(victim)
    data = bytearray(path.read_bytes())
    data[len(data) - TRAILER_LEN - 5] ^= 0x20  # in the sealed directory: it no longer authenticates
    path.write_bytes(bytes(data))

    # the index is still there: the pack is named, and keeps what an authenticated segment said of it
    r = repo.run("rebuild-index", "--json")
    assert r.rc == 3 and pack_name(victim) in r.err and "authentication failed" in r.err
    assert r.json["packs_kept_from_old_index"] == [victim]
    assert_restores(repo, kept, tmp_path, "kept-entries")

    # without any index: every other pack is indexed; only the files in that pack are missing
    _delete_index(repo)
    r = repo.run("rebuild-index", "--json")
    assert r.rc == 3 and pack_name(victim) in r.err
    assert r.json["packs_indexed"] == r.json["packs_read"] - 1 and r.json["packs_kept_from_old_index"] == []
    v = repo.run("verify", "--json")
    assert v.rc == 3
    assert {d["point"] for d in v.json["damaged"]} == {last_point}
    assert all("missing from the index" in d["error"] for d in v.json["damaged"])
    assert_restores(repo, {p: t for p, t in kept.items() if p != last_point}, tmp_path, "others")


def test_packs_of_a_shredded_epoch_are_left_out(repo: Repo, tmp_path):
    a = repo.backup("--stdin", "--source-name", "a", input=b"patient A" * 100_000)
    b = repo.backup("--stdin", "--source-name", "b", input=b"patient B" * 100_000)
    assert a["epoch"] != b["epoch"]
    repo.ok("shred", "--epoch", a["epoch"], "--yes", env={"LIFELINE_AUDIT_URL": (tmp_path / "audit").as_uri()})
    _delete_index(repo)
    rep = repo.ok("rebuild-index", "--json").json
    assert len(rep["packs_shredded"]) == 1 and rep["packs_indexed"] == 1 and rep["damaged"] == []
    assert repo.ok("restore", b["point_id"], "--to", "-").out == b"patient B" * 100_000
    repo.ok("prune")
    check = repo.ok("check", "--read-data", "--json").json
    assert check["ok"] and check["leftovers"] == {}


def test_rebuild_index_crash_at_every_write(tmp_path):
    """Stopped before each of its writes and deletes, rebuild-index leaves an index that still names
    every chunk (new segments are stored before any old one goes); run again, it completes."""
    template = Repo((tmp_path / "template").as_uri(), make_key(tmp_path / "key"))
    template.ok("init")
    kept = _two_epochs(template, tmp_path)
    count_root = tmp_path / "count"
    shutil.copytree(repo_root(template), count_root)
    counting = CrashingBackend(backend_of(Repo(count_root.as_uri(), template.key)))
    run_rebuild_index(*open_repo(template, counting))
    steps = counting.log
    kinds = [s.split()[0] + " " + s.split()[1].split("/")[0] for s in steps]
    assert kinds == ["put locks", "put index", "put index"] + ["delete index"] * (len(kinds) - 4) + ["delete locks"]
    for at in range(1, len(steps) + 1):
        root = tmp_path / f"crash{at}"
        shutil.copytree(repo_root(template), root)
        r = Repo(root.as_uri(), template.key)
        with pytest.raises(Crash):
            run_rebuild_index(*open_repo(r, CrashingBackend(backend_of(r), at=at)))
        drop_locks(r)
        report = run_verify(*open_repo(r), None, read_data=True)
        assert not report.damaged and report.points_checked == len(kept), (steps[at - 1], report.damaged)
        run_rebuild_index(*open_repo(r))
        check = run_check(*open_repo(r), read_data=True)
        assert not check.damaged and check.leftovers == {}
        shutil.rmtree(root)
