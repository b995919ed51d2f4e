"""`lifeline agent wal-push|wal-fetch|wal-list|ship|base-backup|restore-pitr`: continuous protection.

Registered into `lifeline agent` by :func:`register`. These commands take ``--repo``
repeatedly (one repository per destination) and use the agent's exit codes; in addition
wal-push exits 8 when a *different* segment is already stored under the same name, and
wal-fetch exits 5 at once for a segment that is not there (so recovery ends cleanly).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from lifeline.cli_stderr import arg_type, audit_to_stderr, guard
from lifeline.errors import LifelineError, UsageError
from lifeline.observability import audit
from lifeline.repository.backend import S3Options
from lifeline.repository.config import check_cipher_name
from lifeline.repository.errors import BackendError, ObjectNotFound
from lifeline.repository.segments import SegmentNotFound

from .wal import destinations, fetch, open_store, push
from .wal_pitr import base_backup, restore_pitr
from .wal_ship import Metrics, Shipper


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("repositories")
    env_repo = os.environ.get("LIFELINE_REPOSITORY")
    g.add_argument("--repo", "-r", action="append", default=None,
                   help="file:///path or s3://bucket/prefix; repeat for every destination (env LIFELINE_REPOSITORY)")
    g.add_argument("--key", "-k", default=os.environ.get("LIFELINE_KEY"),
                   help="key provider reference (env LIFELINE_KEY; default: the one recorded at init)")
    g.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    s3 = common.add_argument_group("S3 (defaults from AWS_* and LIFELINE_S3_<i>_* environment variables)")
    s3.add_argument("--s3-endpoint")
    s3.add_argument("--s3-region")
    s3.add_argument("--s3-allow-http", action="store_true", default=None)
    common.set_defaults(_env_repo=env_repo)
    return common


def _cipher_option(p) -> None:
    p.add_argument("--cipher", type=arg_type(check_cipher_name), default="aes-256-gcm", metavar="{aes-256-gcm,sm4-gcm}",
                   help="cipher of a repository --create makes (default aes-256-gcm; an existing repository "
                        "keeps the one it was made with)")


def register(sub) -> None:
    common = _common()
    p = sub.add_parser("wal-push", parents=[common], help="store one closed WAL segment (archive_command)",
                       description="archive_command = 'lifeline agent wal-push %%p --repo ...'. Exit 0 only when "
                                   "every repository holds the segment; re-pushing the same bytes is a no-op.")
    p.add_argument("path", help="the segment file (%%p)")
    p.add_argument("--name", help="name to store it under (default: the file's name, %%f)")
    p.add_argument("--create", action="store_true", help="create a missing repository (needs --key)")
    _cipher_option(p)
    p.set_defaults(func=cmd_wal_push)

    p = sub.add_parser("wal-fetch", parents=[common], help="fetch and verify one WAL segment (restore_command)",
                       description="restore_command = 'lifeline agent wal-fetch %%f %%p --repo ...'. Exits 5 at once "
                                   "when the segment is not stored, 3 when it fails authentication.")
    p.add_argument("name", help="segment name (%%f)")
    p.add_argument("dest", help="where to write it (%%p)")
    p.set_defaults(func=cmd_wal_fetch)

    p = sub.add_parser("wal-list", parents=[common], help="list shipped segments per stream and the holes")
    p.set_defaults(func=cmd_wal_list)

    p = sub.add_parser("ship", parents=[common], help="stream closed segments from a directory to every repository")
    p.add_argument("--dir", required=True, help="directory the workload closes segments into")
    p.add_argument("--state", default=None,
                   help="writable directory for the queue and state (default DIR/../.lifeline-ship)")
    p.add_argument("--pattern", default="*", help="glob of a closed segment's file name (default *)")
    p.add_argument("--queue-max", type=int, default=256, help="segments held locally while a destination is down")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between directory scans (default 0.5)")
    p.add_argument("--status-every", type=float, default=10.0, help="status line at least this often (seconds)")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus /metrics on this port (0 = off)")
    p.add_argument("--create", action="store_true", help="create missing repositories (needs --key)")
    _cipher_option(p)
    p.add_argument("--delete-shipped", action="store_true",
                   help="delete a segment from DIR once every repository has it (DIR must be writable)")
    p.add_argument("--key-file",
                   help="a mounted Secret's key file: copied to a private 0600 file in --state and used as --key")
    p.add_argument("--once", action="store_true", help="ship what is there, then exit (1 if a repository is down)")
    p.set_defaults(func=cmd_ship)

    p = sub.add_parser("base-backup", parents=[common], help="PostgreSQL base backup (pg_basebackup) as a point")
    p.add_argument("--pg-basebackup", default="pg_basebackup", help="the pg_basebackup program")
    p.add_argument("--source-name", help="source identity (default postgresql:$PGHOST:$PGPORT)")
    p.add_argument("--type", default="full", choices=["full", "incremental", "differential"])
    p.add_argument("--work-dir", help="where the temporary copy is made (default $TMPDIR)")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more pg_basebackup arguments")
    p.set_defaults(func=cmd_base_backup)

    p = sub.add_parser("restore-pitr", parents=[common], help="restore PostgreSQL to a point in time")
    p.add_argument("--target-time", required=True, help="RFC 3339 time, or latest")
    p.add_argument("dest", help="new, empty data directory")
    p.add_argument("--source", help="only base backups of this source name")
    p.add_argument("--verify", action="store_true", help="authenticate every needed segment before writing settings")
    p.add_argument("--fetch-command",
                   help="how restore_command calls the agent (default: this python -m lifeline.agent)")
    p.add_argument("--no-archive", action="store_true",
                   help="set archive_mode=off in the restored cluster (drills: never archive into production)")
    p.add_argument("--prefetch-wal", action="store_true",
                   help="fetch and authenticate every segment recovery needs into DEST/lifeline-wal now and "
                        "set restore_command to copy from there: the database needs no agent, key or network")
    p.add_argument("--key-file",
                   help="a mounted Secret's key file: copied to a private 0600 temporary file (never into DEST) "
                        "and used as --key")
    p.set_defaults(func=cmd_restore_pitr)


# --- plumbing ---------------------------------------------------------------------------
_guard = guard(lambda args: f"lifeline agent {args.agent_command}", os_errors=True)


def _dests(args):
    urls = args.repo or ([args._env_repo] if args._env_repo else [])
    return destinations(urls, S3Options(endpoint=args.s3_endpoint, region=args.s3_region,
                                        allow_http=args.s3_allow_http))


def _stores(args, *, create: bool = False):
    cipher = getattr(args, "cipher", "aes-256-gcm")  # wal-push and ship have --cipher (for --create)
    return [open_store(d, args.key, create=create, cipher=cipher) for d in _dests(args)]


def _emit(args, obj: dict, human: str) -> None:
    if args.json:
        print(json.dumps(obj, indent=1, sort_keys=True, default=str))
    elif human:
        print(human)


# --- commands ---------------------------------------------------------------------------
@_guard
def cmd_wal_push(args) -> int:
    results = push(_stores(args, create=args.create), args.path, args.name)
    new = sum(1 for r in results if r["stored"])
    _emit(args, {"results": [{k: v for k, v in r.items() if k != "header"} for r in results]}, "")
    if new == 0 and not args.json:
        print(f"lifeline agent wal-push: {results[0]['name']} was already stored (identical)", file=sys.stderr)
    return 0


@_guard
def cmd_wal_fetch(args) -> int:
    try:
        result = _fetch_with_retries(args, fetch)
    except SegmentNotFound as exc:  # the normal end of recovery, or a hole: say so without alarm
        print(f"lifeline agent wal-fetch: {exc} (end of the shipped WAL, or a gap: `lifeline agent wal-list` "
              "shows which)", file=sys.stderr)
        return exc.exit_code
    _emit(args, result, "")
    return 0


FETCH_ATTEMPTS = 4


class AbortRecovery(LifelineError):
    exit_code = 126  # PostgreSQL aborts recovery on a status above 125 instead of ending it here


def _fetch_with_retries(args, fetch):
    """A storage error is not the end of the WAL: retry, then make PostgreSQL *abort* recovery
    (exit 126) rather than promote early with data missing; restart it once storage is back."""
    import time

    for attempt in range(FETCH_ATTEMPTS):
        try:
            return fetch(_stores(args), args.name, args.dest)
        except BackendError as exc:
            if isinstance(exc, ObjectNotFound):
                raise
            if attempt == FETCH_ATTEMPTS - 1:
                raise AbortRecovery(f"{exc}; aborting recovery so it does not end early (fix storage access, "
                                    "then start PostgreSQL again)") from None
            time.sleep(0.5 * 2 ** attempt)  # back-off between attempts against flaky storage


@_guard
def cmd_wal_list(args) -> int:
    rows, lines = [], []
    for store in _stores(args):
        listing = store.list()
        for stream, names in sorted(listing.items()):
            gaps = [] if stream == "aux" else [g.describe() for g in store.gaps(stream, names)]
            rows.append({"repository": store.repo.url, "stream": stream, "count": len(names),
                         "first": names[0] if names else None, "last": names[-1] if names else None, "gaps": gaps})
            lines.append(f"{store.repo.url} {stream}: {len(names)} file(s) {names[0]}..{names[-1]}"
                         + ("".join(f"\n  GAP {g}" for g in gaps)))
    _emit(args, {"streams": rows}, "\n".join(lines) or "no log segments")
    return 3 if any(r["gaps"] for r in rows) else 0


@_guard
def cmd_ship(args) -> int:
    state = args.state or os.path.join(os.path.dirname(os.path.abspath(args.dir)), ".lifeline-ship")
    if args.key_file:
        args.key = _private_key_copy(args.key_file, state)
    shipper = Shipper(args.dir, _dests(args), args.key, state, pattern=args.pattern, queue_max=args.queue_max,
                      create=args.create, cipher=args.cipher, delete_shipped=args.delete_shipped)
    metrics = Metrics(args.metrics_port) if args.metrics_port else None
    try:
        return shipper.run(interval=args.interval, status_every=args.status_every, once=args.once, metrics=metrics)
    finally:
        if metrics is not None:
            metrics.close()


def _private_key_copy(source: str, state: str) -> str:
    """Key files must be 0600; a Secret volume's are not (and belong to root): copy it."""
    import shutil

    os.makedirs(state, exist_ok=True)
    target = os.path.join(state, "key")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    return f"file://{target}"


