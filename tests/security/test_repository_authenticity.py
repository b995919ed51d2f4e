"""Finding 3 of the security review, as the attacks: storage (a bucket, an NFS directory) may read, change,
roll back or delete any object, and must not change the repository's own description unnoticed.

The attacks: the config's key reference rewritten (to send the agent, and its Vault token, elsewhere);
the config's chunker, pack or compression settings rewritten; the newest recovery points deleted (so
`restore latest` would quietly take an older one), an older catalogue head put back, or the head
deleted; an index segment rewritten with its checksum recomputed (so prune would delete live data).
And the legitimate ways points go (prune, crypto-shredding) and keys change (rotation, retired key
versions) are not taken for an attack. Every test drives the real agent on a file:// repository
and changes its files as storage can.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import blake3
import pytest
import zstandard

from tests.agent.helpers import AGENT, Repo, clean, edit_json, make_key, repo, repo_root as root, run_agent  # noqa: F401 (repo: fixture)
from tests.keys.conftest import run_lifeline, transit, vault_repo  # noqa: F401 (fixtures)


# --- helpers ---------------------------------------------------------------------------------
def point_ids(r: Repo) -> list[str]:
    return [p["point_id"] for p in r.ok("points", "--json").json["points"]]


def backup(r: Repo, data: bytes, *args) -> str:
    return r.backup("--stdin", *args, input=data)["point_id"]


@pytest.fixture
def listener():
    """A TCP port standing for the attacker's Vault; :func:`connections` says whether anything came."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


def connections(sock: socket.socket) -> int:
    """Connections made to ``sock`` so far (they wait in its backlog: no need to have accepted them)."""
    sock.setblocking(False)
    n = 0
    while True:
        try:
            conn, _addr = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


# --- (a) the key reference in the config -------------------------------------------------------
def _evil_addr(listener) -> str:
    return f"addr=http://127.0.0.1:{listener.getsockname()[1]}&timeout=2"


def test_a_a_vault_address_written_into_the_config_never_gets_the_token(vault_repo: Repo, transit, listener):
    """The repository's key is in Vault; storage adds ``addr=`` (its own server) to the recorded reference."""
    point = vault_repo.backup("--stdin", "--type", "full", input=b"ward 7 rota")["point_id"]
    edit_json(root(vault_repo) / "config", lambda c: c.update(key_ref=c["key_ref"] + "&" + _evil_addr(listener)))
    env = {**transit.env, "LIFELINE_VAULT_RETRIES": "1"}
    # no key named: a recorded reference that says where to log in is not used; the error says what to pass
    for cmd in (["verify"], ["restore", "latest", "--to", "-"], ["backup", "--stdin"], ["prune"]):
        r = clean(run_agent(*cmd, "--repo", vault_repo.url, env=env, input=b"more"))
        assert connections(listener) == 0, f"`agent {cmd[0]}` sent the Vault token to the address storage wrote"
        assert r.rc == 4 and "--key" in r.err and "addr" in r.err, (cmd, r.err)
    # the key named: it is used (never the recorded reference), and it finds the config changed
    for cmd in (["verify"], ["restore", point, "--to", "-"]):
        r = clean(vault_repo.run(*cmd, env=env))
        assert r.rc == 3 and "config" in r.err and "failed authentication" in r.err and r.out == b"", (cmd, r.err)
    assert connections(listener) == 0
    assert point_ids(vault_repo) == [point]


def test_a_the_first_backup_does_not_follow_a_rewritten_key_reference(repo: Repo, listener):
    """A new repository (no backup yet, so no data key to check against): storage points its recorded
    key at its own Vault before the first backup."""
    edit_json(root(repo) / "config", lambda c: c.update(key_ref="vault-transit://his?" + _evil_addr(listener)))
    env = {"VAULT_TOKEN": "the-agents-own-token", "LIFELINE_VAULT_RETRIES": "1"}
    for cmd in (["backup", "--stdin"], ["backup", "--stdin", "--type", "full"]):
        r = clean(run_agent(*cmd, "--repo", repo.url, env=env, input=b"first rows"))
        assert connections(listener) == 0, "the first backup asked the address storage wrote for a data key"
        assert r.rc == 4 and "--key" in r.err, r.err
    # the key named: the config is proved with the anchor key init made, and found changed
    r = clean(repo.run("backup", "--stdin", env=env, input=b"first rows"))
    assert r.rc == 3 and "config" in r.err and "anchor" in r.err, r.err
    assert point_ids(repo) == []


