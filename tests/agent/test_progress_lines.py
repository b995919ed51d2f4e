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


def test_an_incremental_shows_its_parents_totals_and_counts_unchanged_files_as_done(repo, tmp_path, monkeypatch):
    """An incremental does not walk the tree once more to count it (a third of its time, cold): its
    bar's totals are the parent point's, and an unchanged file is done when it is passed, bytes too."""
    import io

    from lifeline.agent import backup
    from lifeline.agent.backup import dir_source, run_backup
    from lifeline.agent.progress import Progress

    from .maintenance_helpers import open_repo

    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(b"z" * (1000 + i))
    r, provider = open_repo(repo)
    counted = []
    count_tree = backup.count_tree
    monkeypatch.setattr(backup, "count_tree", lambda root: counted.append(root) or count_tree(root))
    first = Progress("backup", enabled=False, lines=io.StringIO())
    with first:
        run_backup(r, provider, dir_source(str(src)), progress=first)
    assert counted == [str(src)] and (first.files_total, first.bytes_total) == (5, 5010)

    (src / "new").write_bytes(b"n" * 77)
    lines = io.StringIO()
    second = Progress("backup", enabled=False, lines=lines)
    with second:
        run_backup(r, provider, dir_source(str(src)), progress=second)
    assert counted == [str(src)]  # (not counted again)
    assert (second.files_total, second.bytes_total, second.estimated) == (5, 5010, True)  # the parent's
    *_, last = [x for x in map(parse_line, lines.getvalue().splitlines()) if x]
    assert last["done"] and (last["files"], last["files_total"], last["bytes"], last["total"]) == (6, 6, 5087, 5087)


def test_estimated_totals_are_never_less_than_what_is_done():
    from lifeline.agent.progress import Progress

    p = Progress("backup", enabled=False)
    p.files_total, p.bytes_total, p.estimated = 100, 1000, True
    p.files_done, p.bytes_done = 50, 500
    assert (p.record()["files_total"], p.record()["total"]) == (100, 1000) and "/ 1000 B" in p.line()
    p.files_done, p.bytes_done = 150, 1500
    assert (p.record()["files_total"], p.record()["total"], p.record()["eta"]) == (150, 1500, 0)
    p.files_done, p.bytes_done = 90, 900
    assert (p.record(done=True)["files_total"], p.record(done=True)["total"]) == (90, 900)
    p.estimated = False  # (counted totals are shown as they are)
    assert (p.record(done=True)["files_total"], p.record(done=True)["total"]) == (100, 1000)
