"""The same tests on every backend (issue #18): file://, s3:// (moto), azure:// (Azurite) and gs://
(fake-gcs-server). Backup, restore, verify, prune, repack and rebuild-index, and kill -9 in the middle
of a backup, a prune and a repack, each followed by a run that completes.

A kill lands at a seeded random one of the run's writes and deletes: the same command first runs to
the end on a copy of the repository, counting them (tests/agent/slow_agent.py logs them), then on the
repository itself, where the process SIGKILLs itself a seeded random fraction of a (slowed) write after
the chosen one starts — before it reaches storage, while it is in flight or just after, with the other
threads' writes wherever they are. ``LIFELINE_TEST_SEED`` repeats a run's moments; a failure names them.

What only one backend has (its credentials, its error messages, exclusive and multipart puts, S3's
flags, Object Lock) stays in that backend's own file."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from .helpers import AGENT, Repo, make_key, write_random
from .maintenance_helpers import (MiB, assert_restores, backend_of, clean_env, fill_history, slow_run,
                                  stored_bytes)
from .test_roundtrip import backup_change_restore

pytestmark = pytest.mark.slow

BACKENDS = ["file", "s3", "azure", "gs"]
DELAY = 0.05  # seconds added to every write and delete of a run that is to be killed
PRUNABLE = {"temporary_files", "stale_locks", "unindexed_packs", "unreferenced_packs", "unused_epoch_keys"}
SEED = int(os.environ.get("LIFELINE_TEST_SEED", time.time_ns() % 10**9))


@dataclass
class Store:
    """One backend's empty bucket (container, directory) and how to reach it."""
    kind: str
    base: str  # URL of the bucket; a repository is base/prefix
    env: dict
    key: str
    objects: Callable[[], list[str]]  # every object's name in the bucket, as the service lists it
    secrets: list[str]  # what must never reach an output

    def repo(self, prefix: str, *, init: bool = True) -> Repo:
        r = Repo(f"{self.base}/{prefix}", self.key, env=self.env)
        if init:
            assert r.ok("init", "--json").json["repository"] == r.url
        return r


def _s3(request, name: str) -> Store:
    s3 = request.getfixturevalue("s3_server")
    s3.make_bucket(name)
    client = s3.client()

    def objects():
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    return Store("s3", f"s3://{name}", s3.env(), "", objects, [s3.secret_key, s3.access_key])


def _azure(request, name: str) -> Store:
    from azure.storage.blob import BlobServiceClient

    from tests.realparts.azurite import ACCOUNT, KEY

    azurite = request.getfixturevalue("azurite")
    azurite.make_container(name)
    client = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={azurite.endpoint}")
    return Store("azure", f"azure://{name}", azurite.env(), "",
                 lambda: sorted(b.name for b in client.get_container_client(name).list_blobs()), [KEY])


def _gs(request, name: str) -> Store:
    from .test_gcs import secret_lines

    fake_gcs = request.getfixturevalue("fake_gcs")
    fake_gcs.make_bucket(name)
    return Store("gs", f"gs://{name}", fake_gcs.env(), "", lambda: fake_gcs.objects(name),
                 secret_lines(fake_gcs.private_key) + ["PRIVATE KEY"])


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> Store:
    """An empty bucket on each backend in turn; a backend whose server is not installed skips (fails under CI)
    as the real parts' fixtures do."""
    name = f"ll-{uuid.uuid4().hex[:12]}"
    if request.param == "file":
        root = tmp_path / "bucket"
        root.mkdir()
        s = Store("file", root.as_uri(), {}, "",
                  lambda: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()), [])
    else:
        s = {"s3": _s3, "azure": _azure, "gs": _gs}[request.param](request, name)
    s.key = make_key(tmp_path / "key")
    return s


def assert_no_secret(store: Store, *texts) -> None:
    for text in texts:
        text = text if isinstance(text, str) else repr(text)
        leaked = [s for s in store.secrets if s in text]
        assert not leaked, f"a credential reached {text[:300]!r}"


