"""Make ``v2-point/``: a small repository holding one point in tree format version 2.

The fixture was generated once, by the lifeline that wrote version 2 points (commit 26d4958, before
points recorded hard links, extended attributes, owner names and access times), with::

    .venv/bin/python tests/agent/data/make_v2_point.py tests/agent/data/v2-point

It is kept so that ``tests/agent/test_attributes.py`` proves today's reader still restores what that
format wrote. Run with a newer lifeline it would make a point of the newer format: do not regenerate
it, the point of the fixture is the old writer.

``expected.json`` is what the source tree held (path -> type, mode, mtime_ns, size, sha256 or
target, inode group), taken right after the backup.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path


def build(src: Path) -> None:
    src.mkdir()
    d = src / "dir"
    d.mkdir()
    (d / "notes.txt").write_text("".join(f"line {i}: version 2 point\n" for i in range(200)))
    os.chmod(d / "notes.txt", 0o640)
    (src / "empty").write_bytes(b"")
    (src / "hard-a").write_text("one inode, two names\n")
    os.link(src / "hard-a", d / "hard-b")  # version 2 recorded both names as files
    with open(src / "sparse", "wb") as f:  # a hole, then a few bytes
        f.truncate(1 << 20)
        f.seek((1 << 20) - 4)
        f.write(b"end\n")
    os.symlink("dir/notes.txt", src / "link")
    os.mkfifo(src / "fifo", 0o600)
    (src / "run.sh").write_text("#!/bin/sh\necho v2\n")
    os.chmod(src / "run.sh", 0o755)
    os.chmod(d, 0o750)
    t = 1_500_000_000_987_654_321
    for i, p in enumerate(sorted(src.rglob("*"), key=lambda p: -len(p.parts))):
        os.utime(p, ns=(t + i * 1_000_000_001, t + i * 1_000_000_001), follow_symlinks=False)
    os.utime(src, ns=(t, t))


def describe(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
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
        out[rel] = e
    return out


def main(dest: str) -> None:
    from lifeline.keys import create_key_file

    out = Path(dest).absolute()
    out.mkdir(parents=True)
    create_key_file(out / "key")
    key = "file://" + str(out / "key")
    repo = "file://" + str(out / "repo")
    agent = [sys.executable, "-m", "lifeline.agent"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        build(src)
        subprocess.run([*agent, "init", "--repo", repo, "--key", key], check=True)
        r = subprocess.run([*agent, "backup", str(src), "--repo", repo, "--key", key, "--json",
                            "--source-name", "v2-fixture", "--time", "2024-01-02T03:04:05Z"],
                           check=True, capture_output=True)
        summary = json.loads(r.stdout)
        expected = {"point_id": summary["point_id"], "tree": describe(src)}
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