def _audited(action: str, subject_name: str, details: dict, run):
    """Base backups and restores are DR actions: one audit record when each ends (not wal-push,
    which runs every second and leaves its trace in the repository itself)."""
    audit_to_stderr("lifeline agent")
    subject = {"kind": "PostgreSQL", "namespace": "", "name": subject_name}
    try:
        result = run()
    except LifelineError as exc:
        audit.record(action, actor=audit.default_actor(), outcome="failed", subject=subject,
                     details={**details, "error": str(exc)})
        raise
    if isinstance(result, dict) and result.get("outcome", "complete") != "complete":
        details = {**details, "recovery": result["outcome"]}  # stops at a hole: named in the output
    audit.record(action, actor=audit.default_actor(), outcome="succeeded", subject=subject, details=details)
    return result


@_guard
def cmd_base_backup(args) -> int:
    extra = [a for a in args.extra if a != "--"]
    stores = _stores(args)
    results = _audited("backup", args.source_name or "postgresql",
                       {"type": "base-backup", "repositories": [s.repo.url for s in stores]},
                       lambda: base_backup(stores, pg_basebackup=args.pg_basebackup, extra=extra,
                                           source_name=args.source_name, kind=args.type, work_dir=args.work_dir,
                                           notice=lambda m: print(f"lifeline agent base-backup: {m}",
                                                                  file=sys.stderr)))
    _emit(args, {"points": results}, "\n".join(
        f"base backup {r['point_id']} in {r['repository']} (WAL from {r['wal_start']})" for r in results))
    return 0


