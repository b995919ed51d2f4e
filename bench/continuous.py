#!/usr/bin/env python3
"""Continuous protection under a pgbench write load: shipping lag and restore-to-latest loss.

    .venv/bin/python bench/continuous.py [--runs 3] [--seconds 15] [--mode push|ship|both]

Per run: a fresh PostgreSQL 15 primary (16 MiB WAL segments by default, ``archive_timeout = 1s``), a
base backup, then ``pgbench -c 2`` (TPC-B-like writes) for ``--seconds``; the primary is
killed (SIGKILL, data directory deleted) while pgbench is still writing, and the newest
base backup plus the shipped WAL is restored with ``restore-pitr --target-time latest``.

* mode ``push``: ``archive_command = lifeline agent wal-push %p`` (synchronous);
* mode ``ship``: ``archive_command`` copies into a spool directory and ``lifeline agent ship``
  streams it (the Deployment's way); at the destruction the shipper dies too (site loss).

Shipping lag = time the segment reached the repository minus the time PostgreSQL closed it
(read from every stored segment's header). Loss window = destruction time minus the newest
transaction found in the restored ``pgbench_history`` (its ``mtime`` is the transaction's
start). The peer is the objective itself: tier A allows 10 s.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lifeline.keys import create_key_file  # noqa: E402
from tests.continuous.helpers import store  # noqa: E402
from tests.continuous.pg import (ArchivingPostgres, RestoredPostgres, agent_prefix, as_postgres_kwargs,  # noqa: E402
                                 chown_postgres, run_agent)
from tests.realparts.ports import wait_for  # noqa: E402
from tests.realparts.postgres import PostgresServer  # noqa: E402


def one_run(mode: str, seconds: float, segment_mib: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="lifeline-bench-continuous-"))
    os.chmod(base, 0o755)
    key, repo, spool, state = base / "key", base / "repo", base / "spool", base / "state"
    create_key_file(key)
    spool.mkdir()
    rc = run_agent("init", "--repo", f"file://{repo}", "--key", f"file://{key}")
    assert rc.returncode == 0, rc.stderr
    chown_postgres(base)
    url, key_ref = f"file://{repo}", f"file://{key}"
    if mode == "push":
        archive = f"{agent_prefix()} wal-push %p --repo {url} --key {key_ref}"
    else:
        archive = f"cp -p %p {spool}/.%f.tmp && mv {spool}/.%f.tmp {spool}/%f"
    primary = ArchivingPostgres(archive, wal_segment_mib=segment_mib)
    ship = bench = None
    try:
        primary.start()
        env = {**os.environ, **primary.env()}
        pgbench = str(primary.bin_dir / "pgbench")
        subprocess.run([pgbench, "-i", "-s", "2", "-q", "postgres"], env=env, check=True, capture_output=True)
        rc = run_agent("base-backup", "--repo", url, "--key", key_ref, "--source-name", "bench",
                       "--pg-basebackup", str(primary.bin_dir / "pg_basebackup"), as_postgres=True, env=primary.env())
        assert rc.returncode == 0, rc.stderr
        if mode == "ship":
            # as the database's user, like the Deployment (the repository stays readable to its restore_command)
            ship = subprocess.Popen([*shlex.split(agent_prefix()), "ship", "--dir", str(spool), "--repo", url,
                                     "--key", key_ref, "--state", str(state), "--interval", "0.2"],
                                    stdout=subprocess.DEVNULL, cwd="/", **as_postgres_kwargs())
        bench = subprocess.Popen([pgbench, "-c", "2", "-j", "1", "-T", str(int(seconds) + 30), "-n", "postgres"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.time()
        wait_for(lambda: time.time() - started >= seconds, seconds + 5, "the write load", interval=0.2)
        if ship is not None:  # the whole site is lost at once: database and shipper
            ship.kill()
        destroyed = primary.destroy()
        bench.wait(30)
        s = store(url, key_ref)
        names = s.list().get("00000001", [])
        lags = []
        for n in names:
            h = s.read_header(f"wal/00000001/{n}")
            if h["closed_at"] >= started:  # segments written under the load (not the setup's backlog)
                lags.append(h["pushed_at"] - h["closed_at"])
        dest = base / "restored"
        rc = run_agent("restore-pitr", "--repo", url, "--key", key_ref, "--target-time", "latest", str(dest),
                       "--fetch-command", agent_prefix(), "--no-archive")
        assert rc.returncode == 0, rc.stderr + rc.stdout
        t0 = time.time()
        with RestoredPostgres(dest, primary.bin_dir) as pg:
            pg.wait_promoted(180)
            replay = time.time() - t0
            newest_tx = float(pg.psql("SELECT extract(epoch from max(mtime)) FROM pgbench_history").strip())
            tx = int(pg.psql("SELECT count(*) FROM pgbench_history").strip())
        return {"mode": mode, "segments": len(names), "lag_median": statistics.median(lags), "lag_worst": max(lags),
                "loss_window": destroyed - newest_tx, "transactions_recovered": tx, "replay_seconds": replay}
    finally:
        for p in (bench, ship):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--mode", choices=["push", "ship", "both"], default="both")
    ap.add_argument("--segment-mib", type=int, default=16, help="WAL segment size (initdb --wal-segsize)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ok, reason = PostgresServer.available()
    if not ok or not (PostgresServer().bin_dir / "pgbench").exists():
        print(f"cannot run: {reason or 'pgbench missing (Debian postgresql ships it)'}", file=sys.stderr)
        return 2
    modes = ["push", "ship"] if args.mode == "both" else [args.mode]
    results = []
    for mode in modes:
        for i in range(args.runs):
            r = one_run(mode, args.seconds, args.segment_mib)
            results.append(r)
            print(f"{mode} run {i + 1}: {r['segments']} segments, lag median {r['lag_median']:.2f} s, "
                  f"worst {r['lag_worst']:.2f} s; loss window {r['loss_window']:.2f} s; "
                  f"{r['transactions_recovered']} transactions recovered, replay {r['replay_seconds']:.1f} s",
                  flush=True)
    print("\nmode  runs  lag median  lag worst  loss window median  loss window worst")
    for mode in modes:
        rs = [r for r in results if r["mode"] == mode]
        print(f"{mode:5} {len(rs):5}  {statistics.median(r['lag_median'] for r in rs):9.2f}s "
              f"{max(r['lag_worst'] for r in rs):9.2f}s  {statistics.median(r['loss_window'] for r in rs):17.2f}s "
              f"{max(r['loss_window'] for r in rs):16.2f}s")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
