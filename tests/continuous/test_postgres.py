"""Continuous protection end to end with a real PostgreSQL.

One primary archives every WAL segment through ``lifeline agent wal-push`` into repository
R1 (archive_timeout = 1 s), and its archive_command also drops the segment into a spool
directory that ``lifeline agent ship`` streams to repository R2. A writer commits one row
after another; R2 is taken away for a while (its path becomes a plain file: every write
fails, even as root) and brought back; then the primary is killed and deleted. The tests
restore from what was shipped and compare with each row's real commit time.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lifeline.keys import create_key_file
from tests.realparts.fixtures import missing
from tests.realparts.ports import wait_for
from tests.realparts.postgres import PostgresServer

from .helpers import store
from .pg import ArchivingPostgres, RestoredPostgres, agent_prefix, chown_postgres, run_agent

RPO = 10.0
WRITE_SECONDS = 12.0  # long enough that "rows older than the RPO" is not an empty set


@dataclass
class Scenario:
    base: Path
    r1: str
    r2: str
    key: str
    bin_dir: Path
    acked: list = field(default_factory=list)  # (id, client time just before commit), acknowledged
    truth: dict = field(default_factory=dict)  # id -> commit time, read from the primary before the kill
    destroyed_at: float = 0.0
    statuses: list = field(default_factory=list)  # the shipper's JSON status lines


def _writer(server: PostgresServer, out: list, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            row = server.psql("postgres", "INSERT INTO t(note) VALUES ('vital signs') "
                                          "RETURNING id, extract(epoch from clock_timestamp());", timeout=10)
        except Exception:  # noqa: BLE001 - the primary was destroyed under us
            return
        i, at = row.strip().split("|")
        out.append((int(i), float(at)))


def _reader(proc: subprocess.Popen, out: list) -> None:
    for line in proc.stdout:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass


def _r2_state(statuses: list) -> dict:
    return statuses[-1]["destinations"][0] if statuses else {}


@pytest.fixture(scope="module")
def scenario():
    ok, reason = PostgresServer.available()
    if not ok:
        missing(reason)
    base = Path(tempfile.mkdtemp(prefix="lifeline-continuous-"))
    os.chmod(base, 0o755)  # the postgres user walks into it
    key = base / "key"
    create_key_file(key)
    r1, r2, spool, state = base / "r1", base / "r2", base / "spool", base / "state"
    spool.mkdir()
    for r in (r1, r2):
        rc = run_agent("init", "--repo", f"file://{r}", "--key", f"file://{key}")
        assert rc.returncode == 0, rc.stderr
    chown_postgres(base)
    sc = Scenario(base, f"file://{r1}", f"file://{r2}", f"file://{key}", Path())
    archive = (f"{agent_prefix()} wal-push %p --repo {sc.r1} --key {sc.key}"
               f" && cp -p %p {spool}/.%f.tmp && mv {spool}/.%f.tmp {spool}/%f")
    primary = ArchivingPostgres(archive)
    ship = None
    stop = threading.Event()
    writer = None
    try:
        primary.start()
        sc.bin_dir = primary.bin_dir
        primary.psql("postgres", "CREATE TABLE t (id serial PRIMARY KEY, note text);")
        rc = run_agent("base-backup", "--repo", sc.r1, "--repo", sc.r2, "--key", sc.key, "--source-name", "icu",
                       "--pg-basebackup", str(primary.bin_dir / "pg_basebackup"), as_postgres=True,
                       env=primary.env())
        assert rc.returncode == 0, rc.stderr
        assert '"action": "backup"' in rc.stderr and '"outcome": "succeeded"' in rc.stderr  # audited
        ship = subprocess.Popen([sys.executable, "-m", "lifeline.agent", "ship", "--dir", str(spool),
                                 "--repo", sc.r2, "--key", sc.key, "--state", str(state), "--interval", "0.2",
                                 "--status-every", "1"], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=_reader, args=(ship, sc.statuses), daemon=True).start()
        writer = threading.Thread(target=_writer, args=(primary, sc.acked, stop), daemon=True)
        writer.start()
        wait_for(lambda: _r2_state(sc.statuses).get("newest_shipped"), 60, "the shipper's first segment")
        # Destination R2 goes away while the database keeps writing ...
        away = r2.with_name("r2.away")
        r2.rename(away)
        r2.write_text("unreachable")
        wait_for(lambda: not _r2_state(sc.statuses).get("up", True) and _r2_state(sc.statuses)["backlog"] >= 3,
                 60, "segments queueing for the unreachable destination")
        r2.unlink()
        away.rename(r2)  # ... and comes back.
        wait_for(lambda: len(sc.acked) > 2 and sc.acked[-1][1] - sc.acked[0][1] >= WRITE_SECONDS, 90,
                 f"{WRITE_SECONDS:g} s of committed rows")
        rows = primary.psql("postgres", "SELECT id, extract(epoch from pg_xact_commit_timestamp(xmin)) FROM t;")
        sc.truth = {int(i): float(t) for i, t in (ln.split("|") for ln in rows.split())}
        sc.destroyed_at = primary.destroy()
        stop.set()
        writer.join(15)
        newest = max(os.listdir(spool))
        wait_for(lambda: _r2_state(sc.statuses).get("newest_shipped") == newest
                 and _r2_state(sc.statuses)["backlog"] == 0, 60, "the shipper to catch up")
        yield sc
    finally:
        stop.set()
        if ship is not None:
            ship.terminate()
            ship.wait(10)
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)


def restore(sc: Scenario, repo: str, target: str, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    dest = sc.base / name
    rc = run_agent("restore-pitr", "--repo", repo, "--key", sc.key, "--target-time", target, str(dest),
                   "--fetch-command", agent_prefix(), "--no-archive", *extra)
    return rc, dest


def recovered(sc: Scenario, dest: Path) -> tuple[dict, str]:
    with RestoredPostgres(dest, sc.bin_dir) as pg:
        pg.wait_promoted()
        rows = pg.psql("SELECT id, extract(epoch from pg_xact_commit_timestamp(xmin)) FROM t;")
        return {int(i): float(t) for i, t in (ln.split("|") for ln in rows.split())}, pg.log()


def is_prefix(ids: set, all_ids: list) -> bool:
    return ids == {i for i in all_ids if i <= max(ids, default=0)}


def test_restore_latest_loses_less_than_the_rpo(scenario):
    sc = scenario
    rc, dest = restore(sc, sc.r1, "latest", "latest")
    assert rc.returncode == 0, rc.stderr + rc.stdout
    rows, _log = recovered(sc, dest)
    acked_ids = sorted(i for i, _ in sc.acked)
    assert rows and is_prefix(set(rows), acked_ids), "recovery must be a prefix of the committed rows"
    lost = [(i, at) for i, at in sc.acked if i not in rows]
    window = sc.destroyed_at - (min(at for _, at in lost) if lost else max(rows.values()))
    print(f"\nloss window {window:.2f} s ({len(lost)} of {len(sc.acked)} acknowledged rows lost)")
    assert all(i in rows for i, at in sc.acked if at < sc.destroyed_at - RPO)
    assert sc.acked[0][1] < sc.destroyed_at - RPO  # the check above covered real rows
    assert window < RPO


def test_restore_to_a_time_recovers_exactly_the_rows_committed_up_to_it(scenario):
    sc = scenario
    ordered = sorted(sc.truth.items(), key=lambda kv: kv[1])
    k = next(j for j in range(len(ordered) // 2, len(ordered) - 1) if ordered[j + 1][1] - ordered[j][1] > 0.004)
    target = (ordered[k][1] + ordered[k + 1][1]) / 2
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(target)) + f".{int(target % 1 * 1e6):06d}Z"
    rc, dest = restore(sc, sc.r1, stamp, "at-t")
    assert rc.returncode == 0, rc.stderr + rc.stdout
    rows, _log = recovered(sc, dest)
    assert set(rows) == {i for i, t in sc.truth.items() if t <= target}


def test_a_destination_that_was_down_received_every_segment_in_order(scenario):
    sc = scenario
    assert any(not s["destinations"][0]["up"] and s["destinations"][0]["backlog"] >= 3 for s in sc.statuses)
    s1, s2 = store(sc.r1, sc.key), store(sc.r2, sc.key)
    names1, names2 = s1.list()["00000001"], s2.list()["00000001"]
    assert names2 and s2.gaps("00000001", names2) == []
    assert set(names1) <= set(names2) | {max(names1)}  # R1 may hold one more: pushed just before the kill
    for n in names2:
        if n in names1:
            assert s1.fetch(n)[1] == s2.fetch(n)[1]
    lags = [s["destinations"][0]["last_segment_lag_seconds"] for s in sc.statuses
            if s["destinations"][0]["up"] and s["destinations"][0]["backlog"] == 0
            and s["destinations"][0]["last_segment_lag_seconds"] is not None]
    assert lags and min(lags) < 5.0


def _closed(st, name: str) -> float:
    return st.read_header(f"wal/00000001/{name}")["closed_at"]


def _break_a_segment(sc: Scenario, how: str, tag: str = "") -> tuple[str, str, Path]:
    """Copy R1, damage one segment in the middle; (repo, damaged name, path of the copy)."""
    copy = sc.base / f"r1-{how}{tag}"
    shutil.copytree(sc.base / "r1", copy)
    chown_postgres(copy)  # restore_command runs as the server's user
    names = store(f"file://{copy}", sc.key).list()["00000001"]
    victim = names[len(names) // 2]
    obj = copy / "wal" / "00000001" / victim
    if how == "missing":
        obj.unlink()
    else:
        raw = bytearray(obj.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        obj.write_bytes(bytes(raw))
    return f"file://{copy}", victim, copy


def _assert_stopped_before(sc: Scenario, rows: dict, repo_copy: str, victim: str) -> None:
    st = store(repo_copy, sc.key)
    names = [n for n in st.list()["00000001"] if n < victim]
    last_good, before = names[-1], names[-2]
    assert is_prefix(set(rows), sorted(sc.truth))
    assert max(rows.values()) <= _closed(st, last_good) + 0.5  # nothing from after the hole
    assert all(i in rows for i, t in sc.truth.items() if t < _closed(st, before) - 0.5)  # all before it


def test_a_missing_segment_stops_recovery_at_the_last_good_point_and_is_named(scenario):
    sc = scenario
    repo, victim, _copy = _break_a_segment(sc, "missing")
    rc, dest = restore(sc, repo, "latest", "gap")
    assert rc.returncode == 3
    assert f"GAP missing 1 segment(s) {victim}" in rc.stdout
    audit = json.loads(next(ln for ln in rc.stderr.splitlines() if "audit {" in ln).split("audit ", 1)[1])
    assert (audit["action"], audit["outcome"], audit["details"]["recovery"]) == ("restore", "succeeded",
                                                                                 "stopped-at-gap")
    rows, _log = recovered(sc, dest)
    _assert_stopped_before(sc, rows, repo, victim)


def test_a_corrupted_segment_stops_recovery_at_the_last_good_point_and_is_named(scenario):
    sc = scenario
    repo, victim, _copy = _break_a_segment(sc, "corrupt")
    rc, dest = restore(sc, repo, "latest", "corrupt", "--verify")
    assert rc.returncode == 3
    assert f"DAMAGED {victim}" in rc.stdout and "authentication failed" in rc.stdout
    rows, log = recovered(sc, dest)
    assert "authentication failed" in log  # restore_command refused it during replay as well
    _assert_stopped_before(sc, rows, repo, victim)


# --- self-contained restores (--prefetch-wal): the database replays with no agent, key or repository
def restore_prefetched(sc: Scenario, repo: str, target: str, name: str, *extra: str):
    dest = sc.base / name
    key_file = sc.key[len("file://"):]  # as a Job mounts it: a file, copied private by the agent
    rc = run_agent("restore-pitr", "--repo", repo, "--key-file", key_file, "--target-time", target, str(dest),
                   "--prefetch-wal", "--no-archive", *extra)
    return rc, dest


def recovered_offline(sc: Scenario, dest: Path, repo_dir: Path) -> tuple[dict, str]:
    """Replay with the repository moved away: only the claim's own copy of the WAL can serve."""
    text = (dest / "postgresql.auto.conf").read_text()
    assert "restore_command = 'cp lifeline-wal/%f %p'" in text
    assert "wal-fetch" not in text and "--key" not in text
    away = repo_dir.with_name(repo_dir.name + ".away")
    repo_dir.rename(away)
    try:
        return recovered(sc, dest)
    finally:
        away.rename(repo_dir)