def test_a_a_key_file_written_into_the_config_is_not_used_for_the_first_backup(repo: Repo, tmp_path):
    """Storage makes a new repository's first backup encrypt under a key file it knows (a local key
    file is taken from the repository, but only once it proves the config)."""
    original = (root(repo) / "config").read_bytes()
    planted = make_key(tmp_path / "storage-knows-this-key")
    edit_json(root(repo) / "config", lambda c: c.update(key_ref=planted))
    r = clean(run_agent("backup", "--stdin", "--repo", repo.url, input=b"first rows"))
    assert r.rc == 4 and "taken from the repository" in r.err and "pass --key" in r.err, r.err
    assert point_ids(repo) == []
    # the key file recorded at init, unchanged: proves the config, so no --key is needed
    (root(repo) / "config").write_bytes(original)
    point = clean(run_agent("backup", "--stdin", "--json", "--repo", repo.url, input=b"first rows")).json["point_id"]
    assert clean(run_agent("restore", point, "--to", "-", "--repo", repo.url)).out == b"first rows"


# --- (b) the settings in the config ------------------------------------------------------------
CONFIG_EDITS = {
    "tiny-chunks": (lambda c: c["chunker"].update(min=64, avg=256, max=1024), 3, "failed authentication"),
    "no-compression": (lambda c: c.update(compression_level=0), 3, "failed authentication"),
    "huge-packs": (lambda c: c.update(pack_target=1 << 40), 3, "failed authentication"),
    "unauthenticated-version-1": (lambda c: (c.pop("mac", None), c.update(version=1)), 1, "not authenticated"),
}


@pytest.mark.parametrize("edit, rc, says", CONFIG_EDITS.values(), ids=CONFIG_EDITS)
def test_b_chunker_pack_or_compression_settings_changed_by_storage_are_refused(repo: Repo, edit, rc, says):
    point = backup(repo, b"patient records " * 8192)
    edit_json(root(repo) / "config", edit)
    for cmd in (["backup", "--stdin"], ["backup", "--stdin", "--type", "full"], ["verify"],
                ["restore", point, "--to", "-"]):
        r = clean(repo.run(*cmd, input=b"more records " * 8192))
        assert r.rc == rc and "config" in r.err and says in r.err, (cmd, r.err)
    assert len(list((root(repo) / "points").iterdir())) == 1  # nothing was published with it


# --- (c) rollback: the newest points deleted, an older head put back, the head deleted ----------
def test_c_deleting_the_newest_point_is_reported_and_latest_says_what_it_took(repo: Repo):
    ids = [backup(repo, f"version {i}".encode()) for i in range(3)]
    (root(repo) / "points" / ids[2]).unlink()

    for cmd in ("verify", "check"):
        r = clean(repo.run(cmd))
        assert r.rc == 3, r.text + r.err
        assert f"DAMAGED points/{ids[2]}" in r.text and "is missing" in r.text and "rolled back" in r.text
    r = clean(repo.run("restore", "latest", "--to", "-"))
    assert r.rc == 0 and r.out == b"version 1"
    assert f"restoring point {ids[1]}" in r.err
    assert "catalogue is behind the authenticated head" in r.err and ids[2] in r.err
    # retention on a rolled-back repository would take older points for the newest: refused
    r = clean(repo.run("prune", "--keep-last", "1"))
    assert r.rc == 3 and ids[2] in r.err and "--accept-missing" in r.err
    assert point_ids(repo) == ids[:2]
    # until the loss is accepted; then the catalogue is what is there, and verify is clean again
    r = repo.ok("prune", "--keep-last", "1", "--accept-missing")
    assert f"accepted the loss of 1 missing point(s): {ids[2]}" in r.text
    assert point_ids(repo) == [ids[1]]
    assert "DAMAGED" not in repo.ok("verify").text


