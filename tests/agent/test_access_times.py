"""A backup reads files and lists directories without moving their access times (``O_NOATIME``;
a symbolic link's own moves when it is read, whatever the flags, and none is in these trees):
an access time is an attribute the next backup records, and one its reads had moved would make that
backup take every file read for a changed one; it may also be what the owner's own tools go by."""
from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import repo  # noqa: F401

DAY = 86_400 * 10**9
OLD_MTIME = time.time_ns() - 3 * DAY
OLD_ATIME = OLD_MTIME + DAY  # after the mtime and over a day old: a read moves it under relatime


def age(path: Path) -> None:
    os.utime(path, ns=(OLD_ATIME, OLD_MTIME), follow_symlinks=False)


def atimes(paths: list[Path]) -> dict[Path, int]:
    """By lstat alone: listing a directory to find them would move its access time itself."""
    return {p: p.lstat().st_atime_ns for p in paths}


@pytest.fixture
def reads_move_atimes(tmp_path) -> None:
    """This filesystem moves an access time on a read (it is not mounted ``noatime``): else a test of
    leaving them alone would pass whatever the agent did."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    age(probe)
    probe.read_bytes()
    if probe.stat().st_atime_ns == OLD_ATIME:
        pytest.skip(f"{tmp_path} is mounted so that a read does not move an access time")


def test_a_backup_and_an_incremental_leave_every_access_time_as_it_was(repo, tmp_path, reads_move_atimes):
    src = tmp_path / "src"
    for d in range(3):  # 360 small files (past the count that starts the read-ahead helper) and a big one
        (src / f"study-{d}").mkdir(parents=True)
        for i in range(120):
            (src / f"study-{d}" / f"{i:04}.dcm").write_bytes(os.urandom(700 + i))
    (src / "big.raw").write_bytes(os.urandom(3 << 20))
    paths = [src, *src.rglob("*")]
    for path in paths:
        age(path)
    before = atimes(paths)
    assert set(before.values()) == {OLD_ATIME}

    first = repo.backup(str(src))
    assert atimes(paths) == before, "the first backup moved access times"
    changed = src / "study-1" / "0007.dcm"
    changed.write_bytes(b"changed")  # (a write moves the mtime, and the parent's, not an access time)
    second = repo.backup(str(src))
    assert atimes(paths) == before, "the incremental moved access times"
    assert second["files_unchanged"] == first["files"] - 1  # (only the written file was read again)


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another user takes root")
def test_a_file_of_another_owner_is_read_where_the_kernel_refuses_noatime(tmp_path):
    """Only a file's owner (or CAP_FOWNER) may open it ``O_NOATIME``: the agent running as another
    user reads it all the same, as an open without the flag."""
    nobody = pwd.getpwnam("nobody")
    tmp_path.chmod(0o755)
    (tmp_path / "scan.dcm").write_bytes(b"pixels")  # root's, readable by all
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    code = """if True:
        import errno, os, sys
        from lifeline.agent.beneath import Beneath, O_NOATIME
        root = int(sys.argv[1])
        os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[2]))
        try:
            os.close(os.open("scan.dcm", os.O_RDONLY | O_NOATIME, dir_fd=root))
            print("allowed")
        except PermissionError as exc:
            print(errno.errorcode[exc.errno])
        fd = Beneath(root).open_file("scan.dcm")
        print(os.read(fd, 100).decode())
    """
    try:
        done = subprocess.run([sys.executable, "-c", code, str(root), str(nobody.pw_uid), str(nobody.pw_gid)],
                              pass_fds=(root,), capture_output=True, text=True, timeout=60)
    finally:
        os.close(root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["EPERM", "pixels"]  # (refused with the flag; read without it)
