"""Failing safe: Vault stopped in the middle of a backup; no plaintext data key anywhere."""
from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.agent.helpers import AGENT, Repo
from tests.realparts.openbao import OpenBaoServer

from .conftest import make_transit, repo_objects, run_lifeline

MARKER = b"PATIENT-7781-CONFIDENTIAL "


@pytest.fixture
def second_openbao(openbao):  # depends on the session server only to share its skip logic
    with OpenBaoServer() as server:
        yield server


def test_vault_stopped_mid_backup_publishes_nothing_and_next_backup_works(second_openbao, tmp_path):
    t = make_transit(second_openbao)
    env = {**t.env, "LIFELINE_VAULT_TIMEOUT": "1", "LIFELINE_VAULT_RETRIES": "2"}
    repo = Repo("file://" + str(tmp_path / "repo"), t.ref, env=env)
    repo.ok("init")
    (tmp_path / "part1").write_bytes(MARKER * 40_000 + os.urandom(500_000))
    (tmp_path / "part2").write_bytes(os.urandom(500_000) + MARKER * 40_000)
    cmd = (f"sh -c 'cat {tmp_path}/part1; touch {tmp_path}/ready; "
           f"while [ ! -e {tmp_path}/go ]; do sleep 0.02; done; cat {tmp_path}/part2'")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LIFELINE_", "VAULT_", "BAO_"))}
    proc = subprocess.Popen([*AGENT, "backup", "--repo", repo.url, "--key", t.ref, "--json", "--command", cmd],
                            env={**full_env, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pid = second_openbao._child.pid
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(pid, signal.SIGSTOP)  # Vault stops answering in the middle of the backup
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    err = err.decode()
    assert proc.returncode == 4, err
    assert "the backup was not published" in err and f"cannot reach Vault at {t.addr}" in err, err
    assert "Traceback" not in err and out == b""
    objs = repo_objects(repo.url)
    assert not [k for k in objs if k.startswith("points/")]
    assert all(MARKER not in v for v in objs.values())  # nothing written in the clear
    assert any(k.startswith("data/") for k in objs)  # packs were written, sealed, and stay unreferenced

    # Vault is back: the next backup works and restores
    s = repo.backup("--command", f"cat {tmp_path}/part1 {tmp_path}/part2")
    assert s["type"] == "full"
    r = repo.ok("restore", s["point_id"], "--to", "-")
    assert r.out == (tmp_path / "part1").read_bytes() + (tmp_path / "part2").read_bytes()
    r = repo.ok("check")
    assert "leftover" in r.text  # what the failed backup left is reported, and prune removes it


def _key_forms(dek: bytes) -> list[bytes]:
    return [dek, dek.hex().encode(), dek.hex().upper().encode(), base64.b64encode(dek),
            base64.urlsafe_b64encode(dek).rstrip(b"="), base64.b64encode(dek).rstrip(b"=")]


def test_plaintext_data_keys_appear_nowhere(vault_repo, tmp_path, transit, s3_server):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(200_000))
    outputs: list[bytes] = []
    r = vault_repo.ok("backup", "--json", "--type", "full", src, "--progress")
    outputs += [r.out, r.err.encode()]
    (src / "g").write_bytes(b"more")
    r = vault_repo.ok("backup", "--json", src)
    outputs += [r.out, r.err.encode()]
    r = vault_repo.ok("restore", "latest", "--to", tmp_path / "out", "--json")
    outputs += [r.out, r.err.encode()]
    r = vault_repo.ok("verify", "--read-data", "--json")
    outputs += [r.out, r.err.encode()]
    for args in (("rotate", "--json"), ("check", "--json")):
        extra = ("--repo", vault_repo.url) if args[0] == "rotate" else ()
        r = run_lifeline("keys", *args, *extra, "--key", transit.ref, env=transit.env)
        assert r.rc == 0, r.err
        outputs += [r.out, r.err.encode()]
    # s3 too: the objects as the bucket holds them
    import uuid

    bucket = s3_server.make_bucket(f"ll-{uuid.uuid4().hex[:12]}")
    s3repo = Repo(f"s3://{bucket}/p", transit.ref, env={**s3_server.env(), **transit.env})
    s3repo.ok("init")
    r = s3repo.ok("backup", "--json", src)
    outputs += [r.out, r.err.encode()]
    c = s3_server.client()
    s3_objects = {o["Key"]: c.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                  for o in c.list_objects_v2(Bucket=bucket)["Contents"]}

    objs = repo_objects(vault_repo.url)
    stored = list(objs.values()) + list(s3_objects.values())
    deks = []
    for blob in [v for k, v in objs.items() if k.startswith("keys/")] + \
                [v for k, v in s3_objects.items() if "/keys/" in k]:
        wrapped = base64.b64decode(json.loads(blob)["wrapped"]).decode()
        plain = transit.client.secrets.transit.decrypt_data(name=transit.key, ciphertext=wrapped,
                                                            mount_point=transit.mount)["data"]["plaintext"]
        deks.append(base64.b64decode(plain))
    assert len(deks) == 2 and all(len(d) == 32 for d in deks)
    assert json.loads(outputs[0])["key_ref"] == transit.ref  # the summary names the key, never holds it
    for dek in deks:
        for form in _key_forms(dek):
            for i, o in enumerate(outputs):
                assert form not in o, f"data key found in command output #{i}"
            for name, v in {**objs, **s3_objects}.items():
                assert form not in v, f"data key found in object {name}"
    assert stored