# --- (1) the round trip ------------------------------------------------------------------------
def test_round_trip(store: Store, tmp_path):
    """A full backup, an incremental after a change, its restore byte for byte, verify --read-data;
    nothing but the repository's objects in the bucket, under its prefix; no credential in any output."""
    r = store.repo("team/repo")
    src = tmp_path / "src"
    s1, s2 = backup_change_restore(r, src, tmp_path / "out", big=0, sparse=8 * MiB)
    assert s1["type"] == "full" and s2["type"] == "incremental"
    assert s1["repository"] == s2["repository"] == r.url
    assert s2["files_unchanged"] == s2["files"] - 1
    first = r.ok("restore", s1["point_id"], "--to", "-", "--path", "text.log")  # the older point, one file
    assert first.out == (src / "text.log").read_bytes()
    points = r.ok("points", "--json")
    assert [p["point_id"] for p in points.json["points"]] == [s1["point_id"], s2["point_id"]]
    check = r.ok("check", "--json")  # backup_change_restore read the data back with verify --read-data
    assert check.json["ok"] and check.json["leftovers"] == {}, check.json
    assert_no_secret(store, s1, s2, points.text, points.err, check.text, check.err, first.err)

    names = store.objects()
    assert names and all(n.startswith("team/repo/") for n in names), names
    assert any(n.startswith("team/repo/data/") for n in names)
    assert not any(n.startswith("team/repo/locks/") for n in names), names


# --- (2) prune, repack; (3) rebuild-index ----------------------------------------------------------
def test_prune_repack_rebuild_index(store: Store, tmp_path):
    """fill_history's pruned history (half the points forgotten, their packs partly garbage): repack
    rewrites those packs, everything verifies with the data read back and every kept point restores.
    Then every index object is deleted: verify names what is missing, rebuild-index recreates the index
    from the packs, and again everything verifies and restores."""
    r = store.repo("r")
    kept = fill_history(r, tmp_path)  # asserts what prune --keep-daily 4 forgot
    before = stored_bytes(r)
    rep = r.ok("repack", "--json").json
    assert rep["packs_rewritten"] == 4 and rep["damaged"] == [], rep
    after = stored_bytes(r)
    assert after["data"] < before["data"] and rep["bytes_after"] == after["data"] + after["index"]
    v = r.ok("verify", "--read-data", "--json").json
    assert v["ok"] and v["points_checked"] == len(kept), v
    assert_restores(r, kept, tmp_path, "repacked")
    check = r.ok("check", "--json").json
    assert check["ok"] and check["leftovers"] == {}, check

    b = backend_of(r)
    packs = len(b.list("data/"))
    index = [o.name for o in b.list("index/")]
    assert index
    for name in index:
        b.delete(name)
    missing = r.run("verify", "--json")
    assert missing.rc == 3 and "missing from the index" in missing.text, (missing.rc, missing.err)
    rb = r.ok("rebuild-index", "--json").json
    assert rb["packs_read"] == rb["packs_indexed"] == packs and rb["damaged"] == [], rb
    assert rb["index_segments_before"] == 0 and rb["index_segments_written"] >= 1
    check = r.ok("check", "--read-data", "--json").json  # every chunk of every point found and read back
    assert check["ok"] and check["leftovers"] == {} and check["points_checked"] == len(kept), check


# --- (4) kill -9 ---------------------------------------------------------------------------------
def copy_repo(src: Repo, dest: Repo) -> None:
    """Every object of ``src`` (leftover temporary files too) into the empty ``dest``."""
    a, b = backend_of(src), backend_of(dest, create=True)
    for o in a.list("") + a.list_temporaries():
        b.put(o.name, a.get(o.name))


def points(r: Repo) -> list[str]:
    return [p["point_id"] for p in r.ok("points", "--json").json["points"]]


class Killer:
    """Runs an agent command to the end on a copy of a repository, counting its writes and deletes, then
    on the repository itself, killed -9 at a seeded random one of them."""

    def __init__(self, store: Store, tmp_path: Path):
        self.store, self.tmp = store, tmp_path
        self.rng = random.Random(f"{SEED}-{store.kind}")
        self.said: list[str] = []

    def __call__(self, r: Repo, phase: str, *args) -> tuple[Repo, dict]:
        """(the copy the command completed on, its --json report)."""
        copy = self.store.repo(f"{phase}-copy", init=False)
        copy_repo(r, copy)
        log = self.tmp / f"{phase}-writes.log"
        done = slow_run(copy, *args, "--json", delay=0, env={"LIFELINE_TEST_WRITE_LOG": log})
        out, err = done.communicate(timeout=240)
        assert done.returncode == 0, err.decode()
        writes = log.read_text().splitlines()
        at, after = self.rng.randint(1, len(writes)), self.rng.uniform(0, 2 * DELAY)
        self.said.append(f"{phase}: killed {after:.3f} s after write {at} of {len(writes)} started "
                         f"({writes[at - 1]})")
        killed = slow_run(r, *args, delay=DELAY, env={"LIFELINE_TEST_KILL_AT": at, "LIFELINE_TEST_KILL_AFTER": after})
        _out, kerr = killed.communicate(timeout=240)
        assert killed.returncode == -signal.SIGKILL, (self.where, killed.returncode, kerr.decode())
        return copy, json.loads(out)

    @property
    def where(self) -> str:
        return f"{self.store.kind}, LIFELINE_TEST_SEED={SEED}: " + "; ".join(self.said)

    def consistent(self, r: Repo) -> dict:
        """check after a kill: no damage; leftovers only of the kinds prune removes."""
        c = r.run("check", "--json")
        assert c.rc == 0 and c.json["ok"], (self.where, c.err, c.text[:3000])
        assert set(c.json["leftovers"]) <= PRUNABLE, (self.where, c.json["leftovers"])
        return c.json


