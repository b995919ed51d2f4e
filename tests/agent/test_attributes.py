"""A file backup keeps every attribute: hard links, extended attributes, POSIX ACLs, owners (by name
and id), nanosecond times, setuid/setgid/sticky bits (when asked), directories' own attributes; and
points of the previous tree format (version 2) still restore.

What the filesystem under the test's tmp directory refuses is skipped, with the reason."""
from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import struct
import warnings
from pathlib import Path

import pytest

from .helpers import Repo

MiB = 1 << 20
ROOT = os.geteuid() == 0
DATA = Path(__file__).parent / "data" / "v2-point"

# --- what the filesystem takes --------------------------------------------------------------------
_UNDEF = 0xFFFFFFFF
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def acl_bytes(*entries: tuple[int, int, int]) -> bytes:
    """A POSIX ACL as the kernel keeps it in ``system.posix_acl_*`` (what setfacl writes): version 2,
    then (tag, perm, id) entries, sorted by tag then id."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in sorted(entries))


ACCESS_ACL = acl_bytes((ACL_USER_OBJ, 6, _UNDEF), (ACL_USER, 4, 1234), (ACL_GROUP_OBJ, 4, _UNDEF),
                       (ACL_GROUP, 6, 4321), (ACL_MASK, 6, _UNDEF), (ACL_OTHER, 0, _UNDEF))
DEFAULT_ACL = acl_bytes((ACL_USER_OBJ, 7, _UNDEF), (ACL_USER, 5, 1234), (ACL_GROUP_OBJ, 5, _UNDEF),
                        (ACL_MASK, 5, _UNDEF), (ACL_OTHER, 0, _UNDEF))


def refused(tmp: Path) -> dict[str, str | None]:
    """feature -> None when the filesystem under ``tmp`` takes it, else the reason it does not."""
    probe = tmp / "probe"
    probe.write_bytes(b"")
    probe_dir = tmp / "probe-dir"
    probe_dir.mkdir()
    out: dict[str, str | None] = {}
    for feature, path, name, value in (("user_xattr", probe, "user.probe", b"1"),
                                       ("acl", probe, "system.posix_acl_access", ACCESS_ACL),
                                       ("default_acl", probe_dir, "system.posix_acl_default", DEFAULT_ACL),
                                       ("trusted_xattr", probe, "trusted.probe", b"1")):
        if feature == "trusted_xattr" and not ROOT:
            out[feature] = "trusted.* extended attributes need root"
            continue
        try:
            os.setxattr(path, name, value)
            out[feature] = None
        except OSError as exc:
            out[feature] = f"the filesystem under {tmp} refuses {name}: {exc.strerror}"
    out["chown"] = None if ROOT else "giving files to other owners needs root"
    probe.unlink()
    probe_dir.rmdir()
    return out


@pytest.fixture
def fs(tmp_path) -> dict[str, str | None]:
    return refused(tmp_path)


# --- a tree with every attribute, and what it holds ---------------------------------------------
T0 = 1_600_000_000_123_456_789
NOBODY = pwd.getpwnam("nobody") if "nobody" in {p.pw_name for p in pwd.getpwall()} else None
NOGROUP = next((g for g in grp.getgrall() if g.gr_name in ("nogroup", "nobody")), None)


def build(root: Path, fs: dict) -> None:
    """Hard links (three names, two directories), user xattrs (an empty value too), an access and a
    default ACL, a trusted xattr on a symlink (as root), setuid/setgid/sticky, other owners (by id
    only and by name), a sparse file, a fifo; every entry with its own atime and mtime in ns; a
    directory with its own mode and times holding files."""
    root.mkdir()
    data = root / "data"
    data.mkdir()
    (data / "big").write_bytes(os.urandom(MiB + 3))
    os.link(data / "big", data / "big-link")
    other = root / "other"
    other.mkdir()
    os.link(data / "big", other / "big-again")
    (data / "notes.txt").write_text("notes\n" * 100)
    (other / "before").write_text("made before the directory's default ACL\n")
    if fs["user_xattr"] is None:
        os.setxattr(data / "notes.txt", "user.comment", "ünïcode value ✓".encode())
        os.setxattr(data / "notes.txt", "user.empty", b"")
        os.setxattr(data / "big", "user.binary", bytes(range(256)))  # on the inode: every name has it
        os.setxattr(other, "user.dir", b"a directory's own")
    (data / "acl.txt").write_text("with an access ACL\n")
    os.chmod(data / "acl.txt", 0o640)
    if fs["acl"] is None:
        os.setxattr(data / "acl.txt", "system.posix_acl_access", ACCESS_ACL)
    if fs["default_acl"] is None:
        os.setxattr(other, "system.posix_acl_default", DEFAULT_ACL)
    (other / "after").write_text("inherits the default ACL\n")  # (so has an access ACL of its own)
    tool = root / "tool"
    tool.write_text("#!/bin/sh\necho privileged\n")
    shared = root / "shared"
    shared.mkdir()
    (shared / "inside").write_text("in a setgid directory\n")
    tmp = root / "tmp"
    tmp.mkdir()
    (tmp / "scratch").write_text("in a sticky directory\n")
    with open(root / "sparse", "wb") as f:
        f.truncate(8 * MiB)
        f.seek(5 * MiB)
        f.write(b"data in the middle")
    os.symlink("data/notes.txt", root / "link")
    if fs["trusted_xattr"] is None:
        os.setxattr(root / "link", "trusted.on-a-link", b"a symlink's own", follow_symlinks=False)
    os.mkfifo(root / "fifo", 0o620)
    (root / "owned").write_text("by ids that have no name here, maybe\n")
    (root / "nobody-file").write_text("by name\n")
    if fs["chown"] is None:
        os.chown(root / "owned", 1234, 4321)
        os.chown(tool, 1234, 4321)
        if NOBODY is not None and NOGROUP is not None:
            os.chown(root / "nobody-file", NOBODY.pw_uid, NOGROUP.gr_gid)
        os.lchown(root / "link", 1234, 4321)
        os.chown(shared, 1234, 4321)
    os.chmod(tool, 0o4755)  # after chown, which clears it
    os.chmod(shared, 0o2770)
    os.chmod(tmp, 0o1777)
    os.chmod(data, 0o750)
    set_times(root)


def set_times(root: Path) -> None:
    """Every entry its own atime and mtime, to the nanosecond, deepest first (a directory's after its
    contents'). Again after looking at the tree: listing a directory or reading a link sets its atime."""
    for i, p in enumerate(sorted(root.rglob("*"), key=lambda p: (-len(p.parts), str(p)))):
        os.utime(p, ns=(T0 - 86_400_000_000_123 * (i + 1), T0 + 1_000_000_007 * i), follow_symlinks=False)
    os.utime(root, ns=(T0 - 1, T0 + 1))


def xattrs(path: str) -> dict[str, bytes]:
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}


