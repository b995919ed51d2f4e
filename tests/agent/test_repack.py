"""repack: packs that are mostly garbage after prune are rewritten; crash-safe, exclusive, damage-tolerant.

The sizes asserted here are measured: a pruned history's packs and index against a fresh repository
holding the same trees (docs/maintenance.md quotes them). Repack after prune and kill -9 of a real repack
on every backend: test_every_backend.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lifeline.agent.repack import plan_repack, run_repack
from lifeline.agent.verify import run_check, run_verify
from lifeline.repository.index import Index, PackInfo
from lifeline.repository.layout import pack_name

from .helpers import AGENT, Repo, make_key, repo_root, write_random
from .maintenance_helpers import (MiB, Crash, CrashingBackend, assert_restores, backend_of, clean_env, drop_locks,
                                  fill_history, fresh_size, open_repo, slow_run, stored_bytes)

WITHIN = 1.15  # the brief: after repack, within 15 % of a fresh backup of the kept points
STEPS_FORGOTTEN = 4  # fill_history's pruned points, each leaving one partly used pack


# --- the plan, on its own ------------------------------------------------------------------
def _info(pid: str, *entries: tuple[str, int]) -> PackInfo:
    off, out = 24, []
    for cid, length in entries:
        out.append((cid.encode().ljust(32, b"\0"), off, length, length))
        off += length
    return PackInfo(pid, "e" * 32, off + 40, out)


def test_plan_owners_duplicates_and_threshold():
    c = {n: n.encode().ljust(32, b"\0") for n in ("a1", "a2", "b1", "d1", "m1", "n1", "x")}
    idx = Index()
    packs = [_info("a0", ("a1", 400), ("a2", 400)),  # half dead
             _info("b0", ("b1", 500), ("a1", 400)),  # a1 is a duplicate: a0 owns it
             _info("c0", ("x", 800)),  # nothing live
             _info("d0", ("d1", 800)),  # all live
             _info("e0", ("m1", 100)),  # gone from storage, holds a live chunk no other pack has
             _info("f0", ("n1", 100))]  # gone from storage, nothing live
    idx.add_segment("index/s", "e" * 32, packs)
    stored = {p.pack_id: p.size for p in packs[:4]} | {"90": 1000}  # 90: a pack no segment names
    live = {c[n] for n in ("a1", "b1", "d1", "m1")}

    plan = plan_repack(idx, stored, live, 10.0)
    assert sorted(plan.rewrite) == ["a0", "b0"] and plan.keep == ["d0"] and plan.drop == ["c0"]
    assert plan.orphans == ["90"] and plan.lost == ["e0"] and plan.forget == ["f0"]
    assert [e[0] for e in plan.copy["a0"]] == [c["a1"]]  # copied once, from its owner
    assert [e[0] for e in plan.copy["b0"]] == [c["b1"]]
    assert plan.unused == {"a0": 400, "b0": 400, "c0": 800, "d0": 0}
    # b0 is 400/964 = 41 % unused, a0 400/864 = 46 %: a threshold of 45 % keeps b0 only
    plan = plan_repack(idx, stored, live, 45.0)
    assert plan.rewrite == ["a0"] and sorted(plan.keep) == ["b0", "d0"]
    plan = plan_repack(idx, stored, live, 100.0)  # only what holds nothing live goes
    assert plan.rewrite == [] and plan.drop == ["c0"] and plan.orphans == ["90"]


# --- the measured scenario -----------------------------------------------------------------
def _scenario(r: Repo, tmp_path: Path) -> dict:
    kept = fill_history(r, tmp_path)
    pruned = stored_bytes(r)
    fresh = fresh_size(kept, tmp_path)

    dry = r.ok("repack", "--dry-run", "--json").json
    assert dry["dry_run"] and dry["packs_rewritten"] == STEPS_FORGOTTEN
    assert stored_bytes(r) == pruned  # a dry run changes nothing

    r.ok("repack", "--dry-run")  # the human summary too
    assert r.ok("repack", "--dry-run", "--json", "--max-unused", "100%").json["packs_rewritten"] == 0
    res = r.ok("repack", "--json", "--progress")
    rep = res.json
    assert "packs" in res.err  # the progress line
    after = stored_bytes(r)
    ratio_before = (pruned["data"] + pruned["index"]) / (fresh["data"] + fresh["index"])
    ratio_after = (after["data"] + after["index"]) / (fresh["data"] + fresh["index"])
    print(f"\nrepack sizes (packs + index, bytes): pruned {pruned['data'] + pruned['index']}, "
          f"repacked {after['data'] + after['index']}, fresh {fresh['data'] + fresh['index']}: "
          f"{ratio_before:.3f} -> {ratio_after:.3f} of fresh; all objects {pruned['all']} -> {after['all']} "
          f"(fresh {fresh['all']}); repack took {rep['duration_seconds']} s")
    assert ratio_before > WITHIN  # without repack the pruned history is well over the bound
    assert ratio_after <= WITHIN
    assert after["all"] <= WITHIN * fresh["all"]
    assert rep["packs_rewritten"] == STEPS_FORGOTTEN and rep["packs_written"] >= 1
    assert rep["bytes_before"] == pruned["data"] + pruned["index"]
    assert rep["bytes_after"] == after["data"] + after["index"]
    assert rep["damaged"] == []

    assert_restores(r, kept, tmp_path, "after")
    check = r.ok("check", "--read-data", "--json").json
    assert check["ok"] and check["leftovers"] == {}
    again = r.ok("repack", "--json").json  # converged: nothing left to rewrite
    assert again["packs_rewritten"] == 0 and again["bytes_after"] == rep["bytes_after"]
    return {"pruned": pruned, "after": after, "fresh": fresh}



def test_repack_after_prune(repo: Repo, tmp_path):
    _scenario(repo, tmp_path)


# --- crashes -------------------------------------------------------------------------------
def _template(tmp_path: Path) -> tuple[Repo, dict[str, Path]]:
    r = Repo((tmp_path / "template").as_uri(), make_key(tmp_path / "key"))
    r.ok("init")
    return r, fill_history(r, tmp_path)


def _copy(template: Repo, dest: Path) -> Repo:
    shutil.copytree(repo_root(template), dest)
    return Repo(dest.as_uri(), template.key)


def test_repack_crash_at_every_write(tmp_path):
    """Stop repack before each of its writes and deletes in turn (in this process: storage is left as
    kill -9 leaves it): every kept point still verifies with --read-data, and the next repack completes
    and leaves nothing behind."""
    template, kept = _template(tmp_path)
    counting = CrashingBackend(backend_of(_copy(template, tmp_path / "count")))
    repo, provider = open_repo(template, counting)
    run_repack(repo, provider)
    steps = counting.log
    kinds = [s.split()[0] + " " + s.split()[1].split("/")[0] for s in steps]
    assert kinds[0] == "put locks" and kinds[-1] == "delete locks"
    # the crash-safe order: new packs, then the new index, then old segments, old packs last
    order = [k for k in kinds if "locks" not in k]
    assert order == sorted(order, key=["put data", "put index", "delete index", "delete data"].index), order
    print(f"\nrepack's {len(steps)} writes and deletes, each a crash point: {', '.join(kinds)}")
    for at in range(1, len(steps) + 1):
        r = _copy(template, tmp_path / f"crash{at}")
        repo, provider = open_repo(r, CrashingBackend(backend_of(r), at=at))
        with pytest.raises(Crash):
            run_repack(repo, provider)
        drop_locks(r)
        repo, provider = open_repo(r)
        report = run_verify(repo, provider, None, read_data=True)
        assert not report.damaged, (f"after a crash before {steps[at - 1]}", report.damaged)
        assert report.points_checked == len(kept)
        repo, provider = open_repo(r)
        run_repack(repo, provider)
        repo, provider = open_repo(r)
        check = run_check(repo, provider, read_data=True)
        assert not check.damaged and check.leftovers == {}, (at, check.damaged, check.leftovers)
        shutil.rmtree(repo_root(r))


# --- locks ---------------------------------------------------------------------------------
def test_repack_excludes_backups(repo: Repo, tmp_path):
    kept = fill_history(repo, tmp_path)
    # a running backup holds a shared lock: repack does not start
    proc = subprocess.Popen([*AGENT, "backup", "--stdin", "--source-name", "slow", "--repo", repo.url,
                             "--key", repo.key], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env(repo))
    proc.stdin.write(os.urandom(MiB))
    proc.stdin.flush()
    locks = repo_root(repo) / "locks"
    deadline = time.monotonic() + 30
    while not (locks.exists() and any(locks.iterdir())):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = repo.run("repack", "--lock-wait", "0")
    assert r.rc == 6 and "locked" in r.err and "backup" in r.err
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    # repack (slowed: it holds the exclusive lock for a second or more) and two backups started together:
    # the backups wait for it, or it for them; all finish, and everything restores
    new = tmp_path / "new"
    new.mkdir()
    write_random(new / "g", 2 * MiB)
    rp = slow_run(repo, "repack", "--lock-wait", "60", delay=0.2)
    time.sleep(0.5)
    env = clean_env(repo)
    backups = [subprocess.Popen([*AGENT, "backup", str(tree), "--json", "--source-name", name, "--lock-wait", "60",
                                 "--repo", repo.url, "--key", repo.key],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
               for tree, name in ((list(kept.values())[-1], "src"), (new, "new"))]
    outs = [p.communicate(timeout=120) for p in [rp, *backups]]
    assert [p.returncode for p in (rp, *backups)] == [0, 0, 0], [o[1].decode() for o in outs]
    import json

    kept = {**kept, **{json.loads(o[0])["point_id"]: tree
                       for o, tree in zip(outs[1:], (list(kept.values())[-1], new))}}
    assert_restores(repo, kept, tmp_path, "concurrent")
    check = repo.ok("check", "--read-data", "--json").json
    assert check["ok"] and "unindexed_packs" not in check["leftovers"]


# --- damage --------------------------------------------------------------------------------
def test_damaged_pack_is_named_and_the_rest_repacked(repo: Repo, tmp_path):
    kept = fill_history(repo, tmp_path)
    planned = repo.ok("repack", "--dry-run", "--json").json["rewritten"]
    victim = planned[0]
    path = repo_root(repo) / pack_name(victim)
    data = bytearray(path.read_bytes())
    for pos in range(100, len(data) - 200, 64 * 1024):  # a changed byte in every blob
        data[pos] ^= 0x55
    path.write_bytes(bytes(data))

    r = repo.run("repack", "--json")
    assert r.rc == 3, r.err
    assert pack_name(victim) in r.err and "left as they are" in r.err
    rep = r.json
    assert [d["object"] for d in rep["damaged"]] == [pack_name(victim)]
    assert rep["packs_rewritten"] == len(planned) - 1 and victim not in rep["rewritten"]
    assert path.exists() and all(not (repo_root(repo) / pack_name(p)).exists() for p in rep["rewritten"])
    # the damage is what it was before (the files whose chunks live in that pack), no more
    check = repo.run("check", "--read-data", "--json")
    assert check.rc == 3
    hurt = {d["point"] for d in check.json["damaged"] if d.get("point")}
    assert all(victim in d["error"] for d in check.json["damaged"]), check.json["damaged"]
    assert hurt and hurt != set(kept)
    assert_restores(repo, {p: t for p, t in kept.items() if p not in hurt}, tmp_path, "undamaged")


def test_repack_refuses_on_a_damaged_index(repo: Repo, tmp_path):
    fill_history(repo, tmp_path)
    seg = next((repo_root(repo) / "index").iterdir())
    raw = bytearray(seg.read_bytes())
    raw[30] ^= 1
    seg.write_bytes(bytes(raw))
    before = stored_bytes(repo)
    r = repo.run("repack")
    assert r.rc == 3 and "damaged index segments" in r.err and "rebuild-index" in r.err
    assert stored_bytes(repo) == before
