"""SM4 repositories (issue 20, item 3): `init --cipher sm4-gcm`, for sites that must use GB/T 32907.

A repository's cipher is chosen at init and never changes: the config records it (and its MAC
covers it), every epoch key object, point header and blob header names it, and the AAD of every
sealed object binds it. These tests drive the real agent on file:// and moto's S3, and check the
stored bytes from outside: an SM4 repository's objects open with SM4-GCM under the documented key
and AAD, and not with AES-GCM (nor the other way round).
"""
from __future__ import annotations

import base64
import json
import os
import struct
import uuid
from pathlib import Path

import blake3
import pytest
import zstandard
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lifeline.errors import UsageError
from lifeline.keys import LocalKeyFileProvider
from lifeline.repository import crypto
from lifeline.repository.crypto import SM4GCM, EpochKeys
from lifeline.repository.errors import CipherUnavailable, DamagedData
from lifeline.repository.manifest import decode_tree, encode_point
from lifeline.repository.pack import read_directory

from .helpers import Repo, assert_same_tree, clean, edit_json, make_key, repo_root as root, run_agent

CTX = "lifeline.io 2026-11 repository v1 "


# --- fixtures and helpers ------------------------------------------------------------------
def _init(r: Repo, cipher: str | None) -> dict:
    out = r.ok("init", "--json", *(["--cipher", cipher] if cipher else [])).json
    assert out["cipher"] == (cipher or "aes-256-gcm")
    return out


@pytest.fixture
def sm4(tmp_path) -> Repo:
    r = Repo("file://" + str(tmp_path / "sm4-repo"), make_key(tmp_path / "key"))
    _init(r, "sm4-gcm")
    return r


@pytest.fixture
def aes(tmp_path) -> Repo:
    r = Repo("file://" + str(tmp_path / "aes-repo"), make_key(tmp_path / "aes-key"))
    _init(r, None)
    return r


def tree(path: Path, seed: bytes = b"") -> Path:
    (path / "ward").mkdir(parents=True)
    (path / "ward" / "notes.txt").write_bytes(b"bed 4: obs stable, next review 14:00\n" * 20000 + seed)
    (path / "scan.dcm").write_bytes(os.urandom(1_500_000))
    (path / "empty").write_bytes(b"")
    os.symlink("ward/notes.txt", path / "latest")
    return path


def one(paths) -> Path:
    (p,) = list(paths)
    return p


def epoch_dek(r: Repo, epoch: str) -> bytes:
    rec = json.loads((root(r) / "keys" / epoch).read_text())
    return LocalKeyFileProvider(r.key[len("file://"):]).unwrap(base64.b64decode(rec["wrapped"]))


def blobs(r: Repo, keys: EpochKeys):
    """(chunk id, blob, raw length) of every blob of the repository's packs, via their sealed directories."""
    for pack in sorted((root(r) / "data").rglob("*")):
        if pack.is_file():
            data = pack.read_bytes()
            for cid, off, length, raw in read_directory(keys, pack.name, data):
                yield cid, data[off:off + length], raw


def blob_aad(label: bytes, header_byte: int, epoch: str, cid: bytes) -> bytes:
    return label + struct.pack(">4sBB16s32s", b"LLB1", 1, header_byte, bytes.fromhex(epoch), cid)


