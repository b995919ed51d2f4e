"""Finding 2 of the security review, as the attacks: a restore must never write, chmod, chown,
utime or delete anything outside its target directory.

Two attackers: a key holder (an insider with the repository key) who forges a point's manifest
(with the repository's own API, as they could), and someone who planted links in the restore
target before the restore. Every test keeps an ``outside`` directory next to the target, with a
sentinel file and a subdirectory, and checks it is exactly as it was afterwards (contents,
modes, owners, times, the directory's own mode and time).

The restores run the real agent (``lifeline agent restore``) twice: as a subprocess, resolving
paths with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and in-process with openat2 switched
off, so the component-by-component walk (kernels before 5.6, seccomp filters) is attacked too.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.agent.helpers import Repo, Result, assert_same_tree, make_key, snapshot

SENTINEL = b"keep me: outside the restore target"


# --- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path) -> Path:
    """The directory an attacker aims at, next to the target."""
    o = tmp_path / "outside"
    o.mkdir()
    (o / "sentinel").write_bytes(SENTINEL)
    (o / "b").mkdir()
    (o / "b" / "inner").write_text("deep inside outside")
    os.chmod(o / "sentinel", 0o640)
    os.chmod(o, 0o750)
    os.utime(o, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    return o


def state(path: Path):
    """Everything a restore could change about a directory tree, the directory itself included."""
    st = os.lstat(path)
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
            snapshot(path))


@pytest.fixture(params=["openat2", "walk", "openat2-writers", "walk-writers"])
def restore(request, repo: Repo, monkeypatch, capsys, tmp_path):
    """``restore(point, target, *flags) -> Result``: the agent's restore, with either resolver, its
    small files written by a thread of the agent or by its writer processes (forced here)."""
    if request.param.endswith("-writers"):
        repo.env["LIFELINE_RESTORE_WRITERS"] = "2"
        monkeypatch.setenv("LIFELINE_RESTORE_WRITERS", "2")
    if request.param.startswith("openat2"):
        try:
            from lifeline.agent import beneath
        except ImportError:  # the code before the fix: attack it as it is
            beneath = None
        if beneath is not None:
            probe = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if not beneath.Beneath(probe).openat2:
                    pytest.skip("this kernel has no usable openat2 (the walk is tested instead)")
            finally:
                os.close(probe)

        def run(point: str, target: Path, *flags) -> Result:
            return repo.run("restore", point, "--to", target, *flags)
        return run

    beneath = pytest.importorskip("lifeline.agent.beneath")
    monkeypatch.setattr(beneath, "OPENAT2", False)
    from lifeline.agent.__main__ import main

    def run_walk(point: str, target: Path, *flags) -> Result:
        capsys.readouterr()
        rc = main(["restore", point, "--to", str(target), "--repo", repo.url, "--key", repo.key,
                   *map(str, flags)])
        out = capsys.readouterr()
        return Result(rc, out.out.encode(), out.err)
    return run_walk


def forge(repo: Repo, point: str, edit) -> None:
    """Rewrite ``point``'s manifest as a key holder can: ``edit(entries by path) -> new entries``."""
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    r = Repository.open(open_backend(repo.url))
    header, entries, keys = r.load_point(point, provider_from_ref(repo.key))
    r.write_point(keys, header, edit({e["path"]: e for e in entries}))


@pytest.fixture(scope="module")
def _genuine(tmp_path_factory) -> tuple[Path, str]:
    """A repository made once for the module (init and a backup are two agent runs, ~1 s): its
    directory, holding a key file and the repository with one genuine point, and that point's id."""
    made = tmp_path_factory.mktemp("genuine")
    r = Repo("file://" + str(made / "repo"), make_key(made / "key"))
    r.ok("init")
    src = made / "base-src"
    (src / "a").mkdir(parents=True)
    (src / "x").write_bytes(b"attacker-chosen bytes\n" * 100)
    return made, r.backup(src)["point_id"]


@pytest.fixture
def repo(_genuine, tmp_path) -> Repo:
    """A test's own copy of the module's repository (a forged manifest stays in its test)."""
    made, _point = _genuine
    shutil.copytree(made / "repo", tmp_path / "repo")
    shutil.copy2(made / "key", tmp_path / "key")
    return Repo("file://" + str(tmp_path / "repo"), "file://" + str(tmp_path / "key"))


@pytest.fixture
def base_point(_genuine, repo: Repo) -> str:
    """A genuine point with a file ``x`` whose chunks the forged manifests reuse."""
    return _genuine[1]


def link(path: str, to: str, like: dict) -> dict:
    return {"path": path, "type": "symlink", "target": to, "mode": 0o777, "uid": like["uid"],
            "gid": like["gid"], "mtime_ns": like["mtime_ns"]}