def test_c_an_older_head_put_back_or_the_head_deleted_is_reported(repo: Repo):
    backup(repo, b"v0")
    older = (root(repo) / "head").read_bytes()
    later = [backup(repo, f"v{i}".encode()) for i in (1, 2)]
    (root(repo) / "head").write_bytes(older)
    r = clean(repo.run("verify"))
    assert r.rc == 3 and "DAMAGED head" in r.text and "an older copy of the head was put back" in r.text
    assert later[1] in r.text
    r = clean(repo.run("restore", "latest", "--to", "-"))
    assert "older copy of the head was put back" in r.err

    (root(repo) / "head").unlink()
    r = clean(repo.run("check"))
    assert r.rc == 3 and "DAMAGED head" in r.text and "is missing" in r.text
    r = clean(repo.run("backup", "--stdin", input=b"v3"))  # nothing is recorded on top of a deleted head
    assert r.rc == 3 and "catalogue head" in r.err and "missing" in r.err
    assert len(point_ids(repo)) == 3


def test_c_concurrent_backups_are_all_recorded(repo: Repo):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIFELINE_"))}
    procs = [subprocess.Popen([*AGENT, "backup", "--stdin", "--json", "--source-name", f"s{i}", "--repo", repo.url,
                               "--key", repo.key], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env) for i in range(3)]
    for i, p in enumerate(procs):  # every backup is under way before any of them finishes
        p.stdin.write(f"source {i}".encode() * 100)
        p.stdin.close()
    outs = [(p.stdout.read(), p.stderr.read(), p.wait(timeout=120)) for p in procs]
    assert [rc for _o, _e, rc in outs] == [0, 0, 0], [e for _o, e, _rc in outs]
    ids = [json.loads(o)["point_id"] for o, _e, _rc in outs]
    r = repo.ok("verify")
    assert "catalogue head: seq 3, 3 point(s), authenticated" in r.text
    (root(repo) / "points" / ids[1]).unlink()
    r = clean(repo.run("verify"))
    assert r.rc == 3 and f"DAMAGED points/{ids[1]}" in r.text


# --- (d) index segments -----------------------------------------------------------------------
def _first_pack_at(data: bytes) -> tuple[int, int]:
    """(where the zstd frame starts, where the first pack id sits in the decompressed body)."""
    if data[:8] == b"LLIDX001":  # the layout before segments were authenticated: no clear epoch id
        return 8, 20
    return 24, 4


def _rewritten(data: bytes, change) -> bytes:
    """The segment with ``change(body, first pack id offset)`` applied and its checksum recomputed,
    as storage can do: the BLAKE3 of the rest, which needs no key."""
    start, at = _first_pack_at(data)
    raw = change(zstandard.ZstdDecompressor().decompress(data[start:-32]), at)
    body = data[:start] + zstandard.ZstdCompressor().compress(raw)
    return body + blake3.blake3(body).digest()


def _flip_offset(raw: bytes, at: int) -> bytes:
    pos = at + 16 + 8 + 4 + 32  # pack id, size, entry count; then the first entry's chunk id, its offset
    return raw[:pos] + bytes([raw[pos] ^ 0x10]) + raw[pos + 1:]


