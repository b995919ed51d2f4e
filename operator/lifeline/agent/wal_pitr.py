"""PostgreSQL base backups and point-in-time restore on top of shipped WAL.

``base-backup`` runs ``pg_basebackup -Fp -X fetch`` into a private temporary directory (so
the copy is consistent on its own) and stores it as an ordinary recovery point tagged
``base-backup`` and ``wal-start=<segment>``. ``restore-pitr`` restores the newest base
backup that finished before the target time, checks the shipped WAL after it for holes
(and, with ``--verify``, authenticates every segment), and writes the recovery settings
(``restore_command`` calling ``wal-fetch``, ``recovery_target_time``, ``recovery.signal``),
so that starting PostgreSQL on the directory replays to the target. When the WAL has a
hole or a damaged segment before the target, recovery can only reach the last good
segment: the settings then recover to the end of the good WAL and the command says which
segments are missing, and exits 3.

With ``prefetch`` (``--prefetch-wal``) the restored directory is self-contained: every segment
recovery needs is fetched and authenticated now into ``<dest>/lifeline-wal/``, and
``restore_command`` is a plain ``cp`` from there, so the database pod that starts on it later
needs no agent, no repository access and no key.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from lifeline.errors import LifelineError, UsageError
from lifeline.repository.errors import DamagedData, PointNotFound
from lifeline.repository.repo import parse_rfc3339
from lifeline.repository.segments import SegmentStore, parse_name

from .backup import dir_source, run_backup
from .restore import Restorer
from .wal import fetch

BASE_TAG = "base-backup"
PREFETCH_DIR = "lifeline-wal"  # inside the data directory; named relative to it (see PREFETCH_COMMAND)
# PostgreSQL runs restore_command in the data directory, so a relative path works wherever the
# claim is mounted later (the restore Job's /target/pgdata is not the database pod's path).
PREFETCH_COMMAND = f"cp {PREFETCH_DIR}/%f %p"
PREFETCH_PAST_TARGET = 1  # segments fetched after the first one closed past the target (see _Prefetcher)
START_TAG = "wal-start="
_LABEL_START = re.compile(r"START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)")


def wal_start_of(label_text: str) -> str | None:
    m = _LABEL_START.search(label_text)
    return m.group(1) if m else None


# --- base backups -------------------------------------------------------------------------
def base_backup(stores: list[SegmentStore], *, pg_basebackup: str = "pg_basebackup", extra: list[str] | None = None,
                source_name: str | None = None, kind: str = "full", work_dir: str | None = None,
                notice=None) -> list[dict]:
    tmp = tempfile.mkdtemp(prefix="lifeline-basebackup-", dir=work_dir)
    data = os.path.join(tmp, "data")
    try:
        argv = [pg_basebackup, "-D", data, "-Fp", "-X", "fetch", "--checkpoint=fast", "--no-sync",
                *(extra or [])]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LifelineError(f"pg_basebackup failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        with open(os.path.join(data, "backup_label")) as f:
            start = wal_start_of(f.read())
        if start is None:
            raise LifelineError("pg_basebackup wrote no usable backup_label (START WAL LOCATION missing)")
        name = source_name or f"postgresql:{os.environ.get('PGHOST', 'local')}:{os.environ.get('PGPORT', '5432')}"
        out = []
        for store in stores:
            summary = run_backup(store.repo, store.provider, dir_source(data, name), kind=kind,
                                 tags=[BASE_TAG, START_TAG + start], notice=notice)
            summary["wal_start"] = start
            out.append(summary)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- choosing the base backup ------------------------------------------------------------
def parse_target(text: str) -> float | None:
    if text == "latest":
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise UsageError(f"--target-time {text!r}: give an RFC 3339 time such as 2026-11-23T14:05:00Z, "
                         "or latest") from None


def base_points(repo, source: str | None = None) -> list:
    points, _bad = repo.list_points()
    out = [p for p in points if BASE_TAG in p.header.get("tags", [])
           and (source is None or p.header.get("source", {}).get("name") == source)]
    return sorted(out, key=lambda p: p.header.get("completion_time", ""))


def choose_base(points: list, target: float | None):
    if target is not None:
        points = [p for p in points if parse_rfc3339(p.header["completion_time"]) <= target]
    if not points:
        when = "" if target is None else f" that finished before {_pg_time(target)}"
        raise PointNotFound(f"no base backup{when}: take one with `lifeline agent base-backup`")
    return points[-1]


def _wal_start(point) -> str | None:
    for t in point.header.get("tags", []):
        if t.startswith(START_TAG):
            return t[len(START_TAG):]
    return None


def _pg_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


# --- the WAL after it --------------------------------------------------------------------
def examine_wal(store: SegmentStore, start: str, *, verify: bool = False, fetch=None) -> dict:
    """Segments from ``start`` on in its timeline: newest good one, holes, damaged ones.

    ``fetch(position) -> bool`` replaces the plain verification: it fetches (and so authenticates)
    one segment, raises DamagedData for a bad one, and returns False once it needs no more."""
    listing = store.list()
    stream = start[:8]
    names = listing.get(stream, [])
    positions = sorted((p for p in store.positions(stream, names) if p.seq is not None), key=lambda p: p.seq)
    seg_size = positions[0].segment_size if positions else 16 * 1024 * 1024
    start_seq = parse_name(start, seg_size).seq
    gaps = store.gaps(stream, names, start_seq)
    chain = []  # contiguous segments from start
    for p in positions:
        if p.seq < start_seq:
            continue
        if (chain and p.seq != chain[-1].seq + 1) or (not chain and p.seq != start_seq):
            break
        chain.append(p)
    damaged = None
    if verify or fetch is not None:
        good = []
        for p in chain:
            try:
                more = fetch(p) if fetch is not None else store.fetch(p.name) is not None
            except DamagedData as exc:
                damaged = {"name": p.name, "error": str(exc)}
                break
            good.append(p)
            if not more:
                break
        chain = good
    last = chain[-1].name if chain else None
    last_closed = None
    if last:
        h = store.read_header(f"wal/{stream}/{last}") or {}
        last_closed = h.get("closed_at")
    newest = max(names) if names else None
    return {"stream": stream, "start": start, "last_good": last, "last_good_closed_at": last_closed,
            "newest": newest, "gaps": [g.describe() for g in gaps],
            "complete": not gaps and damaged is None, "damaged": damaged, "segments": len(chain)}


# --- recovery settings -------------------------------------------------------------------
def fetch_command(prefix: str, repos: list[str], key: str | None) -> str:
    args = [*shlex.split(prefix), "wal-fetch", "%f", "%p"]
    for r in repos:
        args += ["--repo", r]
    if key:
        args += ["--key", key]
    return " ".join(a if a in ("%f", "%p") else shlex.quote(a) for a in args)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def write_recovery(dest: str, restore_command: str, target: float | None, *, no_archive: bool = False) -> list[str]:
    settings = [("restore_command", restore_command), ("recovery_target_timeline", "latest")]
    if target is not None:
        settings += [("recovery_target_time", _pg_time(target)), ("recovery_target_action", "promote"),
                     ("recovery_target_inclusive", "on")]
    if no_archive:
        settings.append(("archive_mode", "off"))
    lines = [f"{k} = {_conf_quote(v)}" for k, v in settings]
    with open(os.path.join(dest, "postgresql.auto.conf"), "a") as f:
        f.write("\n# written by lifeline agent restore-pitr\n" + "\n".join(lines) + "\n")
    for stale in ("standby.signal", "postmaster.pid"):
        try:
            os.unlink(os.path.join(dest, stale))
        except FileNotFoundError:
            pass
    open(os.path.join(dest, "recovery.signal"), "w").close()
    return lines


class _Prefetcher:
    """Fetches segments (authenticated, atomically, from the first repository with a good copy)
    into the directory, up to the target: every segment that closed before it, the first that
    closed after it (it holds the target), and PREFETCH_PAST_TARGET more, because recovery stops
    only on the first commit *after* the target, and PostgreSQL refuses to promote when the WAL
    ends before it (a switch right after the target can put that commit in the next segment)."""

    def __init__(self, stores: list[SegmentStore], directory: str, target: float | None):
        self.stores, self.directory, self.target = stores, directory, target
        self.past = 0
        self.count = self.bytes = 0

    def __call__(self, position) -> bool:
        got = fetch(self.stores, position.name, os.path.join(self.directory, position.name))
        self.count, self.bytes = self.count + 1, self.bytes + got["size"]
        if self.target is not None and (got.get("closed_at") or 0) > self.target:
            self.past += 1
        return self.past <= PREFETCH_PAST_TARGET


def restore_pitr(stores: list[SegmentStore], target_text: str, dest: str, *, source: str | None = None,
                 verify: bool = False, fetch_prefix: str | None = None, key: str | None = None,
                 no_archive: bool = False, prefetch: bool = False, notice=None) -> dict:
    notice = notice or (lambda m: print(f"lifeline agent restore-pitr: {m}", file=sys.stderr))
    target = parse_target(target_text)
    if os.path.isdir(dest) and os.listdir(dest):
        raise UsageError(f"{dest} is not empty: restore into an empty or new directory")
    store = stores[0]
    point = choose_base(base_points(store.repo, source), target)
    lock = store.repo.lock(exclusive=False, command="restore-pitr", wait=30.0)
    try:
        summary = Restorer(store.repo, store.provider, point.id).to_directory(dest)
    finally:
        lock.release()
    os.chmod(dest, 0o700)
    start = _wal_start(point)
    if start is None:
        with open(os.path.join(dest, "backup_label")) as f:
            start = wal_start_of(f.read())
    prefetcher = None
    if prefetch:
        wal_dir = os.path.join(dest, PREFETCH_DIR)
        os.makedirs(wal_dir, mode=0o700)
        prefetcher = _Prefetcher(stores, wal_dir, target)
    wal = examine_wal(store, start, verify=verify, fetch=prefetcher)
    used_target = target
    outcome = "complete"
    last_closed = wal["last_good_closed_at"]
    if not wal["complete"]:
        what = "; ".join(wal["gaps"][:3] + ([f"damaged {wal['damaged']['name']}: {wal['damaged']['error']}"]
                                             if wal["damaged"] else []))
        if target is None or last_closed is None or last_closed < target:
            used_target, outcome = None, "stopped-at-gap"
            notice(f"the shipped WAL has a hole: {what}. Recovery will stop at the last good segment "
                   f"{wal['last_good'] or '(none: only the base backup)'}"
                   + (f" (closed {_pg_time(last_closed)})" if last_closed else "")
                   + "; rows committed after it are not recovered")
    elif target is not None and (last_closed is None or last_closed <= target):
        used_target = None
        notice(f"the newest shipped segment {wal['last_good']} closed "
               f"{_pg_time(last_closed) if last_closed else 'before the base backup'}, not after the target "
               f"{_pg_time(target)}: recovering everything that was shipped")
    if prefetcher is not None:
        command = PREFETCH_COMMAND
        wal["prefetched"] = {"directory": PREFETCH_DIR, "segments": prefetcher.count, "bytes": prefetcher.bytes}
    else:
        prefix = fetch_prefix or f"{shlex.quote(sys.executable)} -m lifeline.agent"
        command = fetch_command(prefix, [s.repo.url for s in stores], key)
    settings = write_recovery(dest, command, used_target, no_archive=no_archive)
    return {"target": target_text, "recovery_target_time": _pg_time(used_target) if used_target else None,
            "base_backup": point.id, "base_backup_completed": point.header.get("completion_time"),
            "wal": wal, "outcome": outcome, "directory": os.path.abspath(dest), "settings": settings,
            "files": summary["files"], "bytes": summary["bytes"]}