def empty_or_missing(target: Path) -> bool:
    return not target.exists() or not any(target.iterdir())


# --- 1: a forged manifest with a symlink and entries below it --------------------------------
FORGED_BELOW_LINK = {
    # a symlink a -> outside, then a file a/x: writing a/x would write outside/x
    "file-below-link": lambda by, out: [by[""], link("a", out, by[""]), {**by["x"], "path": "a/x"}],
    # a real directory a filled first, then replaced by a link: the old code then chmod-ed "a"
    # (0777 here) by path, through the new link, and so the outside directory
    "dir-then-link-same-path": lambda by, out: [by[""], {**by["a"], "mode": 0o777}, {**by["x"], "path": "a/x"},
                                                link("a", out, by[""])],
    # a link a -> outside, then a link a/b: the old code rmtree-d outside/b to make room
    "link-below-link": lambda by, out: [by[""], link("a", out, by[""]), link("a/b", "pwned", by[""])],
    # a fifo named like the sentinel below the link: the old code unlinked outside/sentinel
    "fifo-below-link": lambda by, out: [by[""], link("a", out, by[""]),
                                        {**by["x"], "path": "a/sentinel", "type": "fifo", "chunks": []}],
    # a directory and a file below the link
    "dir-below-link": lambda by, out: [by[""], link("a", out, by[""]), {**by["a"], "path": "a/sub"},
                                       {**by["x"], "path": "a/sub/x"}],
    # the root itself as a link: the old code removed the target and linked it to outside
    "root-is-link": lambda by, out: [link("", out, by[""]), {**by["x"], "path": "x"}],
}


@pytest.mark.parametrize("layout", sorted(FORGED_BELOW_LINK))
def test_forged_link_with_entries_below_is_refused(layout, repo, base_point, restore, outside, tmp_path):
    forge(repo, base_point, lambda by: FORGED_BELOW_LINK[layout](by, str(outside)))
    before = state(outside)
    target = tmp_path / "target"
    for flags in ((), ("--overwrite", "--special-bits")):
        r = restore(base_point, target, *flags)
        assert state(outside) == before
        assert r.rc == 3, (r.rc, r.err)
        assert "manifest" in r.err and "nothing was restored" in r.err, r.err
        assert "Traceback" not in r.err
        assert empty_or_missing(target)


# --- 2: links planted in the target -----------------------------------------------------------
def _plant(kind: str, target: Path, outside: Path) -> None:
    target.mkdir()
    if kind == "symlink-dir":  # the point's directory d is a link to outside
        os.symlink(outside, target / "d")
    elif kind == "symlink-file":  # the point's file d/sentinel is a link to outside's sentinel
        (target / "d").mkdir()
        os.symlink(outside / "sentinel", target / "d" / "sentinel")
    elif kind == "hardlink-file":  # ... or a hard link to it: O_TRUNC would truncate the sentinel
        (target / "d").mkdir()
        os.link(outside / "sentinel", target / "d" / "sentinel")
    elif kind == "symlink-subdir":  # one level down: d/sub is a link to outside
        (target / "d").mkdir()
        os.symlink(outside, target / "d" / "sub")


@pytest.mark.parametrize("planted", ["symlink-dir", "symlink-file", "hardlink-file", "symlink-subdir"])
def test_planted_links_are_refused_then_replaced_never_followed(planted, repo, restore, outside, tmp_path):
    src = tmp_path / "src"
    (src / "d" / "sub").mkdir(parents=True)
    (src / "d" / "f1").write_text("one")
    (src / "d" / "sentinel").write_bytes(b"from the point")
    (src / "d" / "sub" / "inner").write_text("from the point, deeper")
    point = repo.backup(src)["point_id"]
    target = tmp_path / "target"
    _plant(planted, target, outside)
    before, planted_state = state(outside), snapshot(target, content=False)

    r = restore(point, target)  # not empty: refused, nothing written
    assert state(outside) == before
    assert r.rc == 2 and "is not empty" in r.err and "--overwrite" in r.err, (r.rc, r.err)
    assert snapshot(target, content=False) == planted_state

    r = restore(point, target, "--overwrite")  # replaced: the link itself, never what it points to
    assert state(outside) == before
    assert r.rc == 0, r.err
    assert (outside / "sentinel").read_bytes() == SENTINEL and os.stat(outside / "sentinel").st_nlink == 1
    assert not (target / "d").is_symlink() and not (target / "d" / "sub").is_symlink()
    assert_same_tree(src / "d", target / "d")


