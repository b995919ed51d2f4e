"""Immutable repositories (issue 18, docs/immutability.md) against a real S3 server that enforces Object
Lock: MinIO, built from its Go module (moto's server lets a COMPLIANCE retention be shortened, so it
cannot show the promise).

The promise: whoever holds the backup credentials — ransomware that took the agent's Secret — deletes
every object and every version, overwrites the packs, tries to shorten the retention in COMPLIANCE
mode and deletes the locks, and every point still restores and verifies. And the ordinary life of
the repository goes on: backup, prune (which leaves young objects and extends what kept points need),
repack, shred.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid

import pytest

from .helpers import Repo, assert_same_tree, make_key, write_random

pytestmark = pytest.mark.slow


def _repo(minio, tmp_path, *, days: int = 30, mode: str = "compliance", env: dict | None = None) -> Repo:
    bucket = minio.make_bucket(f"imm-{uuid.uuid4().hex[:12]}")
    r = Repo(f"s3://{bucket}/r", make_key(tmp_path / "key"), env={**minio.env(), **(env or {})})
    out = r.ok("init", "--immutable-days", str(days), "--immutable-mode", mode, "--json").json
    assert out["immutable"] == {"mode": mode, "days": days} and out["format_version"] == 5
    r.bucket = bucket
    return r


def _tree(tmp_path, name: str, files: dict[str, int | bytes]):
    src = tmp_path / name
    src.mkdir(exist_ok=True)
    for fname, content in files.items():
        if isinstance(content, int):
            write_random(src / fname, content)
        else:
            (src / fname).write_bytes(content)
    return src


def _restores(r: Repo, point: str, expected, tmp_path) -> None:
    out = tmp_path / f"restored-{point[:8]}-{uuid.uuid4().hex[:6]}"
    r.ok("restore", point, "--to", out)
    assert_same_tree(expected, out)


def _snapshot(src, tmp_path, name: str):
    import shutil

    copy = tmp_path / name
    shutil.copytree(src, copy)
    return copy


def _versions(client, bucket: str) -> tuple[list[dict], list[dict]]:
    versions, markers = [], []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def _refused(call) -> bool:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError:
        return True
    return False


# --- init -----------------------------------------------------------------------------------
def test_init_records_immutability_and_needs_a_bucket_with_object_lock(minio, tmp_path):
    plain = minio.make_bucket(f"plain-{uuid.uuid4().hex[:12]}", object_lock=False)
    r = Repo(f"s3://{plain}/r", make_key(tmp_path / "plain-key"), env=minio.env())
    out = r.run("init", "--immutable-days", "7")
    assert out.rc == 2 and "has no Object Lock" in out.err, out.err
    assert minio.client().list_objects_v2(Bucket=plain).get("KeyCount", 0) == 0  # nothing was written

    local = Repo((tmp_path / "local").as_uri(), r.key)
    out = local.run("init", "--immutable-days", "7")
    assert out.rc == 2 and "s3:// repositories (S3 Object Lock) only" in out.err, out.err
    assert local.run("init", "--immutable-mode", "governance").rc == 2  # a mode needs days

    r = _repo(minio, tmp_path, days=7, mode="governance")
    config = json.loads(minio.client().get_object(Bucket=r.bucket, Key="r/config")["Body"].read())
    assert config["immutable"] == {"mode": "governance", "days": 7} and config["version"] == 5
    head = minio.client().head_object(Bucket=r.bucket, Key="r/config")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    left = head["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=6, hours=23) < left <= dt.timedelta(days=7)


# --- the promise ------------------------------------------------------------------------------
def test_ransomware_with_the_backup_credentials_cannot_destroy_a_point(minio, tmp_path):
    r = _repo(minio, tmp_path, days=30, mode="compliance")
    src = _tree(tmp_path, "ward", {"a.bin": 3_000_000, "b.txt": b"rota\n"})
    first = r.backup(str(src), "--type", "full")["point_id"]
    expected = {first: _snapshot(src, tmp_path, "first")}
    write_random(src / "a.bin", 2_000_000)
    (src / "c.txt").write_bytes(b"new patient\n")
    second = r.backup(str(src))["point_id"]
    expected[second] = _snapshot(src, tmp_path, "second")
    other = _tree(tmp_path, "lab", {"results.csv": 1_500_000})
    third = r.backup(str(other))["point_id"]
    expected[third] = _snapshot(other, tmp_path, "third")

    # --- the attack, with the very credentials the agent uses ------------------------------------
    s3 = minio.client()
    originals, _ = _versions(s3, r.bucket)
    assert originals and all(v["Key"].startswith("r/") for v in originals)
    kinds = {v["Key"].split("/")[1] for v in originals}
    assert {"config", "heads", "keys", "data", "index", "points", "locks"} <= kinds, kinds
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    for v in originals:
        key, vid = v["Key"], v["VersionId"]
        # shorten the retention (COMPLIANCE), switch it to GOVERNANCE, bypass governance: all refused
        assert _refused(lambda: s3.put_object_retention(
            Bucket=r.bucket, Key=key, VersionId=vid, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})), key
        assert _refused(lambda: s3.put_object_retention(
            Bucket=r.bucket, Key=key, VersionId=vid, BypassGovernanceRetention=True,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})), key
        # delete the version itself (the locks too): refused
        assert _refused(lambda: s3.delete_object(Bucket=r.bucket, Key=key, VersionId=vid)), key
        assert _refused(lambda: s3.delete_object(Bucket=r.bucket, Key=key, VersionId=vid,
                                                 BypassGovernanceRetention=True)), key
        # overwrite it (packs, points, keys, config, heads: everything), then delete it
        s3.put_object(Bucket=r.bucket, Key=key, Body=os.urandom(64))
        s3.delete_object(Bucket=r.bucket, Key=key)
    assert _refused(lambda: s3.put_bucket_versioning(Bucket=r.bucket,
                                                     VersioningConfiguration={"Status": "Suspended"}))
    # every version the attacker could delete (its own overwrites, the delete markers): gone
    versions, markers = _versions(s3, r.bucket)
    for v in versions + markers:
        if v["VersionId"] not in {o["VersionId"] for o in originals}:
            s3.delete_object(Bucket=r.bucket, Key=v["Key"], VersionId=v["VersionId"])
        s3.delete_object(Bucket=r.bucket, Key=v["Key"])  # and a delete marker on top of everything again
    assert s3.list_objects_v2(Bucket=r.bucket).get("KeyCount", 0) == 0  # the bucket looks empty
    for v in originals:  # and every original version is there, its retention unchanged
        ret = s3.get_object_retention(Bucket=r.bucket, Key=v["Key"], VersionId=v["VersionId"])["Retention"]
        assert ret["Mode"] == "COMPLIANCE" and ret["RetainUntilDate"] > dt.datetime.now(dt.timezone.utc)

    # --- every point is still there, verifies and restores ----------------------------------------
    listed = {p["point_id"] for p in r.ok("points", "--json").json["points"]}
    assert listed == {first, second, third}
    v = r.ok("verify", "--read-data", "--json").json
    assert v["ok"] and v["points_checked"] == 3 and v["catalogue"]["seq"] == 3, v
    for point, tree in expected.items():
        _restores(r, point, tree, tmp_path)
    check = r.ok("check", "--read-data", "--json").json
    assert check["ok"] and check["damaged"] == [], check
    assert any("retention of" in n and "0 shorter" in n for n in check["notes"]), check["notes"]
    # and the repository goes on: a backup after the attack, then all four verify
    (src / "d.txt").write_bytes(b"after the attack\n")
    fourth = r.backup(str(src))["point_id"]
    _restores(r, fourth, src, tmp_path)
    v = r.ok("verify", "--read-data", "--json").json
    assert v["ok"] and v["points_checked"] == 4


# --- the ordinary life of an immutable repository ------------------------------------------------
DAY = 3  # seconds: LIFELINE_RETENTION_DAY_SECONDS, so that retention ends within the test


def test_prune_keeps_young_objects_extends_what_points_need_and_deletes_what_expired(minio, tmp_path):
    r = _repo(minio, tmp_path, days=2, env={"LIFELINE_RETENTION_DAY_SECONDS": str(DAY)})  # 6 s
    s3 = minio.client()
    src = _tree(tmp_path, "pacs", {"a.bin": 2_000_000})
    p1 = r.backup(str(src), "--type", "full")["point_id"]
    write_random(src / "a.bin", 2_000_000)  # p1's pack holds chunks only p1 uses
    p2 = r.backup(str(src))["point_id"]
    p3 = r.backup(str(src))["point_id"]
    kept_tree = _snapshot(src, tmp_path, "kept")
    packs_before = {v["Key"] for v in _versions(s3, r.bucket)[0] if v["Key"].startswith("r/data/")}
    assert len(packs_before) == 2

    # young: prune forgets p1 and p2 by the rules, but their objects are retained: they stay
    started = time.time()
    out = r.ok("prune", "--keep-last", "1", "--json").json
    assert out["forget"] == [] and {x["point_id"] for x in out["retained_points"]} == {p1, p2}, out
    assert out["packs_deleted"] == 0 and out["retention_extended"] > 0, out
    assert {p["point_id"] for p in r.ok("points", "--json").json["points"]} == {p1, p2, p3}
    assert r.ok("verify", "--read-data", "--json").json["ok"]
    # what p3 needs is now retained for at least `days` from the prune
    ret = s3.head_object(Bucket=r.bucket, Key=f"r/points/{p3}")
    assert ret["ObjectLockRetainUntilDate"].timestamp() >= started + 2 * DAY

    # past their retention: the forgotten points go, and the pack only p1 used, with its index segment
    time.sleep(max(0.0, started + 2 * DAY + 1 - time.time()))
    out = r.ok("prune", "--keep-last", "1", "--json").json
    assert {x["point_id"] for x in out["forget"]} == {p1, p2} and out["retained_points"] == [], out
    assert out["packs_deleted"] == 1, out
    assert {p["point_id"] for p in r.ok("points", "--json").json["points"]} == {p3}
    packs_after = {v["Key"] for v in _versions(s3, r.bucket)[0] if v["Key"].startswith("r/data/")}
    assert len(packs_after) == 1 and packs_after < packs_before
    _restores(r, p3, kept_tree, tmp_path)
    check = r.ok("check", "--read-data", "--json").json
    assert check["ok"], check

    # repack and another backup keep working; nothing the point needs is lost
    rp = r.ok("repack", "--json").json
    assert rp["damaged"] == []
    (src / "new.txt").write_bytes(b"more\n")
    p4 = r.backup(str(src))["point_id"]
    _restores(r, p4, src, tmp_path)
    assert r.ok("verify", "--read-data", "--json").json["ok"]

    # an object written without the repository's lock is named by check
    s3.put_object(Bucket=r.bucket, Key="r/shredded/" + "0" * 32, Body=b"{}")
    check = r.run("check", "--json")
    assert check.rc == 3 and any(d.get("object") == "shredded/" + "0" * 32 and "shorter than the repository's"
                                 in d["error"] for d in check.json["damaged"]), check.text


def test_locks_are_records_that_expire(minio, tmp_path):
    r = _repo(minio, tmp_path, days=30)
    r.backup("--stdin", input=b"one")
    s3 = minio.client()
    names = sorted(v["Key"] for v in _versions(s3, r.bucket)[0] if v["Key"].startswith("r/locks/"))
    holders = {n.rsplit(".", 1)[0] for n in names}
    assert names and all(f"{h}.released" in names and f"{h}.000000" in names for h in holders), names
    ret = s3.head_object(Bucket=r.bucket, Key=names[0])  # hours, not the repository's days
    assert ret["ObjectLockRetainUntilDate"] - dt.datetime.now(dt.timezone.utc) < dt.timedelta(hours=3)
    # a released lock blocks nobody: an exclusive command runs at once
    r.ok("prune", "--keep-last", "5", "--lock-wait", "0")


# --- shredding -------------------------------------------------------------------------------------
def test_shred_on_an_immutable_repository_makes_the_epoch_unreadable_while_its_objects_stay(minio, tmp_path):
    r = _repo(minio, tmp_path, days=30)
    gone = r.backup("--stdin", "--source-name", "gone", input=b"to be shredded")
    stays = r.backup("--stdin", "--source-name", "stays", "--type", "full", input=b"to be kept")
    assert gone["epoch"] != stays["epoch"]
    s3 = minio.client()

    # a tombstone somebody wrote without the key is ignored: ransomware cannot "shred" by writing one
    fake = {"version": 1, "epoch": stays["epoch"], "points": [stays["point_id"]], "shredded_at": "2026-01-01T00:00:00Z",
            "actor": "mallory", "reason": "", "mac": "00" * 32}
    s3.put_object(Bucket=r.bucket, Key=f"r/shredded/{stays['epoch']}", Body=json.dumps(fake).encode())
    assert r.ok("restore", stays["point_id"], "--to", "-").out == b"to be kept"

    out = r.ok("shred", "--epoch", gone["epoch"], "--yes", "--json").json
    assert out["points_shredded"] == [gone["point_id"]]
    retained = {x["object"] for x in out["retained"]}
    assert f"keys/{gone['epoch']}" in retained and f"points/{gone['point_id']}" in retained, out
    assert out["retained_until"] > dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    # the ciphertext and the wrapped key are still in storage (retained) ...
    s3.head_object(Bucket=r.bucket, Key=f"r/keys/{gone['epoch']}")
    # ... but lifeline treats the epoch as shredded
    res = r.run("restore", gone["point_id"], "--to", "-")
    assert res.rc == 3 and "crypto-shredded" in res.err, res.err
    v = r.ok("verify", "--json").json
    assert v["shredded_points"] == [gone["point_id"]] and v["ok"]
    assert r.ok("restore", stays["point_id"], "--to", "-").out == b"to be kept"
    # prune keeps the shredded epoch's objects until their retention ends, and says so
    p = r.ok("prune", "--keep-last", "5", "--json").json
    assert [x["point_id"] for x in p["retained_points"]] == [gone["point_id"]]
    assert p["retained_points"][0]["shredded"]
    # a backup of the shredded source starts a new epoch; repack and verify work around the shredded one
    again = r.backup("--stdin", "--source-name", "gone", input=b"new data")
    assert again["type"] == "full" and again["epoch"] not in (gone["epoch"], stays["epoch"])
    assert r.ok("repack", "--json").json["damaged"] == []
    v = r.ok("verify", "--read-data", "--json").json
    assert v["ok"] and v["shredded_points"] == [gone["point_id"]] and v["points_checked"] == 2


def test_rotation_writes_beside_and_a_shred_destroys_every_kv_version_of_the_epoch(minio, openbao, tmp_path):
    from tests.keys.conftest import run_lifeline
    from tests.keys.test_vault_kv import make_kv

    kv = make_kv(openbao)
    bucket = minio.make_bucket(f"imm-{uuid.uuid4().hex[:12]}")
    env = {**minio.env(), **kv.env}
    r = Repo(f"s3://{bucket}/r", kv.ref, env=env)
    r.ok("init", "--immutable-days", "30")
    point = r.backup("--stdin", input=b"discharge letters")
    s3 = minio.client()
    key = f"r/keys/{point['epoch']}"
    before = s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    rot = run_lifeline("keys", "rotate", "--repo", r.url, "--key", kv.ref, "--json", env=env)
    assert rot.rc == 0, rot.err
    assert [x["epoch"] for x in json.loads(rot.out)["rewrapped"]] == [point["epoch"]]
    forms = sorted(v["Key"] for v in _versions(s3, bucket)[0] if v["Key"].startswith(key))
    assert forms[0] == key and len(forms) == 2 and forms[1].startswith(key + ".")  # beside, not over
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == before
    assert r.ok("restore", point["point_id"], "--to", "-").out == b"discharge letters"

    out = run_lifeline("keys", "shred", "--repo", r.url, "--key", kv.ref, "--epoch", point["epoch"], "--yes",
                       "--destroy-key-version", "--json", env=env)
    assert out.rc == 0, out.err
    result = json.loads(out.out)
    assert result["destroyed_key_versions"] == [1, 2], result  # the original form's version and the rotated one
    # both wrapped forms are still in storage, and neither unwraps: the key service destroyed what did
    assert len([v for v in _versions(s3, bucket)[0] if v["Key"].startswith(key)]) == 2
    res = r.run("restore", point["point_id"], "--to", "-")
    assert res.rc in (3, 4) and res.out == b"", res.err
