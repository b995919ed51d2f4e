"""`lifeline agent backup|restore --progress-lines`, as the Jobs run the agent: one structured line on
stderr every 2 s and at the end, with the total from the scan of the tree (or the point's manifest);
the JSON summary on stdout stays as it was."""
from __future__ import annotations

from lifeline.agent.progress import parse_line


def test_backup_and_restore_write_their_lines_with_the_total(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"x" * 5000)
    (src / "b").write_bytes(b"y" * 3000)
    done = repo.ok("backup", str(src), "--json", "--no-progress", "--progress-lines")
    assert done.json["size_bytes"] == 8000
    *_, last = [r for r in map(parse_line, done.err.splitlines()) if r]
    assert last["done"] and last["phase"] == "backup"
    assert (last["bytes"], last["total"], last["files"], last["files_total"], last["eta"]) == (8000, 8000, 2, 2, 0)

    back = repo.ok("restore", "latest", "--to", str(tmp_path / "back"), "--no-progress", "--progress-lines")
    *_, last = [r for r in map(parse_line, back.err.splitlines()) if r]
    assert last["done"] and last["phase"] == "restore" and (last["bytes"], last["total"]) == (8000, 8000)

    quiet = repo.ok("backup", str(src), "--json", "--no-progress")
    assert not [r for r in map(parse_line, quiet.err.splitlines()) if r]