def attributes(root: Path) -> tuple[dict, list]:
    """(path -> attributes, the hard link groups). Every entry is stat-ed before its directory is
    listed and before any file is read, so that neither changes the atimes compared."""
    out: dict[str, dict] = {}
    inodes: dict[tuple[int, int], list[str]] = {}

    def visit(full: str, rel: str) -> None:
        st = os.lstat(full)
        out[rel] = {"type": stat.S_IFMT(st.st_mode), "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                    "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns, "atime_ns": st.st_atime_ns,
                    "size": st.st_size if stat.S_ISREG(st.st_mode) else None, "xattrs": xattrs(full)}
        if stat.S_ISREG(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif stat.S_ISLNK(st.st_mode):
            out[rel]["target"] = os.readlink(full)
        elif stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(full)):
                visit(os.path.join(full, name), f"{rel}/{name}" if rel else name)

    visit(str(root), "")
    return out, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def assert_same(before: dict, after: dict, *, ignore=()) -> None:
    assert sorted(before) == sorted(after), (sorted(set(before) ^ set(after)))
    diffs = {p: {k: (before[p][k], after[p].get(k)) for k in before[p] if k not in ignore
                 and before[p][k] != after[p].get(k)} for p in before}
    diffs = {p: d for p, d in diffs.items() if d}
    assert not diffs, f"{len(diffs)} entries differ: {diffs}"


def restore(repo: Repo, point: str, out: Path, *flags) -> dict:
    r = repo.ok("restore", point, "--to", out, "--json", *flags)
    return r.json


def report_refused(fs: dict) -> None:
    """Say which parts were left out (the filesystem refused them), in the warnings summary."""
    for feature, why in fs.items():
        if why is not None:
            warnings.warn(f"not tested here: {feature}: {why}", pytest.PytestWarning, stacklevel=2)