def sm4_gcm_open(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """SM4-GCM straight from cryptography's primitives (not lifeline's wrapper)."""
    d = Cipher(algorithms.SM4(key), modes.GCM(nonce, sealed[-16:])).decryptor()
    d.authenticate_additional_data(aad)
    return d.update(sealed[:-16]) + d.finalize()


def payload_of(header_byte: int, payload: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(payload, max_output_size=8 << 20) if header_byte & 0x0F else payload


def rewrite_point_header(path: Path, edit) -> None:
    """Edit a point's clear header as storage can (the tree stays as sealed)."""
    data = path.read_bytes()
    (n,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12:12 + n])
    edit(header)
    new = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(data[:8] + struct.pack("<I", len(new)) + new + data[12 + n:])


# --- the primitive -------------------------------------------------------------------------
def test_sm4_gcm_is_available_and_matches_the_rfc_8998_vector():
    assert crypto.cipher_problem("sm4-gcm") is None, crypto.cipher_problem("sm4-gcm")
    key, nonce, aad, plain, expected = crypto._SM4_GCM_KAT
    assert SM4GCM(key).encrypt(nonce, plain, aad) == expected
    assert SM4GCM(key).decrypt(nonce, expected, aad) == plain
    out = bytearray(len(plain) + 16)
    SM4GCM(key).encrypt_into(nonce, plain, aad, out)
    assert bytes(out) == expected
    for bad in (expected[:-1] + bytes([expected[-1] ^ 1]), bytes([expected[0] ^ 1]) + expected[1:]):
        with pytest.raises(InvalidTag):
            SM4GCM(key).decrypt(nonce, bad, aad)
    with pytest.raises(InvalidTag):
        SM4GCM(key).decrypt(nonce, expected, aad + b"x")


def test_sm4_keys_are_derived_with_their_own_context_and_16_bytes():
    dek = os.urandom(32)
    s, a = EpochKeys("00" * 16, dek, cipher="sm4-gcm"), EpochKeys("00" * 16, dek)
    assert s.aead_key == blake3.blake3(dek, derive_key_context=CTX + "sm4-gcm aead").digest(16)
    assert a.aead_key == blake3.blake3(dek, derive_key_context=CTX + "aead").digest()
    assert len(s.aead_key) == 16 and s.aead_key != a.aead_key[:16]
    # everything else an epoch derives is the cipher's business of neither
    assert (s.id_key, s.cdc_seed, s.macs.mac("config", b"c")) == (a.id_key, a.cdc_seed, a.macs.mac("config", b"c"))
    blob = s.seal_chunk(s.chunk_id(b"x" * 5000), b"x" * 5000)
    assert blob[0] == 0x11  # SM4 (1) << 4 | zstd (1)
    assert a.seal_chunk(a.chunk_id(b"y" * 10), b"y" * 10)[0] == 0x00  # AES blobs are as before


def test_points_written_before_sm4_existed_still_open_and_never_as_sm4():
    """Points of AES repositories made before this change have no "cipher" in their header."""
    dek = os.urandom(32)
    a, s = EpochKeys("ab" * 16, dek), EpochKeys("ab" * 16, dek, cipher="sm4-gcm")
    header = {"version": 2, "id": "cd" * 16, "epoch": "ab" * 16}
    entries = [{"path": "", "type": "dir"}]
    assert decode_tree(a, "points/old", encode_point(a, header, entries))[1] == entries
    with pytest.raises(DamagedData, match="never mixes ciphers"):
        decode_tree(s, "points/old", encode_point(s, header, entries))
    sealed = encode_point(s, {**header, "cipher": "sm4-gcm"}, entries)
    assert decode_tree(s, "points/new", sealed)[1] == entries


# --- round trips ---------------------------------------------------------------------------
def test_round_trip_file_full_incremental_restore_verify_check(sm4: Repo, tmp_path):
    src = tree(tmp_path / "src")
    config = json.loads((root(sm4) / "config").read_text())
    # version 3 = version 2 with a cipher other than AES: lifelines from before SM4 refuse it ("newer")
    assert config["encryption"] == "sm4-gcm" and config["version"] == 3
    s1 = sm4.backup(str(src), "--type", "full")
    assert s1["cipher"] == "sm4-gcm"
    rec = json.loads((root(sm4) / "keys" / s1["epoch"]).read_text())
    assert rec["cipher"] == "sm4-gcm"
    head = (root(sm4) / "points" / s1["point_id"]).read_bytes()
    assert b'"cipher":"sm4-gcm"' in head[:4096]
    (src / "ward" / "notes.txt").write_bytes(b"bed 4: discharged\n")
    s2 = sm4.backup(str(src))
    assert s2["type"] == "incremental" and s2["epoch"] == s1["epoch"] and s2["chunks_new"] >= 1
    sm4.ok("restore", s2["point_id"], "--to", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out")
    out = clean(sm4.run("restore", s1["point_id"], "--to", "-", "--path", "scan.dcm")).out
    assert out == (src / "scan.dcm").read_bytes()
    assert "no damage found" in sm4.ok("verify", "--read-data").text
    assert "no damage found" in sm4.ok("check", "--read-data").text
    # a second full: a new epoch, of the same cipher
    s3 = sm4.backup(str(src), "--type", "full")
    assert s3["epoch"] != s1["epoch"] and s3["cipher"] == "sm4-gcm"
    sm4.ok("restore", "latest", "--to", tmp_path / "out3")
    assert_same_tree(src, tmp_path / "out3")


def test_round_trip_s3(s3_server, tmp_path):
    bucket = s3_server.make_bucket(f"sm4-{uuid.uuid4().hex[:12]}")
    r = Repo(f"s3://{bucket}/pacs", make_key(tmp_path / "key"), env=s3_server.env())
    _init(r, "sm4-gcm")
    src = tree(tmp_path / "src")
    s = r.backup(str(src))
    assert s["cipher"] == "sm4-gcm"
    r.ok("restore", s["point_id"], "--to", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out")
    assert "no damage found" in r.ok("verify", "--read-data").text
    client = s3_server.client()
    config = json.loads(client.get_object(Bucket=bucket, Key="pacs/config")["Body"].read())
    assert config["encryption"] == "sm4-gcm"
    packs = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="pacs/data/")["Contents"]]
    first_blob = client.get_object(Bucket=bucket, Key=packs[0], Range="bytes=24-24")["Body"].read()
    assert first_blob[0] >> 4 == 1  # "LLPACK01" | epoch id | the first blob's header byte: SM4
    r.ok("prune", "--keep-last", "1")


def test_log_segments_of_an_sm4_repository(tmp_path):
    """wal-push --create --cipher sm4-gcm makes an SM4 repository; segments round-trip and are SM4."""
    seg = tmp_path / "000000010000000000000001"
    seg.write_bytes(os.urandom(1 << 20))
    r = Repo("file://" + str(tmp_path / "wal-repo"), make_key(tmp_path / "key"))
    r.ok("wal-push", seg, "--create", "--cipher", "sm4-gcm")
    assert json.loads((root(r) / "config").read_text())["encryption"] == "sm4-gcm"
    r.ok("wal-fetch", seg.name, tmp_path / "fetched")
    assert (tmp_path / "fetched").read_bytes() == seg.read_bytes()
    epoch = json.loads((root(r) / "wal" / "epoch").read_text())["epoch"]
    data = one((root(r) / "wal").glob("00000001/*")).read_bytes()
    (n,) = struct.unpack_from("<I", data, 8)
    prefix, sealed = data[:12 + n], data[12 + n:]
    key = blake3.blake3(epoch_dek(r, epoch), derive_key_context=CTX + "sm4-gcm aead").digest(16)
    body = sm4_gcm_open(key, sealed[:12], sealed[12:], b"LLSM4GCM" + prefix)
    assert zstandard.ZstdDecompressor().decompress(body, max_output_size=2 << 20) == seg.read_bytes()


# --- the bytes are SM4, not AES ------------------------------------------------------------
def test_an_sm4_repository_decrypts_with_sm4_only(sm4: Repo, tmp_path):
    src = tree(tmp_path / "src")
    epoch = sm4.backup(str(src))["epoch"]
    dek = epoch_dek(sm4, epoch)
    sm4_key = blake3.blake3(dek, derive_key_context=CTX + "sm4-gcm aead").digest(16)
    aes_key = blake3.blake3(dek, derive_key_context=CTX + "aead").digest()
    keys = EpochKeys(epoch, dek, cipher="sm4-gcm")
    as_aes = EpochKeys(epoch, dek)
    found, codecs = 0, set()
    for cid, blob, raw in blobs(sm4, keys):
        found += 1
        codecs.add(blob[0] & 0x0F)
        assert blob[0] >> 4 == 1  # the header byte says SM4
        nonce, sealed = blob[1:13], blob[13:]
        aad = blob_aad(b"LLSM4GCM", blob[0], epoch, cid)
        # by the documentation, from the primitives: SM4-GCM under the derived key opens it
        plain = payload_of(blob[0], sm4_gcm_open(sm4_key, nonce, sealed, aad))
        assert len(plain) == raw and blake3.blake3(plain, key=keys.id_key).digest() == cid
        # AES-GCM does not: under the same 16-byte key (AES-128), nor under the AES sub-key of this
        # data key, with or without the SM4 label in the AAD
        for key in (sm4_key, aes_key):
            for a in (aad, blob_aad(b"", blob[0], epoch, cid), blob_aad(b"", blob[0] & 0x0F, epoch, cid)):
                with pytest.raises(InvalidTag):
                    AESGCM(key).decrypt(nonce, sealed, a)
        # lifeline's AES path refuses it by its header, and by its tag once re-labelled
        with pytest.raises(DamagedData, match="sealed with sm4-gcm.*never mixes ciphers"):
            as_aes.open_chunk(cid, blob, raw)
        with pytest.raises(DamagedData, match="authentication failed"):
            as_aes.open_chunk(cid, bytes([blob[0] & 0x0F]) + blob[1:], raw)
        assert keys.open_chunk(cid, blob, raw) == plain
    assert found >= 2 and codecs == {0, 1}  # scan.dcm raw, notes.txt zstd
    # the point's tree and the pack directories are SM4 too
    (point,) = (root(sm4) / "points").iterdir()
    data = point.read_bytes()
    (n,) = struct.unpack_from("<I", data, 8)
    prefix, sealed = data[:12 + n], data[12 + n:]
    zstandard.ZstdDecompressor().decompress(sm4_gcm_open(sm4_key, sealed[:12], sealed[12:], b"LLSM4GCM" + prefix))
    with pytest.raises(InvalidTag):
        AESGCM(aes_key).decrypt(sealed[:12], sealed[12:], prefix)


def test_an_aes_repository_decrypts_with_aes_only(aes: Repo, tmp_path):
    src = tree(tmp_path / "src")
    epoch = aes.backup(str(src))["epoch"]
    assert json.loads((root(aes) / "config").read_text())["encryption"] == "aes-256-gcm"
    dek = epoch_dek(aes, epoch)
    aes_key = blake3.blake3(dek, derive_key_context=CTX + "aead").digest()
    sm4_key = blake3.blake3(dek, derive_key_context=CTX + "sm4-gcm aead").digest(16)
    keys, as_sm4 = EpochKeys(epoch, dek), EpochKeys(epoch, dek, cipher="sm4-gcm")
    found, codecs = 0, set()
    for cid, blob, raw in blobs(aes, keys):
        found += 1
        codecs.add(blob[0] & 0x0F)
        assert blob[0] >> 4 == 0
        nonce, sealed = blob[1:13], blob[13:]
        aad = blob_aad(b"", blob[0], epoch, cid)
        plain = payload_of(blob[0], AESGCM(aes_key).decrypt(nonce, sealed, aad))
        assert blake3.blake3(plain, key=keys.id_key).digest() == cid
        for key in (aes_key[:16], sm4_key):
            for a in (aad, b"LLSM4GCM" + aad):
                with pytest.raises(InvalidTag):
                    sm4_gcm_open(key, nonce, sealed, a)
        with pytest.raises(DamagedData, match="sealed with aes-256-gcm.*never mixes ciphers"):
            as_sm4.open_chunk(cid, blob, raw)
        with pytest.raises(DamagedData, match="authentication failed"):
            as_sm4.open_chunk(cid, bytes([0x10 | blob[0]]) + blob[1:], raw)
    assert found >= 2 and codecs == {0, 1}  # scan.dcm raw, notes.txt zstd


# --- mixed repositories are refused ---------------------------------------------------------
def test_a_blob_relabelled_as_aes_is_damage(sm4: Repo, tmp_path):
    point = sm4.backup(str(tree(tmp_path / "src")))["point_id"]
    pack = max((p for p in (root(sm4) / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(pack.read_bytes())
    assert data[24] >> 4 == 1  # the first blob's header byte, after "LLPACK01" | epoch id
    data[24] &= 0x0F
    pack.write_bytes(bytes(data))
    r = clean(sm4.run("verify", "--read-data"))
    assert r.rc == 3 and "sealed with aes-256-gcm" in r.text and "never mixes ciphers" in r.text, r.text + r.err
    r = clean(sm4.run("restore", point, "--to", tmp_path / "out"))
    assert r.rc == 3, r.err


@pytest.mark.parametrize("claim", ["aes-256-gcm", None])
def test_an_epoch_that_claims_another_cipher_is_refused(sm4: Repo, tmp_path, claim):
    s = sm4.backup(str(tree(tmp_path / "src")))
    key_obj = root(sm4) / "keys" / s["epoch"]
    edit_json(key_obj, lambda o: o.update(cipher=claim) if claim else o.pop("cipher"))
    for cmd in (["verify"], ["restore", s["point_id"], "--to", str(tmp_path / "out")], ["backup", "--stdin"]):
        r = clean(sm4.run(*cmd, input=b"more"))
        assert r.rc == 3 and f"keys/{s['epoch']}" in r.err and "never mixes ciphers" in r.err, (cmd, r.err)
    assert len(list((root(sm4) / "points").iterdir())) == 1


@pytest.mark.parametrize("claim", ["aes-256-gcm", None])
def test_a_point_that_claims_another_cipher_is_refused(sm4: Repo, tmp_path, claim):
    s = sm4.backup(str(tree(tmp_path / "src")))
    rewrite_point_header(root(sm4) / "points" / s["point_id"],
                         lambda h: h.update(cipher=claim) if claim else h.pop("cipher"))
    for cmd in (["verify"], ["restore", s["point_id"], "--to", str(tmp_path / "out")]):
        r = clean(sm4.run(*cmd))
        assert r.rc == 3 and "never mixes ciphers" in r.text + r.err, (cmd, r.text, r.err)


def test_an_aes_key_object_without_a_cipher_field_is_aes(aes: Repo, tmp_path):
    """Key objects written before SM4 existed have no "cipher": they are AES, and still open."""
    s = aes.backup(str(tree(tmp_path / "src")))
    edit_json(root(aes) / "keys" / s["epoch"], lambda o: o.pop("cipher"))
    assert "no damage found" in aes.ok("verify", "--read-data").text


CONFIG_EDITS = {
    "cipher-aes": lambda c: c.update(encryption="aes-256-gcm"),
    "cipher-aes-version-2": lambda c: c.update(encryption="aes-256-gcm", version=2),
    "cipher-unknown": lambda c: c.update(encryption="rot13"),
    "cipher-removed": lambda c: c.pop("encryption"),
}


@pytest.mark.parametrize("before_first_backup", [False, True], ids=["proved-by-epoch", "proved-by-anchor"])
@pytest.mark.parametrize("edit", CONFIG_EDITS.values(), ids=CONFIG_EDITS)
def test_the_configs_cipher_changed_by_storage_is_refused(sm4: Repo, tmp_path, edit, before_first_backup):
    point = None if before_first_backup else sm4.backup("--stdin", input=b"ward 7 rota")["point_id"]
    edit_json(root(sm4) / "config", edit)
    cmds = [["backup", "--stdin"], ["backup", "--stdin", "--type", "full"], ["verify"]]
    if point:
        cmds.append(["restore", point, "--to", "-"])
    for cmd in cmds:
        r = clean(sm4.run(*cmd, input=b"more rows"))
        assert r.rc == 3 and "config" in r.err and "failed authentication" in r.err, (cmd, r.err)
        if cmd[0] != "verify":
            assert r.out == b"", cmd
    assert len(list(root(sm4).glob("points/*"))) == (0 if before_first_backup else 1)


@pytest.mark.parametrize("version", [2, 3])
def test_an_aes_config_changed_to_sm4_is_refused(aes: Repo, version):
    assert json.loads((root(aes) / "config").read_text())["version"] == 2  # AES repositories stay version 2
    point = aes.backup("--stdin", input=b"ward 7 rota")["point_id"]
    edit_json(root(aes) / "config", lambda c: c.update(encryption="sm4-gcm", version=version))
    for cmd in (["backup", "--stdin"], ["restore", point, "--to", "-"], ["verify", "--read-data"]):
        r = clean(aes.run(*cmd, input=b"more"))
        assert r.rc == 3 and "failed authentication" in r.err, (cmd, r.err)


def test_a_newer_format_version_is_refused_before_any_key_is_used(sm4: Repo):
    edit_json(root(sm4) / "config", lambda c: c.update(version=6))
    r = clean(sm4.run("points"))
    assert r.rc == 1 and "newer than this lifeline supports (5)" in r.err, r.err


# --- names and availability ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["sm4", "SM4-GCM", "aes", "aes-128-gcm", "sm4-ctr", ""])
def test_a_bad_cipher_name_is_refused_with_the_choices(tmp_path, name):
    r = clean(run_agent("init", "--repo", "file://" + str(tmp_path / "r"), "--key", make_key(tmp_path / "k"),
                        "--cipher", name))
    assert r.rc == 2 and f"unknown cipher {name!r}" in r.err and "sm4-gcm" in r.err and "aes-256-gcm" in r.err, r.err
    assert not (tmp_path / "r").exists()


def test_repository_init_refuses_an_unknown_cipher(tmp_path):
    from lifeline.repository import Repository, open_backend

    backend = open_backend("file://" + str(tmp_path / "r"), create=True)
    with pytest.raises(UsageError, match="unknown cipher 'des'"):
        Repository.init(backend, LocalKeyFileProvider(make_key(tmp_path / "k")[7:]), cipher="des")
    assert not backend.exists("config")


@pytest.fixture
def no_sm4(monkeypatch):
    """This process as if its OpenSSL had no SM4: the detection itself runs (its known-answer encrypt fails)."""
    def unsupported(self, *a, **kw):
        raise UnsupportedAlgorithm("sm4 is not supported by this backend")

    monkeypatch.setattr(SM4GCM, "encrypt", unsupported)
    crypto.cipher_problem.cache_clear()
    yield
    monkeypatch.undo()
    crypto.cipher_problem.cache_clear()


def _agent_here(capsys, *args) -> tuple[int, str, str]:
    from lifeline.agent.__main__ import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_without_sm4_an_sm4_repository_says_so(sm4: Repo, aes: Repo, tmp_path, capsys, no_sm4):
    # the repositories were made, and this point is written, by agents in their own processes (SM4 works)
    point = sm4.backup("--stdin", input=b"ward 7 rota")["point_id"]
    assert crypto.cipher_problem("sm4-gcm") is not None  # in this process it does not
    with pytest.raises(CipherUnavailable, match="has no SM4-GCM"):
        EpochKeys("00" * 16, os.urandom(32), cipher="sm4-gcm")
    common = ["--repo", sm4.url, "--key", sm4.key]
    for cmd in (["backup", "--stdin"], ["backup", "--stdin", "--type", "full"], ["verify"],
                ["restore", point, "--to", tmp_path / "out"]):
        rc, _out, err = _agent_here(capsys, *cmd, *common)
        assert rc == 1 and "encrypts with sm4-gcm" in err and "cannot do" in err and "no SM4-GCM" in err \
            and "OpenSSL" in err, (cmd, err)
    assert len(list(root(sm4).glob("keys/*"))) == len(list(root(sm4).glob("points/*"))) == 1  # nothing written
    assert not list(tmp_path.glob("out/*"))
    # commands that need no key still work; AES repositories are not affected
    rc, out, err = _agent_here(capsys, "points", "--repo", sm4.url)
    assert rc == 0 and point[:12] in out, err
    rc, out, err = _agent_here(capsys, "verify", "--repo", aes.url, "--key", aes.key)
    assert rc == 0, err
    # and a new SM4 repository is not created (nor its key file)
    rc, out, err = _agent_here(capsys, "init", "--repo", "file://" + str(tmp_path / "new"), "--key",
                               "file://" + str(tmp_path / "new-key"), "--create-key", "--cipher", "sm4-gcm")
    assert rc == 1 and "cannot create a sm4-gcm repository" in err and "no SM4-GCM" in err, err
    assert not (tmp_path / "new").exists() and not (tmp_path / "new-key").exists()