def test_a_prefetched_restore_to_a_time_replays_offline_exactly_to_it(scenario):
    sc = scenario
    ordered = sorted(sc.truth.items(), key=lambda kv: kv[1])
    k = next(j for j in range(len(ordered) // 2, len(ordered) - 1) if ordered[j + 1][1] - ordered[j][1] > 0.004)
    target = (ordered[k][1] + ordered[k + 1][1]) / 2
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(target)) + f".{int(target % 1 * 1e6):06d}Z"
    rc, dest = restore_prefetched(sc, sc.r1, stamp, "prefetch-at-t", "--json")
    assert rc.returncode == 0, rc.stderr + rc.stdout
    result = json.loads(rc.stdout)
    fetched = sorted(p.name for p in (dest / "lifeline-wal").iterdir())
    assert result["wal"]["prefetched"]["segments"] == len(fetched)
    shipped = [n for n in store(sc.r1, sc.key).list()["00000001"] if n >= result["wal"]["start"]]
    assert fetched == shipped[:len(fetched)] and len(fetched) < len(shipped)  # up to the target, not all
    assert not list(sc.base.glob("prefetch-at-t/**/key"))  # the key copy stayed outside the claim
    rows, log = recovered_offline(sc, dest, sc.base / "r1")
    assert set(rows) == {i for i, t in sc.truth.items() if t <= target}
    assert "restored log file" in log


def test_a_prefetched_restore_to_latest_replays_every_shipped_row_offline(scenario):
    sc = scenario
    rc, dest = restore_prefetched(sc, sc.r1, "latest", "prefetch-latest")
    assert rc.returncode == 0, rc.stderr + rc.stdout
    fetched = sorted(p.name for p in (dest / "lifeline-wal").iterdir())
    assert fetched and fetched == [n for n in store(sc.r1, sc.key).list()["00000001"] if n >= fetched[0]]
    rows, _log = recovered_offline(sc, dest, sc.base / "r1")
    assert rows and is_prefix(set(rows), sorted(sc.truth))
    assert all(i in rows for i, at in sc.acked if at < sc.destroyed_at - RPO)


@pytest.mark.parametrize("how", ["missing", "corrupt"])
def test_a_prefetched_restore_names_the_gap_and_replays_to_the_last_good_segment(scenario, how):
    sc = scenario
    repo, victim, copy = _break_a_segment(sc, how, "-prefetch")
    rc, dest = restore_prefetched(sc, repo, "latest", f"prefetch-{how}")
    assert rc.returncode == 3, rc.stderr + rc.stdout
    if how == "missing":
        assert f"GAP missing 1 segment(s) {victim}" in rc.stdout
    else:
        assert f"DAMAGED {victim}" in rc.stdout and "authentication failed" in rc.stdout
    fetched = sorted(p.name for p in (dest / "lifeline-wal").iterdir())
    assert fetched and max(fetched) < victim  # nothing past the hole, and no damaged bytes in the claim
    rows, _log = recovered_offline(sc, dest, copy)
    _assert_stopped_before(sc, rows, repo, victim)