# --- the tests ------------------------------------------------------------------------------------
def test_attributes_round_trip(repo: Repo, tmp_path, fs, small_file_writers):
    """Back up, restore with --keep-special-bits: every attribute of every entry comes back."""
    report_refused(fs)
    src = tmp_path / "src"
    build(src, fs)
    before, groups = attributes(src)
    set_times(src)
    assert groups == [["data/big", "data/big-link", "other/big-again"]]
    s = repo.backup(src)
    # the hard-linked file is read (and counted) once, its three names are three files
    assert s["size_bytes"] == sum(a["size"] for p, a in before.items()
                                  if a["size"] is not None and p not in groups[0][1:])
    assert s["files"] == sum(1 for a in before.values() if a["type"] == stat.S_IFREG)
    assert s["stored_bytes"] < 2 * MiB
    listed = [json.loads(line) for line in repo.ok("ls", s["point_id"], "--json").text.splitlines()]
    assert sorted(e["path"] for e in listed if e["type"] == "hardlink") == ["data/big-link", "other/big-again"]

    out = tmp_path / "out"
    r = restore(repo, s["point_id"], out, "--keep-special-bits")
    assert r["skipped"] == [] and r["damaged"] == []
    assert r["small_file_writers"] == (2 if small_file_writers == "writer-processes" else 0)
    assert r["files"] == s["files"] and r["bytes"] == s["size_bytes"]
    after, groups_after = attributes(out)
    assert_same(before, after)
    assert groups_after == groups  # one inode, three names
    assert contents(out) == contents(src)
    assert os.stat(out / "sparse").st_blocks * 512 < 1 * MiB  # holes stay holes
    if fs["acl"] is None:
        assert after["data/acl.txt"]["xattrs"]["system.posix_acl_access"] == ACCESS_ACL
    if fs["default_acl"] is None:
        assert after["other"]["xattrs"]["system.posix_acl_default"] == DEFAULT_ACL
        # set after the directory's contents: "before" did not inherit it on the way back
        assert "system.posix_acl_access" not in after["other/before"]["xattrs"]
        assert "system.posix_acl_access" in after["other/after"]["xattrs"]


def test_special_bits_only_when_asked(repo: Repo, tmp_path, fs):
    src = tmp_path / "src"
    build(src, fs)
    before, _ = attributes(src)
    set_times(src)
    point = repo.backup(src)["point_id"]
    out = tmp_path / "default"
    r = restore(repo, point, out)
    after, _ = attributes(out)
    assert_same(before, after, ignore=("mode",))
    for p in before:
        want = int(before[p]["mode"], 8)
        assert int(after[p]["mode"], 8) == want & 0o777, p
    assert {s["path"] for s in r["skipped"]} == {"tool", "shared", "tmp"}
    assert all("--special-bits" in s["what"] for s in r["skipped"])


@pytest.mark.skipif(not ROOT, reason="giving files to other owners needs root")
@pytest.mark.skipif(NOBODY is None, reason="no user 'nobody' on this system")
def test_owner_by_name_else_id_or_numeric(repo: Repo, tmp_path, fs):
    """The recorded name wins when it exists here; else the id; --numeric-owner: the id always."""
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    src = tmp_path / "src"
    src.mkdir()
    for name in ("by-name", "no-name"):
        (src / name).write_text(name)
    os.chown(src / "by-name", NOBODY.pw_uid, NOBODY.pw_gid)
    os.chown(src / "no-name", 1234, 4321)
    point = repo.backup(src)["point_id"]
    # the point as another system made it: there "nobody" had uid 4242; 1234 has no name
    r = Repository.open(open_backend(repo.url))
    header, entries, keys = r.load_point(point, provider_from_ref(repo.key))
    by = {e["path"]: e for e in entries}
    assert by["by-name"]["user"] == "nobody" and by["by-name"]["uid"] == NOBODY.pw_uid
    by["by-name"]["uid"] = 4242
    if "user" in by["no-name"]:  # a system that has a name for 1234: not the case the test needs
        del by["no-name"]["user"]
    r.write_point(keys, header, entries)

    out = tmp_path / "by-name"
    restore(repo, point, out)
    assert os.stat(out / "by-name").st_uid == NOBODY.pw_uid
    assert (os.stat(out / "no-name").st_uid, os.stat(out / "no-name").st_gid) == (1234, 4321)
    out = tmp_path / "numeric"
    restore(repo, point, out, "--numeric-owner")
    assert os.stat(out / "by-name").st_uid == 4242
    assert os.stat(out / "no-name").st_uid == 1234


