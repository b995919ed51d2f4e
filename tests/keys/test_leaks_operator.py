"""No plaintext data key anywhere the operator side can put one.

A vault-transit backup (full, then incremental) runs through the operator in the emulator, to a
file:// and an s3:// repository, and its points are then deleted under ``deletionPolicy: Shred``.
The plaintext data keys come from this test's own unwrap through OpenBao; then every log line
(caplog, and every agent's stdout/stderr and termination message under the job runner's pods
directory), every Event, every object's spec and status in the emulator, the /metrics text and
every object of both repositories are searched for those keys raw, in hex and in base64.
"""
from __future__ import annotations

import base64
import json
import logging
import urllib.request
import uuid

from lifeline.keys import health
from tests.backup.conftest import (NS, api, clock, cluster, emulator, fast_timers,  # noqa: F401
                                   key_text, policy, runner, seed_secret, volumes)
from tests.integration.operator_harness import running_operator
from tests.keys.conftest import make_transit, repo_objects
from tests.keys.test_shred_deletion import _backup, _finalized, points


def forms(key: bytes) -> list[bytes]:
    """The ways a 32-byte key could be written down."""
    b64 = base64.b64encode(key)
    url = base64.urlsafe_b64encode(key)
    return [key, key.hex().encode(), key.hex().upper().encode(), b64, b64.rstrip(b"="), url, url.rstrip(b"=")]


def leaks(blob: bytes, keys: list[bytes]) -> list[str]:
    return [f"key {i} as {('raw', 'hex', 'HEX', 'base64', 'base64 unpadded', 'base64url', 'base64url unpadded')[j]}"
            for i, k in enumerate(keys) for j, f in enumerate(forms(k)) if f in blob]


def test_the_search_finds_a_key_in_every_form():
    key = bytes(range(32))
    for form in forms(key):
        assert leaks(b"log line: " + form + b" end", [key])
    assert not leaks(b"nothing here", [key])


def _unwrap_all(transit, wrapped_objects: dict[str, bytes]) -> list[bytes]:
    keys = []
    for name, raw in wrapped_objects.items():
        if not name.startswith("keys/"):
            continue
        wrapped = base64.b64decode(json.loads(raw)["wrapped"]).decode()
        plain = transit.client.secrets.transit.decrypt_data(name=transit.key, ciphertext=wrapped,
                                                            mount_point=transit.mount)["data"]["plaintext"]
        keys.append(base64.b64decode(plain))
    return keys


def _bucket_objects(s3_server, bucket: str) -> dict[str, bytes]:
    client = s3_server.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents") or []:
            out[o["Key"]] = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


async def test_no_plaintext_data_key_in_logs_events_objects_metrics_or_repositories(
        emulator, kubeconfig, api, cluster, runner, clock, openbao, s3_server, volumes, monkeypatch, caplog,
        tmp_path):
    caplog.set_level(logging.DEBUG)
    transit = make_transit(openbao)
    health.clear_cache()
    monkeypatch.setenv("VAULT_ADDR", transit.addr)
    monkeypatch.setenv("VAULT_TOKEN", transit.token)
    runner.env["VAULT_TOKEN"] = transit.token
    bucket = s3_server.make_bucket(f"ll-{uuid.uuid4().hex[:12]}")
    seed_secret(emulator, "offsite-s3", {"AWS_ACCESS_KEY_ID": s3_server.access_key,
                                          "AWS_SECRET_ACCESS_KEY": s3_server.secret_key})
    body = policy("pacs", encryption={"keyRef": transit.ref}, deletionPolicy="Shred", destinations=[
        {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"}},
        {"name": "offsite", "offSite": True,
         "s3": {"bucket": bucket, "prefix": "pacs", "endpoint": s3_server.endpoint,
                "credentialsSecret": "offsite-s3"}}])
    local_repo = f"file://{volumes['backup-local']}/repos/pacs"

    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(body)
        await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "pacs-full"), timeout=20)
        await _backup(emulator, runner, "pacs-full", 1)
        clock.advance(900)
        (volumes["pacs-data"] / "more.txt").write_text("more data")
        made = await _backup(emulator, runner, "pacs-incremental", 2)
        assert all(len(p["spec"]["copies"]) == 2 for p in made.values()), made
        for name in made:
            await _finalized(emulator, name)

        # the plaintext data keys, by this test's own unwrap (before the shred destroys them)
        keys = _unwrap_all(transit, repo_objects(local_repo)) + _unwrap_all(transit, {
            k[len("pacs/"):]: v for k, v in _bucket_objects(s3_server, bucket).items()})
        assert len(keys) == 2 and all(len(k) == 32 for k in keys)

        # then delete the points under deletionPolicy Shred: more logs, Events and Jobs to search
        for name in made:
            await api.delete("RecoveryPoint", name)
        for _ in range(4):
            if not points(emulator):
                break
            await emulator.wait_for(lambda: not points(emulator) or [
                o for (r, _, _), o in emulator._objects_of() if r.plural == "jobs"
                and "dr.lifeline.io/shred-for" in (o["metadata"].get("labels") or {})
                and not (o.get("status") or {}).get("startTime")], timeout=20)
            await runner.run_pending(NS, "dr.lifeline.io/shred-for")
        await emulator.wait_for(lambda: not points(emulator), timeout=20)

        with urllib.request.urlopen(f"http://127.0.0.1:{ctx.health_port}/metrics", timeout=10) as resp:
            metrics = resp.read()
        assert b"lifeline_" in metrics
        objects = [o for _, o in emulator._objects_of()]

    found = {}
    logs = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records).encode()
    found["caplog"] = leaks(logs, keys)
    assert "audit" in logs.decode() and "key-shred" in logs.decode()  # the search saw the audit records
    pods = [p for p in (tmp_path / "pods").rglob("*") if p.is_file()]
    assert any(p.read_bytes().strip() for p in pods)  # agent output and termination messages are there
    for path in pods:
        found[f"pod file {path.relative_to(tmp_path)}"] = leaks(path.read_bytes(), keys)
    events = [o for o in objects if o.get("kind") == "Event" or "involvedObject" in o]
    assert events
    found["events"] = leaks(json.dumps(events).encode(), keys)
    for o in objects:
        meta = o.get("metadata") or {}
        found[f"object {o.get('kind')} {meta.get('namespace')}/{meta.get('name')}"] = leaks(
            json.dumps(o).encode(), keys)
    found["/metrics"] = leaks(metrics, keys)
    for name, data in repo_objects(local_repo).items():
        found[f"file repo {name}"] = leaks(data, keys)
    for name, data in _bucket_objects(s3_server, bucket).items():
        found[f"s3 repo {name}"] = leaks(data, keys)
    assert len(found) > 20
    assert not {where: what for where, what in found.items() if what}
