"""Bad arguments and bad inputs: a clear message, a documented exit code, no traceback, nothing lost."""
from __future__ import annotations

import os

from .helpers import Repo, make_key, run_agent


def _clean(r):
    assert "Traceback" not in r.err, r.err
    return r


def test_missing_repo(tmp_path):
    r = _clean(run_agent("backup", "--stdin", "--key", "file:///nope", input=b"x"))
    assert r.rc == 2 and "--repo" in r.err and "LIFELINE_REPOSITORY" in r.err
    key = make_key(tmp_path / "key")
    r = _clean(run_agent("points", "--repo", f"file://{tmp_path}/nothing-here", "--key", key))
    assert r.rc == 1 and "no lifeline repository" in r.err and "agent init" in r.err
    r = _clean(run_agent("points", "--repo", "ftp://host/x"))
    assert r.rc == 2 and "unsupported scheme" in r.err


def test_init_twice_and_without_key(tmp_path):
    key = make_key(tmp_path / "key")
    url = f"file://{tmp_path}/repo"
    assert run_agent("init", "--repo", url, "--key", key).rc == 0
    r = _clean(run_agent("init", "--repo", url, "--key", key))
    assert r.rc == 1 and "already exists" in r.err
    r = _clean(run_agent("init", "--repo", f"file://{tmp_path}/repo2"))
    assert r.rc == 2 and "--key" in r.err


def test_wrong_key(repo: Repo, tmp_path):
    s = repo.backup("--stdin", input=b"secret rows")
    other = make_key(tmp_path / "other-key")
    for cmd in (["restore", s["point_id"], "--to", "-"], ["verify"], ["backup", "--stdin"],
                ["backup", "--stdin", "--type", "full"], ["prune"]):
        r = _clean(run_agent(*cmd, "--repo", repo.url, "--key", other, input=b"more"))
        assert r.rc == 4, (cmd, r.err)
        assert "wrong key" in r.err and str(tmp_path / "other-key") in r.err
    # nothing was lost or added
    assert len(repo.ok("points", "--json").json["points"]) == 1
    assert repo.ok("restore", s["point_id"], "--to", "-").out == b"secret rows"


def test_key_file_permissions(repo: Repo, tmp_path):
    path = repo.key[len("file://"):]
    os.chmod(path, 0o644)
    r = _clean(repo.run("backup", "--stdin", input=b"x"))
    assert r.rc == 4 and "0644" in r.err and f"chmod 600 {path}" in r.err
    os.chmod(path, 0o400)
    repo.ok("backup", "--stdin", input=b"x")
    r = _clean(run_agent("points", "--repo", repo.url, "--key", "file:///no/such/key"))
    assert r.rc == 0  # listing needs no key
    r = _clean(run_agent("verify", "--repo", repo.url, "--key", "file:///no/such/key"))
    assert r.rc == 4 and "does not exist" in r.err


def test_unknown_point(repo: Repo):
    repo.backup("--stdin", input=b"x")
    r = _clean(repo.run("restore", "deadbeef", "--to", "-"))
    assert r.rc == 5 and "no recovery point 'deadbeef'" in r.err and "agent points" in r.err
    r = _clean(repo.run("verify", "deadbeef"))
    assert r.rc == 5


def test_unreadable_source(repo: Repo, tmp_path):
    r = _clean(repo.run("backup", tmp_path / "missing"))
    assert r.rc == 2 and "does not exist" in r.err
    f = tmp_path / "afile"
    f.write_text("x")
    r = _clean(repo.run("backup", f))
    assert r.rc == 2 and "not a directory" in r.err
    r = _clean(repo.run("backup", "--command", "definitely-not-a-program-xyz"))
    assert r.rc == 2 and "not found" in r.err
    r = _clean(repo.run("backup", "--command", "sh -c 'echo partial; exit 3'"))
    assert r.rc == 2 and "exited with status 3" in r.err and "nothing was published" in r.err
    assert repo.ok("points", "--json").json["points"] == []


def test_unreadable_file_inside_tree(repo: Repo, tmp_path, monkeypatch, capsys):
    """Files that cannot be read: the point is published without them, exit 7, each named; the files
    around them (small ones read in the same batch, a large one chunked after) are all there.

    Runs in-process with the opening of those files failing (root reads every file, so a
    chmod 000 would not do here)."""
    import json

    from lifeline.agent import backup as backup_mod
    from lifeline.agent.__main__ import main

    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        (src / f"ok{i}").write_text(f"ok {i}")
    (src / "locked").write_text("no")
    (src / "locked-big").write_bytes(os.urandom(600 * 1024))  # (above the minimum chunk: chunked, not batched)
    (src / "zz-big").write_bytes(os.urandom(700 * 1024))
    real_open = backup_mod._open_source

    def refusing_open(files, rel):
        if rel.startswith("locked"):
            raise PermissionError(13, "Permission denied", rel)
        return real_open(files, rel)

    monkeypatch.setattr(backup_mod, "_open_source", refusing_open)
    rc = main(["backup", str(src), "--json", "--repo", repo.url, "--key", repo.key])
    cap = capsys.readouterr()
    assert rc == 7, cap.err
    assert "skipped 'locked'" in cap.err and "skipped 'locked-big'" in cap.err and "Permission denied" in cap.err
    summary = json.loads(cap.out)
    assert sorted(summary["skipped"], key=lambda s: s["path"]) == [
        {"path": "locked", "error": "cannot read: Permission denied"},
        {"path": "locked-big", "error": "cannot read: Permission denied"}]
    assert summary["files"] == 11
    monkeypatch.undo()
    out = tmp_path / "out"
    repo.ok("restore", summary["point_id"], "--to", out)
    assert sorted(p.name for p in out.iterdir()) == [f"ok{i}" for i in range(10)] + ["zz-big"]
    assert all((out / f"ok{i}").read_text() == f"ok {i}" for i in range(10))
    assert (out / "zz-big").read_bytes() == (src / "zz-big").read_bytes()


def test_usage_errors(repo: Repo):
    r = _clean(repo.run("backup"))
    assert r.rc == 2
    r = _clean(repo.run("prune", "--keep-last", "-1"))
    assert r.rc == 2
    r = _clean(repo.run("backup", "--stdin", "--time", "yesterday", input=b"x"))
    assert r.rc == 2 and "RFC 3339" in r.err
    r = _clean(repo.run("restore", "latest", "--to", "-"))
    assert r.rc == 5 and "no recovery points" in r.err


def test_s3_errors(s3_server, tmp_path):
    key = make_key(tmp_path / "key")
    r = _clean(run_agent("init", "--repo", "s3://no-such-bucket-here/p", "--key", key, env=s3_server.env()))
    assert r.rc == 1 and "does not exist" in r.err and "create it first" in r.err
    env = {**s3_server.env(), "AWS_ENDPOINT_URL": "http://10.1.2.3:9000"}
    r = _clean(run_agent("points", "--repo", "s3://bucket/p", env=env))
    assert r.rc == 2 and "--s3-allow-http" in r.err
    r = _clean(run_agent("points", "--repo", "s3://user:pw@bucket/p", env=s3_server.env()))
    assert r.rc == 2 and "credentials" in r.err