def test_target_that_is_a_link_is_refused(repo, restore, outside, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "sentinel").write_bytes(b"from the point")
    point = repo.backup(src)["point_id"]
    target = tmp_path / "target"
    os.symlink(outside, target)
    before = state(outside)
    for flags in ((), ("--overwrite",)):
        r = restore(point, target, *flags)
        assert state(outside) == before
        assert r.rc == 2 and "is a symbolic link" in r.err, (r.rc, r.err)


def test_lost_and_found_alone_is_empty_but_not_as_a_link(repo, restore, outside, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data")
    point = repo.backup(src)["point_id"]
    fresh = tmp_path / "fresh-filesystem"
    (fresh / "lost+found").mkdir(parents=True)
    assert restore(point, fresh).rc == 0
    assert (fresh / "f").read_text() == "data"
    planted = tmp_path / "planted"
    planted.mkdir()
    os.symlink(outside, planted / "lost+found")
    r = restore(point, planted)
    assert r.rc == 2 and "not empty" in r.err
    assert not (planted / "f").exists()


# --- 3: unsafe paths in a forged manifest -----------------------------------------------------
FORGED_ENTRY = {
    "file": {"type": "file"},
    "symlink": {"type": "symlink", "target": "/etc/passwd", "mode": 0o777},
    "fifo": {"type": "fifo", "mode": 0o666},
}


UNSAFE = ["", "../x", "../outside/sentinel", "a/../../x", "./x", "a//x", "x/", "/ABS/x"]


# (the manifest is refused before a writer process starts: the modes with writers add nothing here)
@pytest.mark.parametrize("restore", ["openat2", "walk"], indirect=True)
@pytest.mark.parametrize("kind", ["file", "symlink", "fifo"])
@pytest.mark.parametrize("bad", UNSAFE)
def test_unsafe_manifest_paths_are_refused_before_anything_is_written(bad, kind, repo, base_point, restore,
                                                                      outside, tmp_path):
    bad = bad.replace("/ABS", str(outside))
    entry = {**FORGED_ENTRY[kind], "path": bad}

    def edit(by):
        return [by[""], by["a"], by["x"], {**by["x"], **entry} if kind == "file" else {**by[""], **entry}]
    forge(repo, base_point, edit)
    before = state(outside)
    target = tmp_path / "target"
    r = restore(base_point, target, "--overwrite")
    assert state(outside) == before
    assert not (tmp_path / "x").exists()
    assert r.rc == 3, (r.rc, r.err)
    assert "manifest" in r.err and (repr(bad) in r.err if bad else "empty path" in r.err), r.err
    assert "Traceback" not in r.err
    assert empty_or_missing(target)


def test_duplicate_paths_are_refused(repo, base_point, restore, tmp_path):
    forge(repo, base_point, lambda by: [by[""], by["x"], {**by["x"], "mode": 0o4755}])
    r = restore(base_point, tmp_path / "target")
    assert r.rc == 3 and "'x' twice" in r.err, r.err
    assert empty_or_missing(tmp_path / "target")


# --- 4: setuid, setgid and sticky bits only when asked ----------------------------------------
def test_special_bits_only_when_asked(repo, restore, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tool").write_bytes(b"#!/bin/sh\necho privileged\n")
    os.chmod(src / "tool", 0o4755)
    (src / "shared").mkdir()
    os.chmod(src / "shared", 0o2775)
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    (src / "plain").write_text("plain")
    os.chmod(src / "plain", 0o640)
    point = repo.backup(src)["point_id"]

    out = tmp_path / "default"
    r = restore(point, out, "--json")
    assert r.rc == 0, r.err
    assert stat.S_IMODE(os.stat(out / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "shared").st_mode) == 0o775
    assert stat.S_IMODE(os.stat(out / "tmp").st_mode) == 0o777
    assert stat.S_IMODE(os.stat(out / "plain").st_mode) == 0o640
    assert {s["path"] for s in r.json["skipped"]} == {"tool", "shared", "tmp"}
    assert "setuid/setgid/sticky bits not restored" in r.err and "--special-bits" in r.err

    out = tmp_path / "asked"
    r = restore(point, out, "--special-bits", "--json")
    assert r.rc == 0, r.err
    assert r.json["skipped"] == []
    assert_same_tree(src, out)
    assert stat.S_IMODE(os.stat(out / "tool").st_mode) == 0o4755


def test_device_nodes_only_when_asked(repo, base_point, restore, tmp_path):
    null = os.makedev(1, 3)
    forge(repo, base_point, lambda by: [by[""], {**by[""], "path": "null", "type": "chardev", "rdev": null,
                                                 "mode": 0o666}])
    out = tmp_path / "default"
    r = restore(base_point, out, "--json")
    assert r.rc == 0, r.err
    assert not os.path.lexists(out / "null")
    assert [s["path"] for s in r.json["skipped"]] == ["null"] and "--devices" in r.err
    if os.geteuid() != 0:
        return
    out = tmp_path / "asked"
    r = restore(base_point, out, "--devices", "--json")
    assert r.rc == 0 and r.json["skipped"] == [], r.err
    st = os.lstat(out / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == null and stat.S_IMODE(st.st_mode) == 0o666


# --- 5: special entries below a planted link: nothing outside is ever deleted -----------------
def test_special_entries_below_a_planted_link(repo, restore, outside, tmp_path):
    src = tmp_path / "src"
    (src / "p").mkdir(parents=True)
    os.mkfifo(src / "p" / "sentinel", 0o640)  # named like outside's files: the old code removed those
    os.symlink("elsewhere", src / "p" / "b")
    point = repo.backup(src)["point_id"]
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "p")
    before = state(outside)

    r = restore(point, target)
    assert state(outside) == before
    assert r.rc == 2 and "not empty" in r.err, r.err

    r = restore(point, target, "--overwrite")
    assert state(outside) == before
    assert r.rc == 0, r.err
    assert not (target / "p").is_symlink()
    assert stat.S_ISFIFO(os.lstat(target / "p" / "sentinel").st_mode)
    assert os.readlink(target / "p" / "b") == "elsewhere"


@pytest.mark.parametrize("kind", ["fifo", "symlink", "file", "dir"])
def test_entry_whose_parent_is_a_planted_link_is_refused(kind, repo, base_point, restore, outside, tmp_path):
    """A (forged) point without the directory ``p``, restored with --overwrite over a target where
    ``p`` is a link to outside: nothing may replace the link (the point holds no ``p``), so the
    entry below it is refused, at run time, by the path resolution."""
    below = {"fifo": {**FORGED_ENTRY["fifo"], "path": "p/sentinel"},
             "symlink": {**FORGED_ENTRY["symlink"], "path": "p/b"},
             "dir": {"type": "dir", "path": "p/b", "mode": 0o777},
             "file": {"type": "file", "path": "p/sentinel"}}[kind]
    forge(repo, base_point, lambda by: [by[""], {**(by["x"] if kind == "file" else by[""]), **below}])
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "p")
    before = state(outside)
    r = restore(base_point, target, "--overwrite")
    assert state(outside) == before
    assert r.rc == 1, (r.rc, r.err)
    assert "refusing to restore" in r.err and "'p' in the target is a symbolic link" in r.err, r.err
    assert "Traceback" not in r.err
    assert os.readlink(target / "p") == str(outside)


# --- the confinement primitives themselves ----------------------------------------------------
@pytest.mark.parametrize("use_openat2", [True, False])
def test_beneath_never_resolves_through_links(use_openat2, outside, tmp_path):
    beneath = pytest.importorskip("lifeline.agent.beneath")
    root_dir = tmp_path / "root"
    (root_dir / "real").mkdir(parents=True)
    os.symlink(outside, root_dir / "link")
    os.symlink("../outside", root_dir / "real" / "up")
    root = os.open(root_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        b = beneath.Beneath(root)
        if use_openat2 and not b.openat2:
            pytest.skip("no usable openat2 on this kernel")
        b = beneath.Beneath(root, use_openat2=use_openat2)
        before = state(outside)
        for rel in ("link/new", "real/up/new", "link/b/new"):
            with pytest.raises(OSError) as exc:
                b.create_file(rel, replace=True)
            assert exc.value.errno in beneath.NOT_BENEATH
            with pytest.raises(OSError) as exc:
                b.mkdir(rel, replace=True)
            assert exc.value.errno in beneath.NOT_BENEATH
            with pytest.raises(OSError) as exc:
                b.open_dir(rel.rpartition("/")[0])
            assert exc.value.errno in beneath.NOT_BENEATH
        with pytest.raises(FileExistsError):  # the final component is never followed either
            b.create_file("link", replace=False)
        fd = b.create_file("link", replace=True)  # ... and with replace it is the link that goes
        os.close(fd)
        assert state(outside) == before
        assert (root_dir / "link").is_file() and not (root_dir / "link").is_symlink()
        assert b.obstacle("real/up/x") == ("real/up", "a symbolic link (to '../outside')")
    finally:
        os.close(root)


def test_summary_lists_what_was_skipped_in_json(repo, base_point, restore, tmp_path):
    forge(repo, base_point, lambda by: [by[""], by["x"], {**by[""], "path": "sock", "type": "socket"}])
    r = restore(base_point, tmp_path / "t", "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["skipped"][0]["path"] == "sock"
    assert (tmp_path / "t" / "x").read_bytes() == b"attacker-chosen bytes\n" * 100