def _restore_all(r: Repo, trees: dict[str, Path], tmp_path: Path, tag: str, where: str) -> None:
    listed = points(r)
    assert set(listed) <= set(trees), (where, set(listed) - set(trees))
    assert_restores(r, {pid: trees[pid] for pid in listed}, tmp_path, tag)


def test_kill_9_backup_prune_repack(store: Store, tmp_path):
    """kill -9 of a backup, then of a prune, then of a repack, each at a seeded random one of its writes:
    after each, check finds no damage and only leftovers prune removes; the next run completes (for the
    backup, two backups at once), check --read-data is then clean, and every published point restores."""
    r = store.repo("r")
    trees = fill_history(r, tmp_path, prune=False)  # eight points over four days, no prune yet
    kill = Killer(store, tmp_path)
    src = tmp_path / "src"

    # a full backup (a new key epoch) killed; then two backups at once complete
    write_random(src / "big", 4 * MiB)
    write_random(src / "f0", MiB)
    state = tmp_path / "states" / "killed"
    shutil.copytree(src, state, copy_function=shutil.copy2)
    before = set(points(r))
    kill(r, "backup", "backup", str(src), "--type", "full", "--source-name", "src")
    kill.consistent(r)
    published = set(points(r)) - before
    assert len(published) <= 1, (kill.where, published)
    trees.update({pid: state for pid in published})
    other = tmp_path / "other"
    other.mkdir()
    write_random(other / "o", 2 * MiB)
    (other / "small").write_bytes(b"a small file" * 100)
    env = clean_env(r)
    procs = [subprocess.Popen([*AGENT, "backup", str(tree), "--json", "--source-name", name,
                               "--repo", r.url, "--key", r.key], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for tree, name in ((src, "src"), (other, "other"))]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], (kill.where, [o[1].decode() for o in outs])
    new = {json.loads(o[0])["point_id"]: tree for o, tree in zip(outs, (state, other))}
    trees.update(new)
    assert_restores(r, {pid: trees[pid] for pid in published}, tmp_path, "killed")  # prune forgets it

    # prune --keep-daily 4 killed; run again, it forgets what it would have and leaves nothing behind
    copy, planned = kill(r, "prune", "prune", "--keep-daily", "4")
    assert planned["forget"], planned
    kill.consistent(r)
    again = r.ok("prune", "--keep-daily", "4", "--json").json
    assert set(points(r)) == {k["point_id"] for k in planned["keep"]} == {k["point_id"] for k in again["keep"]}, \
        kill.where
    check = r.ok("check", "--read-data", "--json").json
    assert check["ok"] and check["leftovers"] == {}, (kill.where, check)

    # repack killed; every point still verifies, the next repack completes to what one clean run leaves
    copy, planned = kill(r, "repack", "repack")
    assert planned["packs_rewritten"] >= 1, planned
    v = r.run("verify", "--read-data", "--json")
    assert v.rc == 0 and v.json["ok"], (kill.where, v.err, v.text[:3000])
    kill.consistent(r)
    r.ok("repack")
    check = r.ok("check", "--read-data", "--json").json
    assert check["ok"] and check["leftovers"] == {}, (kill.where, check)
    size, clean = stored_bytes(r), stored_bytes(copy)
    assert size["data"] + size["index"] <= 1.15 * (clean["data"] + clean["index"]), (kill.where, size, clean)
    _restore_all(r, trees, tmp_path, "repack", kill.where)
    print(kill.where)