def test_hard_links_incremental_and_partial(repo: Repo, tmp_path, small_file_writers):
    """An incremental backup reads none of a hard-linked file's names again; a restore of one name
    alone makes it the file; restored to stdout by any name."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    (src / "a" / "first").write_bytes(os.urandom(300_000))
    os.link(src / "a" / "first", src / "b" / "second")
    os.link(src / "a" / "first", src / "b" / "third")
    s1 = repo.backup(src)
    assert s1["files"] == 3 and s1["size_bytes"] == 300_000
    s2 = repo.backup(src)
    assert s2["parent_id"] == s1["point_id"] and s2["files_unchanged"] == 3 and s2["chunks_new"] == 0
    os.unlink(src / "a" / "first")  # the data now lives under b/ only: still not read again
    s3 = repo.backup(src)
    assert s3["chunks_new"] == 0 and s3["size_bytes"] == 300_000 and s3["files"] == 2

    out = tmp_path / "out"
    restore(repo, s2["point_id"], out)
    assert len({os.stat(out / p).st_ino for p in ("a/first", "b/second", "b/third")}) == 1
    assert os.stat(out / "b" / "third").st_nlink == 3
    part = tmp_path / "part"
    r = restore(repo, s2["point_id"], part, "--path", "b")
    assert not (part / "a" / "first").exists() and r["files"] == 2
    assert (part / "b" / "second").read_bytes() == (src / "b" / "second").read_bytes()
    assert os.stat(part / "b" / "second").st_ino == os.stat(part / "b" / "third").st_ino
    r = repo.ok("restore", s2["point_id"], "--to", "-", "--path", "b/third")
    assert r.out == (src / "b" / "second").read_bytes()


def _in_process_restore(repo: Repo, point: str, out: Path, **kw) -> dict:
    from lifeline.agent.restore import Restorer
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    r = Repository.open(open_backend(repo.url))
    return Restorer(r, provider_from_ref(repo.key), point).to_directory(str(out), **kw)


def test_refusals_are_reported_not_fatal(repo: Repo, tmp_path, fs, monkeypatch):
    """A target filesystem without ACLs or extended attributes, or without hard links: the restore
    goes on, lists what it could not set, and a refused hard link becomes a copy."""
    if fs["user_xattr"] is not None:
        pytest.skip(fs["user_xattr"])
    src = tmp_path / "src"
    build(src, fs)
    before, _ = attributes(src)
    set_times(src)
    point = repo.backup(src)["point_id"]
    real_setxattr, real_link = os.setxattr, os.link

    def no_acls(path, name, value, *a, **kw):
        if name.startswith(("system.posix_acl_", "user.")):
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_setxattr(path, name, value, *a, **kw)

    def no_links(*a, **kw):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "setxattr", no_acls)
    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "out"
    r = _in_process_restore(repo, point, out, special_bits=True)
    monkeypatch.setattr(os, "setxattr", real_setxattr)
    monkeypatch.setattr(os, "link", real_link)
    assert r["damaged"] == []
    whats = {(s["path"], s["what"]) for s in r["skipped"]}
    assert ("data/big-link", "restored as a copy, not a hard link: the target refuses hard links "
            f"({os.strerror(errno.EPERM)})") in whats
    assert ("data/notes.txt", f"extended attribute not restored: the target refuses it "
            f"({os.strerror(errno.EOPNOTSUPP)})") in whats
    if fs["acl"] is None:
        assert ("data/acl.txt", f"ACL not restored: the target refuses it ({os.strerror(errno.EOPNOTSUPP)})") in whats
    after, groups = attributes(out)
    assert groups == []  # three copies
    assert_same(before, after, ignore=("xattrs",))  # every other attribute, the copies' too
    assert contents(out) == contents(src)


@pytest.mark.skipif(not ROOT, reason="setting trusted.* extended attributes needs root")
def test_root_only_attributes_as_another_user(repo: Repo, tmp_path, fs, small_file_writers):
    """Restored by a user that is not root, trusted.*/security.* attributes are left out: one note
    for the whole restore, naming them; user.* ones and the rest come back."""
    if fs["trusted_xattr"] is not None or fs["user_xattr"] is not None:
        pytest.skip(fs["trusted_xattr"] or fs["user_xattr"])
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        (src / name).write_text(name)
        os.setxattr(src / name, "trusted.label", name.encode())
        os.setxattr(src / name, "user.kept", b"yes")
    point = repo.backup(src)["point_id"]

    from lifeline.agent.restore import Restorer
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    restorer = Restorer(Repository.open(open_backend(repo.url)), provider_from_ref(repo.key), point)
    restorer.is_root = False  # as the restore Jobs run
    r = restorer.to_directory(str(tmp_path / "out"))
    assert r["skipped"] == [{"path": "", "what": "2 trusted.*/security.* extended attribute(s) not restored: "
                                                 "only root restores them", "names": ["trusted.label"]}]
    for name in ("a", "b"):
        assert xattrs(str(tmp_path / "out" / name)) == {"user.kept": b"yes"}


# --- the previous tree format ----------------------------------------------------------------------
def v2_repo(tmp_path) -> tuple[Repo, dict]:
    """The version 2 fixture (made by the lifeline of that format), copied: a restore takes a lock."""
    shutil.copytree(DATA, tmp_path / "v2")
    os.chmod(tmp_path / "v2" / "key", 0o600)  # (a checkout does not keep the mode)
    expected = json.loads((DATA / "expected.json").read_text())
    return Repo("file://" + str(tmp_path / "v2" / "repo"), "file://" + str(tmp_path / "v2" / "key")), expected


def test_version_2_point_still_restores(tmp_path):
    repo, expected = v2_repo(tmp_path)
    points = repo.ok("points", "--json").json["points"]
    assert [p["point_id"] for p in points] == [expected["point_id"]]
    raw = (tmp_path / "v2" / "repo" / "points" / expected["point_id"]).read_bytes()
    assert b'"version":2' in raw[:2000]

    out = tmp_path / "out"
    r = restore(repo, expected["point_id"], out, "--keep-special-bits")
    assert r["damaged"] == [] and r["skipped"] == []
    got = {}
    for p in sorted(out.rglob("*")):
        st = os.lstat(p)
        e = {"mode": stat.S_IMODE(st.st_mode), "mtime_ns": st.st_mtime_ns}
        if stat.S_ISLNK(st.st_mode):
            e.update(type="symlink", target=os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            e["type"] = "dir"
        elif stat.S_ISFIFO(st.st_mode):
            e["type"] = "fifo"
        else:
            e.update(type="file", size=st.st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
            # version 2 recorded every name of a hard-linked file as a file: atime = mtime, own inode
            assert st.st_atime_ns == st.st_mtime_ns and st.st_nlink == 1
        got[str(p.relative_to(out))] = e
    assert got == expected["tree"]
    assert os.stat(out / "sparse").st_blocks * 512 < 512 * 1024

    # a new backup into that repository writes the new version, which restores alongside
    s = repo.backup(out)
    raw = (tmp_path / "v2" / "repo" / "points" / s["point_id"]).read_bytes()
    assert b'"version":4' in raw[:2000]
    restore(repo, s["point_id"], tmp_path / "again")
    assert contents(tmp_path / "again") == contents(out)


def test_version_2_point_with_version_4_entries_is_refused(tmp_path):
    """A tree that says version 2 holds what only version 4 writes: forged or damaged, exit 3."""
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    repo, expected = v2_repo(tmp_path)
    r = Repository.open(open_backend(repo.url))
    header, entries, keys = r.load_point(expected["point_id"], provider_from_ref(repo.key))
    assert header["version"] == 2
    entries = [e for e in entries if e["path"] != "dir/hard-b"] + [
        {"path": "dir/hard-b", "type": "hardlink", "target": "hard-a"}]
    r.write_point(keys, header, entries)
    res = repo.run("restore", expected["point_id"], "--to", tmp_path / "out")
    assert res.rc == 3 and "only version 4 writes" in res.err, res.err


def test_point_of_a_newer_version_is_refused(repo: Repo, tmp_path):
    """What a version 2 reader does with a version 4 point, one version on."""
    from lifeline.keys import provider_from_ref
    from lifeline.repository.backend import open_backend
    from lifeline.repository.repo import Repository

    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    point = repo.backup(src)["point_id"]
    r = Repository.open(open_backend(repo.url))
    header, entries, keys = r.load_point(point, provider_from_ref(repo.key))
    assert header["version"] == 4
    r.write_point(keys, {**header, "version": 5}, entries)
    res = repo.run("points", "--json")  # listed as unreadable, with the reason; prune then stops
    assert res.rc == 3, res.err
    (why,) = res.json["unreadable"].values()
    assert "uses format version 5" in why and "upgrade lifeline" in why
