"""No plaintext data key anywhere the operator side can put one.

A vault-transit backup (full, then incremental) runs through the operator on the real API server,
to a file:// and an s3:// repository, and its points are then deleted under ``deletionPolicy:
Shred``. The plaintext data keys come from this test's own unwrap through OpenBao; then every log
line (caplog, and every Job's Pod log through the API), every Event, every object of the test's
namespace (specs, status, termination messages), the /metrics text and every object of both
repositories are searched for those keys raw, in hex and in base64.
"""
from __future__ import annotations

import base64
import json
import logging
import urllib.request
import uuid

from tests.backup.conftest import clock, fast_timers, key_text, policy, seeded, volumes  # noqa: F401
from tests.keys.conftest import repo_objects
from tests.keys.test_shred_deletion import Transit, _backup, _finalized, points, review, reviewers  # noqa: F401

# What a namespace holds that could carry a key: everything the operator, the agent and the
# controllers write there.
KINDS = ("events", "pods", "jobs", "cronjobs", "configmaps", "secrets", "persistentvolumeclaims",
         "backuppolicies", "recoverypoints", "restores", "restoredrills")


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


def _unwrap_all(vault, transit, wrapped_objects: dict[str, bytes]) -> list[bytes]:
    keys = []
    for name, raw in wrapped_objects.items():
        if not name.startswith("keys/"):
            continue
        wrapped = base64.b64decode(json.loads(raw)["wrapped"]).decode()
        plain = vault.client().secrets.transit.decrypt_data(name=transit.key, ciphertext=wrapped,
                                                            mount_point="transit")["data"]["plaintext"]
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
        kube, seeded, clock, operator_logs_in_to_vault, s3_server, volumes, caplog, reviewers):
    caplog.set_level(logging.DEBUG)
    vault = operator_logs_in_to_vault
    transit = Transit(vault)
    bucket = s3_server.make_bucket(f"ll-{uuid.uuid4().hex[:12]}")
    kube.secret("offsite-s3", {"AWS_ACCESS_KEY_ID": s3_server.access_key,
                               "AWS_SECRET_ACCESS_KEY": s3_server.secret_key})
    body = policy("pacs", encryption={"keyRef": transit.ref}, deletionPolicy="Shred", destinations=[
        {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"}},
        {"name": "offsite", "offSite": True,
         "s3": {"bucket": bucket, "prefix": "pacs", "endpoint": s3_server.endpoint,
                "credentialsSecret": "offsite-s3"}}])
    local_repo = f"file://{volumes['backup-local']}/repos/pacs"

    async with kube.operator(clock=clock) as ctx:
        kube.create(body)
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "pacs-full"), timeout=20)
        await _backup(kube, "pacs-full", 1)
        clock.advance(900)
        (volumes["pacs-data"] / "more.txt").write_text("more data")
        made = await _backup(kube, "pacs-incremental", 2)
        assert all(len(p["spec"]["copies"]) == 2 for p in made.values()), made
        for name in made:
            await _finalized(kube, name)

        # the plaintext data keys, by this test's own unwrap (before the shred destroys them)
        keys = _unwrap_all(vault, transit, repo_objects(local_repo)) + _unwrap_all(vault, transit, {
            k[len("pacs/"):]: v for k, v in _bucket_objects(s3_server, bucket).items()})
        assert len(keys) == 2 and all(len(k) == 32 for k in keys)

        # then delete the points under deletionPolicy Shred: more logs, Events and Jobs to search
        for name in made:
            kube.delete("RecoveryPoint", name)
            review(kube, name)  # asked for, and approved by a second person
        # one shred Job after the other (they share the epoch's key objects); each goes with its point
        await kube.wait_for(lambda: not points(kube), timeout=90)
        assert len(kube.events(reason="Shredded")) == 2, [e["message"] for e in kube.events(reason="ShredFailed")]

        with urllib.request.urlopen(f"http://127.0.0.1:{ctx.health_port}/metrics", timeout=10) as resp:
            metrics = resp.read()
        assert b"lifeline_" in metrics
        objects = [o for kind in KINDS for o in kube.objects(kind)]
        pod_logs = {j["metadata"]["name"]: kube.job_log(j["metadata"]["name"]).encode()
                    for j in kube.objects("jobs")}

    found = {}
    logs = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records).encode()
    found["caplog"] = leaks(logs, keys)
    assert "audit" in logs.decode() and "key-shred" in logs.decode()  # the search saw the audit records
    # the backup Jobs' agents' output (the shred Jobs went with their points, by the garbage collector:
    # what they said reached the operator's log and Events, searched above and below)
    assert len(pod_logs) >= 2 and all(b"point" in log for log in pod_logs.values()), pod_logs
    for job, log in pod_logs.items():
        found[f"log of Job {job}"] = leaks(log, keys)
    terminated = [c for o in objects if o.get("kind") == "Pod" for c in o["status"].get("containerStatuses", [])
                  if (c["state"].get("terminated") or {}).get("message")]
    assert terminated, "the agents' termination messages are searched too"
    events = [o for o in objects if o.get("kind") == "Event"]
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