@_guard
def cmd_restore_pitr(args) -> int:
    if not (args.target_time == "latest" or args.target_time):
        raise UsageError("--target-time is empty")
    if not args.key_file:
        return _restore_pitr(args)
    import shutil
    import tempfile

    private = tempfile.mkdtemp(prefix="lifeline-key-")
    try:
        args.key = _private_key_copy(args.key_file, private)
        return _restore_pitr(args)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _restore_pitr(args) -> int:
    stores = _stores(args)
    result = _audited("restore", args.source or os.path.abspath(args.dest),
                      {"type": "point-in-time", "target": args.target_time, "directory": os.path.abspath(args.dest),
                       "repositories": [s.repo.url for s in stores]},
                      lambda: restore_pitr(stores, args.target_time, args.dest, source=args.source,
                                           verify=args.verify, fetch_prefix=args.fetch_command, key=args.key,
                                           no_archive=args.no_archive, prefetch=args.prefetch_wal))
    wal = result["wal"]
    human = (f"restored base backup {result['base_backup']} ({result['base_backup_completed']}) to "
             f"{result['directory']}; WAL {wal['start']}..{wal['last_good']} ({wal['segments']} segments)"
             + (f"; recovery target {result['recovery_target_time']}" if result["recovery_target_time"]
                else "; recovers to the end of the shipped WAL")
             + "".join(f"\nGAP {g}" for g in wal["gaps"])
             + (f"\nDAMAGED {wal['damaged']['name']}: {wal['damaged']['error']}" if wal["damaged"] else "")
             + (f"\nprefetched {wal['prefetched']['segments']} segments into {wal['prefetched']['directory']}/ "
                "(restore_command copies from there)" if wal.get("prefetched") else "")
             + "\nstart PostgreSQL on it to replay (recovery.signal is set)")
    _emit(args, result, human)
    return 3 if result["outcome"] != "complete" else 0