@pytest.mark.parametrize("how", ["points-at-a-decoy-pack", "an-offset-changed"])
def test_d_an_index_segment_rewritten_by_storage_is_detected(repo: Repo, how):
    data = os.urandom(300_000)  # one chunk, one pack, one segment
    point = backup(repo, data)
    base = root(repo)
    (seg,) = (base / "index").iterdir()
    (pack,) = [p for p in (base / "data").rglob("*") if p.is_file()]
    if how == "points-at-a-decoy-pack":  # a pack of noise the index now names instead of the real one
        decoy = os.urandom(16)
        (base / "data" / decoy.hex()[:2]).mkdir(exist_ok=True)
        (base / "data" / decoy.hex()[:2] / decoy.hex()).write_bytes(os.urandom(pack.stat().st_size))
        seg.write_bytes(_rewritten(seg.read_bytes(), lambda raw, at: raw[:at] + decoy + raw[at + 16:]))
    else:
        seg.write_bytes(_rewritten(seg.read_bytes(), _flip_offset))

    for cmd in ("verify", "check"):
        r = clean(repo.run(cmd))
        assert r.rc == 3 and f"DAMAGED index/{seg.name}" in r.text and "authentication failed" in r.text, r.text
    r = clean(repo.run("prune"))  # the real pack looks unnamed to a forged index: prune must not delete it
    assert r.rc == 3 and "damaged index segments" in r.err
    assert pack.exists() and point_ids(repo) == [point]
    r = clean(repo.run("restore", point, "--to", "-"))
    assert r.rc == 3 and r.out == b""


# --- (e) what legitimately removes points ------------------------------------------------------
def test_e_prune_and_crypto_shredding_are_not_taken_for_a_rollback(repo: Repo):
    a2 = [backup(repo, f"patient A {i}".encode(), "--source-name", "a") for i in range(2)][1]
    for i in range(2):
        backup(repo, f"patient B {i}".encode(), "--source-name", "b", "--type", "full")
    repo.ok("prune", "--keep-last", "1")  # forgets the older point of each source
    r = repo.ok("verify")
    assert "DAMAGED" not in r.text and "catalogue head: seq" in r.text
    # shredded the way the operator's shred Job does it: `lifeline keys shred`, without any key
    r = run_lifeline("keys", "shred", "--repo", repo.url, "--point", a2, "--yes", "--actor", "dpo@hospital")
    assert r.rc == 0, r.err
    for cmd in ("verify", "check"):
        r = repo.ok(cmd)
        assert "DAMAGED" not in r.text and f"point {a2} was crypto-shredded" in r.text and "dpo@hospital" in r.text
    b3 = backup(repo, b"patient B 2", "--source-name", "b")
    repo.ok("prune", "--keep-last", "1")  # also drops the shredded point from the head
    r = repo.ok("check")
    assert "DAMAGED" not in r.text and "crypto-shredded" not in r.text
    assert point_ids(repo) == [b3]
    # and after all that, a deletion by storage is still seen
    (root(repo) / "points" / b3).unlink()
    r = clean(repo.run("verify"))
    assert r.rc == 3 and f"DAMAGED points/{b3}" in r.text


# --- (f) rotated keys, retired key versions -----------------------------------------------------
def test_f_a_repository_with_rotated_and_retired_key_versions_still_verifies(vault_repo: Repo, transit, tmp_path):
    p1 = vault_repo.backup("--stdin", "--type", "full", input=b"before rotation")["point_id"]
    # `lifeline keys rotate` without --key: the recorded transit reference names only a key, at VAULT_ADDR
    r = run_lifeline("keys", "rotate", "--repo", vault_repo.url, env=transit.env)
    assert r.rc == 0, r.err
    p2 = vault_repo.backup("--stdin", "--type", "full", input=b"after rotation")["point_id"]
    r = run_lifeline("keys", "rotate", "--repo", vault_repo.url, "--no-rotate", "--min-decryption-version", "2",
                     env=transit.env)
    assert r.rc == 0, r.err  # version 1 retired: every epoch key is rewrapped under version 2
    for cmd in ("verify", "check"):
        r = vault_repo.ok(cmd)
        assert "DAMAGED" not in r.text and "catalogue head: seq 2, 2 point(s), authenticated" in r.text
    assert vault_repo.ok("restore", p1, "--to", "-").out == b"before rotation"
    (root(vault_repo) / "points" / p2).unlink()
    r = clean(vault_repo.run("verify"))
    assert r.rc == 3 and f"DAMAGED points/{p2}" in r.text
    edit_json(root(vault_repo) / "config", lambda c: c.update(compression_level=0))
    r = clean(vault_repo.run("restore", p1, "--to", "-"))
    assert r.rc == 3 and "config" in r.err and "failed authentication" in r.err
