"""`lifeline agent ...`: the data-plane commands.

Exit codes (stable; the operator and scripts rely on them):

  0  success
  1  error (storage unreachable, I/O error, repository missing/invalid)
  2  usage error (bad arguments, unreadable or missing source)
  3  damaged data found (verify/check/restore/repack/rebuild-index), or prune or repack refused to run on
     a damaged repository
  4  key problem (wrong key, missing key file, key file permissions)
  5  recovery point not found
  6  repository locked by another process
  7  backup published, but some files could not be read (listed)
  8  wal-push: a different segment is already stored under that name (wal-fetch: 5 = no such segment,
     126 = storage unreachable after retries: PostgreSQL then aborts recovery instead of ending it)
  130 interrupted
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter

from lifeline.cli_stderr import arg_type
from lifeline.errors import LifelineError, UsageError
from lifeline.hidden_text import BIDI_MARKS
from lifeline.keys import LocalKeyFileProvider, create_key_file, provider_from_ref
from lifeline.keys.choice import provider_for
from lifeline.keys.shred import add_target_arguments as add_shred_arguments, shred
from lifeline.observability.audit import default_actor
from lifeline.rates import parse_rate
from lifeline.repository.backend import Limits, S3Options, open_backend
from lifeline.repository.config import check_cipher_name
from lifeline.repository.crypto import cipher_problem
from lifeline.repository.errors import CipherUnavailable
from lifeline.repository.immutability import settings as immutability_settings
from lifeline.repository.repo import Repository, parse_rfc3339
from lifeline.repository.throttle import report as throttle_report

from . import objects_restore
from .backup import dir_source, run_backup, stream_source
from .progress import Progress, human_bytes
from .prune import run_prune
from .repack import DEFAULT_MAX_UNUSED, PackProgress, run_rebuild_index, run_repack
from .restore import Restorer
from .verify import catalogue_lines_for_latest, run_check, run_verify
from .wal_cli import register as register_continuous  # wal-push, wal-fetch, ship, restore-pitr

EXIT_CODES = __doc__.split("Exit codes", 1)[1].split(":", 1)[1]


def _bounded(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high``, or a usage error that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return parse


def _percent(text: str) -> float:
    """An argparse type: a percentage from 0 to 100 ("5", "5%", "2.5")."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 100")
    return value


def _rate(text: str) -> int:
    """An argparse type: bytes per second (50MiB, 800KiB, 12MB), or a usage error that says what is wrong."""
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    agent = subparsers.add_parser(
        "agent", help="back up, restore, verify, check, prune and repack a repository (the data plane)",
        description="The data-plane agent: encrypted, deduplicated backups to file:// and s3:// repositories.",
        epilog="exit codes:" + EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("repository")
    g.add_argument("--repo", "-r", default=os.environ.get("LIFELINE_REPOSITORY"),
                   help="file:///path or s3://bucket/prefix (env LIFELINE_REPOSITORY)")
    g.add_argument("--key", "-k", default=os.environ.get("LIFELINE_KEY"),
                   help="key provider reference, e.g. file:///etc/lifeline/key (env LIFELINE_KEY; default: "
                        "the reference recorded at init, if it is a key file or a Vault key without connection "
                        "settings, and only once it has authenticated the repository)")
    g.add_argument("--json", action="store_true", help="print a JSON summary on stdout at the end")
    g.add_argument("--lock-wait", type=float, default=30.0, metavar="SECONDS",
                   help="wait this long for a conflicting lock (default 30)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress line on stderr (default: when stderr is a terminal)")
    g.add_argument("--progress-lines", action="store_true",
                   help="also a 'lifeline-progress {JSON}' line on stderr every 2 s and at the end: files, bytes, "
                        "total, rate, ETA (what a Job's log carries for `lifeline backup now --wait`)")
    s3 = common.add_argument_group("S3 (defaults from AWS_* environment variables)")
    s3.add_argument("--s3-endpoint", help="endpoint URL (env AWS_ENDPOINT_URL)")
    s3.add_argument("--s3-region", help="region (env AWS_REGION)")
    s3.add_argument("--s3-access-key-id", help="access key id (env AWS_ACCESS_KEY_ID)")
    s3.add_argument("--s3-secret-access-key",
                    help="secret key (env AWS_SECRET_ACCESS_KEY; prefer the variable: arguments show in ps)")
    s3.add_argument("--s3-allow-http", action="store_true", default=None,
                    help="allow plain http to a non-loopback endpoint")
    bw = common.add_argument_group("bandwidth (docs/storage.md, \"Bandwidth\")")
    bw.add_argument("--limit-upload", type=_rate, default=os.environ.get("LIFELINE_LIMIT_UPLOAD"),
                    metavar="RATE", help="at most RATE bytes per second to the repository, averaged, shared by every "
                                         "worker: 50MiB, 800KiB, 12MB (env LIFELINE_LIMIT_UPLOAD)")
    bw.add_argument("--limit-download", type=_rate, default=os.environ.get("LIFELINE_LIMIT_DOWNLOAD"),
                    metavar="RATE", help="at most RATE bytes per second from the repository (env "
                                         "LIFELINE_LIMIT_DOWNLOAD)")

    p = sub.add_parser("init", parents=[common], help="create a repository")
    p.add_argument("--create-key", action="store_true",
                   help="create the key file named by --key if it does not exist (mode 0600)")
    p.add_argument("--compression-level", type=_bounded(0, 22), default=1,
                   help="zstd level for new data, 0 = off (default 1: fastest; 3 packs ~5%% tighter on text)")
    p.add_argument("--cipher", type=arg_type(check_cipher_name), default="aes-256-gcm", metavar="{aes-256-gcm,sm4-gcm}",
                   help="the repository's cipher, for good (default aes-256-gcm; sm4-gcm = SM4, GB/T 32907, "
                        "in GCM mode, for sites that must use the Chinese national block cipher: without SM4 "
                        "instructions it runs in software, ~30x slower than AES-NI per byte, which makes "
                        "backups ~2x and restores ~4x slower; see docs/performance.md)")
    p.add_argument("--immutable-days", type=_bounded(1, 36500), metavar="N",
                   help="make the repository immutable, for good: every object is written once and locked for N "
                        "days (S3 Object Lock; the bucket must have it), nothing is overwritten or deleted before "
                        "its retention ends, and prune extends the retention of what kept points need. See "
                        "docs/immutability.md")
    p.add_argument("--immutable-mode", choices=["compliance", "governance"], metavar="{compliance,governance}",
                   help="the lock's mode (default compliance: nobody, the bucket's owner included, can shorten or "
                        "remove it; governance: whoever may bypass governance retention can)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("backup", parents=[common], help="back up a directory, stdin or a command's output")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("path", nargs="?", help="directory to back up")
    src.add_argument("--stdin", action="store_true", help="back up standard input")
    src.add_argument("--command", metavar="CMD",
                     help="back up the standard output of CMD, e.g. 'pg_dump -Fc db' (split like a shell, "
                          "run without one: use \"sh -c '...'\" for pipes); a non-zero exit publishes nothing")
    p.add_argument("--type", default="incremental", choices=["full", "incremental", "differential"],
                   help="full = new key epoch, no dedup against older points; incremental = against the "
                        "latest point of this source; differential = against the latest full (default "
                        "incremental; falls back to full when there is no parent)")
    p.add_argument("--tag", action="append", default=[], help="tag the point (repeatable)")
    p.add_argument("--source-name", help="identity of the source for parent lookup (default: absolute "
                                         "path, 'stdin', or the command line)")
    p.add_argument("--stdin-name", help="file name of the stream inside the point (default stdin / <prog>.out)")
    p.add_argument("--time", help="record this RFC 3339 time as the point's start (imports, tests)")
    p.add_argument("--workers", type=_bounded(1, 256), default=None, help="worker threads (default: cores, 2..4)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", parents=[common], help="restore a point to a directory or stdout")
    p.add_argument("point", help="point id (a unique prefix is enough) or 'latest'")
    p.add_argument("--to", "--target", dest="target", required=True, help="directory, or - for stdout")
    p.add_argument("--path", action="append", default=[], help="only this path (repeatable)")
    p.add_argument("--skip-damaged", action="store_true",
                   help="restore every undamaged file and list the damaged ones (exit 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="restore into a directory that is not empty: what is in the way of an entry is "
                        "replaced (a symbolic link there is removed, never written through); default: refuse")
    p.add_argument("--special-bits", "--keep-special-bits", dest="special_bits", action="store_true",
                   help="restore setuid, setgid and sticky bits (default: dropped, and listed, even as root; "
                        "setuid/setgid are dropped anyway when the owner cannot be restored)")
    p.add_argument("--numeric-owner", action="store_true",
                   help="as root, give owners by the recorded uid/gid (default: by the recorded user and group "
                        "name when it exists on this system, else by id)")
    p.add_argument("--devices", action="store_true",
                   help="create device nodes (as root; default: not created, and listed)")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("ls", parents=[common], help="list what a point holds (a resources point: its objects)")
    p.add_argument("point", help="point id (a unique prefix is enough) or 'latest'")
    p.set_defaults(func=cmd_ls)  # --json: one JSON object per entry (path, type, size)

    p = sub.add_parser("verify", parents=[common], help="check that points are restorable")
    p.add_argument("points", nargs="*", help="point ids (default: all)")
    p.add_argument("--read-data", action="store_true", help="read, decrypt and hash every chunk")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("check", parents=[common], help="check repository structure and report leftovers")
    p.add_argument("--read-data", action="store_true", help="also read and authenticate every chunk")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("prune", parents=[common], help="apply retention and delete unreferenced data")
    for rule in ("last", "daily", "weekly", "monthly", "yearly"):
        p.add_argument(f"--keep-{rule}", type=_bounded(0, 100_000), default=0, metavar="N")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    p.add_argument("--accept-missing", action="store_true",
                   help="the catalogue head lists points that are gone (or is missing or fails authentication): "
                        "accept the loss, record the points that are there, and prune (default: refuse)")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("repack", parents=[common], help="rewrite packs that are mostly unused (after prune)",
                       description="Rewrite the packs in which more than --max-unused percent of the bytes are no "
                                   "longer used by any point: their live blobs are copied into new packs, a new "
                                   "index is written, and only then are the old index segments and packs deleted. "
                                   "Packs no point uses and packs no index names are deleted. Takes the exclusive "
                                   "lock (as prune): backups wait. See docs/maintenance.md.")
    p.add_argument("--max-unused", type=_percent, default=DEFAULT_MAX_UNUSED, metavar="PERCENT",
                   help=f"rewrite a pack when more than this share of its bytes is unused (default "
                        f"{DEFAULT_MAX_UNUSED:g}; 0 = every pack with any unused byte, 100 = only delete "
                        "packs with nothing live)")
    p.add_argument("--dry-run", action="store_true", help="say what would be rewritten and deleted; change nothing")
    p.set_defaults(func=cmd_repack)

    p = sub.add_parser("rebuild-index", parents=[common], help="recreate the index from the packs alone",
                       description="Read every pack's own sealed directory (not its data) and write a new index "
                                   "from them, then delete every index object that was there. A pack whose "
                                   "directory cannot be read is named (exit 3); the others are indexed.")
    p.add_argument("--dry-run", action="store_true", help="read the packs and report; write and delete nothing")
    p.set_defaults(func=cmd_rebuild_index)

    p = sub.add_parser("points", parents=[common], help="list recovery points")
    p.add_argument("--tag", action="append", default=[], help="only points with this tag")
    p.add_argument("--source", help="only points of this source name")
    p.add_argument("--authenticate", action="store_true",
                   help="read each point with the key (its manifest must authenticate) and give its checksum: "
                        "what adopting the points into a cluster's catalogue needs (needs --key)")
    p.set_defaults(func=cmd_points)

    p = sub.add_parser("shred", parents=[common],
                       help="crypto-shred: destroy a key epoch's wrapped key and its points")
    add_shred_arguments(p)
    p.set_defaults(func=cmd_shred)

    p = sub.add_parser("objects-restore", help="put a resources backup's objects back through the API server",
                       description="Create the objects of a tree a resources backup's point restored into "
                                   "(lifeline agent restore POINT --to DIR), with your own credentials: every "
                                   "object passes the server's dry run first, or nothing is written. Deletes "
                                   "nothing. Exit 1 when any object failed (each is named).")
    p.add_argument("dir", help="the restored tree: <resource>[.<group>]/<name>.json")
    p.add_argument("--namespace-map", action="append", default=[], metavar="FROM=TO",
                   type=arg_type(objects_restore.namespace_pair),
                   help="restore the objects of namespace FROM into TO (repeatable; TO must exist)")
    p.add_argument("--existing", choices=objects_restore.EXISTING, default="skip",
                   help="an object that exists already: leave it (skip, the default) or replace it at its live "
                        "version (update)")
    p.add_argument("--dry-run", action="store_true", help="only the server's dry run; write nothing")
    p.add_argument("--kubeconfig", help="credentials (default: in-cluster, or KUBECONFIG, or ~/.kube/config)")
    p.add_argument("--json", action="store_true", help="print the outcomes as a JSON list on stdout")
    p.set_defaults(func=cmd_objects_restore)

    register_continuous(sub)


# --- plumbing ---------------------------------------------------------------------------
def _guard(fn):
    def wrapped(args) -> int:
        try:
            return fn(args)
        except LifelineError as exc:
            _err(args, str(exc))
            return exc.exit_code
        except KeyboardInterrupt:
            _err(args, "interrupted; nothing was published by an unfinished backup")
            return 130
        except BrokenPipeError:
            return 1
        except OSError as exc:
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            _err(args, f"{exc.strerror or exc}{where}")
            return 1

    wrapped.__name__ = fn.__name__
    return wrapped


def _err(args, msg: str) -> None:
    cmd = getattr(args, "agent_command", "")
    print(printable(f"lifeline agent {cmd}: error: {msg}"), file=sys.stderr)


def _s3(args) -> S3Options:
    return S3Options(endpoint=args.s3_endpoint, region=args.s3_region, access_key_id=args.s3_access_key_id,
                     secret_access_key=args.s3_secret_access_key, allow_http=args.s3_allow_http)


def _limits(args) -> Limits:
    return Limits(args.limit_upload, args.limit_download)


def _open(args) -> Repository:
    return Repository.open(open_backend(args.repo, _s3(args), limits=_limits(args)))


def _with_bandwidth(summary: dict, repo: Repository) -> dict:
    """The summary, with what the bandwidth limits counted and made wait (when there were any)."""
    counted = throttle_report(repo.backend)
    return {**summary, "bandwidth": counted} if counted else summary


def _provider(args, repo: Repository):
    return provider_for(repo, args.key)


def _progress(args, verb: str):
    return Progress(verb, enabled=args.progress, lines=sys.stderr if args.progress_lines else None)


# Text from storage (tags, source names, paths, messages) is printed to someone's terminal: control
# characters (an escape sequence can rewrite the screen) and bidirectional marks are shown escaped.
_UNPRINTABLE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI_MARKS}]")


def printable(text: str) -> str:
    """``text`` with every control character but newline and tab, and every bidi mark, escaped."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _emit(args, obj: dict, human: str, *, stream=None) -> None:
    if args.json:  # JSON escapes control characters itself
        print(json.dumps(obj, indent=1, sort_keys=True), file=stream or sys.stdout)
    elif human:
        print(printable(human), file=stream or sys.stdout)


def _damage_lines(damaged: list[dict]) -> str:
    out = []
    for d in damaged:
        if d.get("point"):
            where = f"point {d['point']}" + (f", file {d['path']!r}" if d.get("path") is not None else "")
        else:
            where = d.get("object", "?")
        out.append(f"DAMAGED {where}: {d['error']}")
    return "\n".join(out)


def _skipped_lines(skipped: list[dict], shown: int = 5) -> list[str]:
    """One line per reason: what a restore left out on purpose, and how to have it."""
    by_what: dict[str, list[str]] = {}
    for s in skipped:
        by_what.setdefault(s["what"], []).append(s["path"] or ".")
    out = []
    for what, paths in by_what.items():
        more = f", ... ({len(paths) - shown} more)" if len(paths) > shown else ""
        out.append(f"{len(paths)} entr{'y' if len(paths) == 1 else 'ies'}: {what}: "
                   + ", ".join(repr(p) for p in paths[:shown]) + more)
    return out


# --- commands ---------------------------------------------------------------------------
@_guard
def cmd_init(args) -> int:
    if not args.key:
        raise UsageError("init needs --key (e.g. --key file:///root/.config/lifeline/key --create-key)")
    if (problem := cipher_problem(args.cipher)) is not None:  # before a key file or a directory is made
        raise CipherUnavailable(f"cannot create a {args.cipher} repository: {problem}")
    immutable = immutability_settings(args.immutable_mode, args.immutable_days)
    provider = provider_from_ref(args.key)
    created = False
    if args.create_key and isinstance(provider, LocalKeyFileProvider) and not provider.path.exists():
        create_key_file(provider.path)
        created = True
    provider.new_data_key()  # proves the provider works before anything is written
    backend = open_backend(args.repo, _s3(args), create=True, limits=_limits(args))
    repo = Repository.init(backend, provider, compression_level=args.compression_level, cipher=args.cipher,
                           immutable=immutable)
    msg = (f"created repository {repo.url} (format v{repo.config['version']}, id {repo.config['id']}, "
           f"cipher {repo.config['encryption']}"
           + (f", immutable: {immutable.describe()}" if immutable is not None else "") + ")")
    if created:
        msg += f"\ncreated key file {provider.path}: keep a copy apart from the repository, without it the data is lost"
    _emit(args, {"repository": repo.url, "id": repo.config["id"], "format_version": repo.config["version"],
                 "cipher": repo.config["encryption"], "key_ref": provider.ref, "key_created": created,
                 "immutable": repo.config.get("immutable")}, msg)
    return 0


@_guard
def cmd_backup(args) -> int:
    if args.path:
        source = dir_source(args.path, args.source_name)
    elif args.stdin:
        source = stream_source("stdin", name=args.source_name, stream_name=args.stdin_name)
    else:
        source = stream_source("command", command=args.command, name=args.source_name,
                               stream_name=args.stdin_name)
    at = None
    if args.time:
        try:
            at = parse_rfc3339(args.time)
        except ValueError:
            raise UsageError(f"--time {args.time!r} is not an RFC 3339 time") from None
    repo = _open(args)
    provider = _provider(args, repo)
    with _progress(args, "backup") as progress:
        summary = run_backup(repo, provider, source, kind=args.type, tags=args.tag, at=at,
                             progress=progress, workers=args.workers, lock_wait=args.lock_wait,
                             notice=lambda m: print(f"lifeline agent backup: {m}", file=sys.stderr))

    human = (f"point {summary['point_id']} ({summary['type']}) saved: {summary['files']} files, "
             f"{human_bytes(summary['size_bytes'])} read, {human_bytes(summary['stored_bytes'])} stored, "
             f"{summary['chunks_new']}/{summary['chunks_total']} new chunks in {summary['duration_seconds']} s")
    _emit(args, _with_bandwidth(summary, repo), human)
    if summary["skipped"]:
        for s in summary["skipped"]:
            print(printable(f"lifeline agent backup: warning: skipped {s['path']!r}: {s['error']}"), file=sys.stderr)
        return 7
    return 0


@_guard
def cmd_ls(args) -> int:
    """The point's entries, from its manifest alone (no data is read); a resources point's files are
    its objects, ``<resource>[.<group>]/<name>.json``."""
    repo = _open(args)
    provider = _provider(args, repo)
    point = repo.resolve_point(args.point, repo.list_points()[0])
    _header, entries, _keys = repo.load_point(point.id, provider)
    for e in sorted(entries, key=lambda e: e["path"]):
        if args.json:
            print(json.dumps({"path": e["path"], "type": e.get("type"), "size": e.get("size")}))
        elif e.get("path"):
            print(printable(e["path"]) + ("/" if e.get("type") == "dir" else ""))
    return 0


@_guard
def cmd_restore(args) -> int:
    repo = _open(args)
    provider = _provider(args, repo)
    points, _bad = repo.list_points()
    point = repo.resolve_point(args.point, points)
    if args.point == "latest":
        _say_which_latest(repo, provider, points, point)
    lock = repo.lock(exclusive=False, command="restore", wait=args.lock_wait)
    try:
        r = Restorer(repo, provider, point.id, skip_damaged=args.skip_damaged,
                     progress=_progress(args, "restore"))
        with r.progress:
            if args.target == "-":
                if len(args.path) > 1:
                    raise UsageError("restore to stdout takes at most one --path")
                summary = r.to_stream(sys.stdout.buffer, args.path[0] if args.path else None)
            else:
                summary = r.to_directory(args.target, args.path or None, overwrite=args.overwrite,
                                         special_bits=args.special_bits, devices=args.devices,
                                         numeric_owner=args.numeric_owner)
    finally:
        lock.release()
    out = sys.stderr if args.target == "-" else sys.stdout
    human = "" if args.target == "-" else (
        f"restored point {summary['point_id']}: {summary['files']} files, {summary['bytes']} bytes "
        f"to {summary['target']} in {summary['duration_seconds']} s")
    _emit(args, _with_bandwidth(summary, repo), human, stream=out)
    for line in _skipped_lines(summary.get("skipped") or []):
        print(printable(f"lifeline agent restore: note: {line}"), file=sys.stderr)
    if summary["damaged"]:
        print(printable(_damage_lines(summary["damaged"])), file=sys.stderr)
        print(f"lifeline agent restore: {len(summary['damaged'])} damaged file(s) were not restored",
              file=sys.stderr)
        return 3
    return 0


def _say_which_latest(repo, provider, points, point) -> None:
    """`restore latest` names the point it took, and says when the catalogue head knows newer ones."""
    for line in catalogue_lines_for_latest(repo, provider, points, point):
        print(printable(f"lifeline agent restore: warning: {line}"), file=sys.stderr)
    print(printable(f"lifeline agent restore: restoring point {point.id} (latest: completed "
                    f"{point.header.get('completion_time')}, seq {point.header.get('seq')})"), file=sys.stderr)


@_guard
def cmd_objects_restore(args) -> int:
    docs = objects_restore.prepared(objects_restore.read_tree(args.dir),
                                    objects_restore.namespace_map(args.namespace_map))
    outcomes = objects_restore.restore_objects(docs, objects_restore.connect(args.kubeconfig),
                                               existing=args.existing, dry_run=args.dry_run)
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=1, sort_keys=True))
    else:
        print(printable(objects_restore.outcome_table(outcomes)))
    counts = Counter(o.outcome for o in outcomes)
    for o in outcomes:
        if o.outcome == "failed":
            print(printable(f"lifeline agent objects-restore: failed: {o.kind} {o.where} ({o.file}): {o.message}"),
                  file=sys.stderr)
    said = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    if counts["failed"] and not counts["created"] + counts["updated"]:
        said = f"nothing was written: {counts['failed']} of {len(outcomes)} objects failed ({said})"
    elif args.dry_run:
        said = f"dry run, nothing was written: {said}"
    print(f"lifeline agent objects-restore: {said}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _report_exit(args, report, verb: str) -> int:
    d = report.as_dict()
    d.pop("trees", None)
    lines = []
    if report.damaged:
        lines.append(_damage_lines(report.damaged))
    for kind, items in report.leftovers.items():
        lines.append(f"leftover {kind.replace('_', ' ')} ({len(items)}; `prune` removes them):")
        lines.extend(f"  {i}" for i in items[:20])
        if len(items) > 20:
            lines.append(f"  ... and {len(items) - 20} more")
    for p in report.shredded:
        lines.append(f"point {p}: key destroyed (crypto-shredded), not readable")
    lines.extend(report.notes)
    status = "damaged data found" if report.damaged else "no damage found"
    lines.append(f"{verb}: {report.points_checked} points, {report.chunks_checked} chunks read, {status}")
    _emit(args, d, "\n".join(lines))
    return 3 if report.damaged else 0


@_guard
def cmd_verify(args) -> int:
    repo = _open(args)
    provider = _provider(args, repo)
    with _progress(args, "verify") as progress:
        report = run_verify(repo, provider, args.points, read_data=args.read_data, progress=progress)
    return _report_exit(args, report, "verify")


@_guard
def cmd_check(args) -> int:
    repo = _open(args)
    provider = _provider(args, repo)
    with _progress(args, "check") as progress:
        report = run_check(repo, provider, read_data=args.read_data, progress=progress)
    return _report_exit(args, report, "check")


@_guard
def cmd_prune(args) -> int:
    from lifeline.messages import RetentionPlan  # (here: pydantic costs every other command 0.1 s to load)

    policy = RetentionPlan(last=args.keep_last, daily=args.keep_daily, weekly=args.keep_weekly,
                           monthly=args.keep_monthly, yearly=args.keep_yearly)
    if any(v < 0 for v in (policy.last, policy.daily, policy.weekly, policy.monthly, policy.yearly)):
        raise UsageError("--keep-* values must be 0 or more")
    repo = _open(args)
    provider = _provider(args, repo)
    report = run_prune(repo, provider, policy, dry_run=args.dry_run, lock_wait=args.lock_wait,
                       accept_missing=args.accept_missing)
    verb = "would forget" if args.dry_run else "forgot"
    lines = [f"{verb} point {f['point_id']} ({f['type']}, {f['start_time']})" for f in report["forget"]]
    lines += [f"kept point {r['point_id']} ({r['start_time']}){' (crypto-shredded)' if r['shredded'] else ''}: "
              f"immutable until {r['until']}, prune deletes it after" for r in report.get("retained_points", ())]
    cat = report["catalogue"]
    if cat["accepted_missing"]:
        lines.append(f"accepted the loss of {len(cat['accepted_missing'])} missing point(s): "
                     + ", ".join(cat["accepted_missing"]))
    if cat["rebuilt"]:
        lines.append(f"wrote a new catalogue head (seq {cat['seq']}) from the {cat['points']} points in storage")
    lines.append(f"{'would delete' if args.dry_run else 'deleted'} {report['packs_deleted']} packs "
                 f"({human_bytes(report['bytes_freed'])}), {len(report['epoch_keys_deleted'])} unused epoch keys, "
                 f"{report['temporary_files_deleted']} temporary files, {report['stale_locks_deleted']} stale locks; "
                 f"{len(report['keep'])} points kept")
    if "immutable" in report and not args.dry_run:
        lines.append(f"immutable: {report['retained_objects']} unused object(s) stay until their retention ends; "
                     f"retention extended on {report['retention_extended']} of the {report['retention_checked']} "
                     "objects the points need")
    _emit(args, _with_bandwidth(report, repo), "\n".join(lines))
    return 0


@_guard
def cmd_repack(args) -> int:
    repo = _open(args)
    provider = _provider(args, repo)
    with PackProgress("repack", enabled=args.progress) as progress:
        r = run_repack(repo, provider, max_unused=args.max_unused, dry_run=args.dry_run,
                       lock_wait=args.lock_wait, progress=progress)
    dry = args.dry_run
    lines = [f"{'would rewrite' if dry else 'rewrote'} {r['packs_rewritten']} packs with more than "
             f"{r['max_unused_percent']:g}% unused: {r['blobs_copied']} live blobs ({human_bytes(r['bytes_copied'])}) "
             f"copied into {'about ' if dry else ''}{r['packs_written']} new packs",
             f"{'would delete' if dry else 'deleted'} {r['packs_deleted_unused']} packs nothing uses and "
             f"{r['packs_deleted_unindexed']} packs no index names, {r['temporary_files_deleted']} temporary files, "
             f"{r['stale_locks_deleted']} stale locks",
             f"packs and index: {human_bytes(r['bytes_before'])} -> {'about ' if dry else ''}"
             f"{human_bytes(r['bytes_after'])} ({r['packs_before']} -> {r['packs_after']} packs)"]
    _emit(args, _with_bandwidth(r, repo), "\n".join(lines))
    if r["damaged"]:
        print(printable(_damage_lines(r["damaged"])), file=sys.stderr)
        print(f"lifeline agent repack: {len(r['damaged'])} damaged pack(s) were left as they are; "
              "run `lifeline agent check --read-data`", file=sys.stderr)
        return 3
    return 0


@_guard
def cmd_rebuild_index(args) -> int:
    repo = _open(args)
    provider = _provider(args, repo)
    with PackProgress("rebuild-index", enabled=args.progress) as progress:
        r = run_rebuild_index(repo, provider, dry_run=args.dry_run, lock_wait=args.lock_wait, progress=progress)
    lines = [f"read {r['packs_read']} packs: {r['packs_indexed']} indexed ({r['chunks_indexed']} chunks), "
             f"{len(r['damaged'])} damaged, {len(r['packs_shredded'])} of crypto-shredded epochs (left out: "
             "`prune` deletes them)"] + [f"note: {n}" for n in r["notes"]]
    if args.dry_run:
        lines.append(f"dry run: the {r['index_segments_before']} index objects were left as they are")
    else:
        lines.append(f"wrote {r['index_segments_written']} index segments ({human_bytes(r['index_bytes'])}), "
                     f"deleted the {r['index_segments_before']} that were there")
    _emit(args, r, "\n".join(lines))
    if r["damaged"]:
        print(printable(_damage_lines(r["damaged"])), file=sys.stderr)
        print(f"lifeline agent rebuild-index: {len(r['damaged'])} damaged pack(s)", file=sys.stderr)
        return 3
    return 0


@_guard
def cmd_points(args) -> int:
    repo = _open(args)
    points, bad = repo.list_points()
    rows = []
    provider = _provider(args, repo) if args.authenticate else None
    for p in points:
        h = p.header
        if args.tag and not set(args.tag) <= set(h.get("tags", [])):
            continue
        if args.source and h.get("source", {}).get("name") != args.source:
            continue
        row = {"point_id": p.id, "type": h.get("type"), "parent_id": h.get("parent"),
               "epoch": h.get("epoch"), "source": h.get("source"), "tags": h.get("tags", []),
               "start_time": h.get("start_time"), "completion_time": h.get("completion_time"),
               "size_bytes": h.get("size_bytes"), "stored_bytes": h.get("stored_bytes"),
               "files": h.get("files"), "key_ref": h.get("key_ref"),
               "chunks_total": h.get("chunks_total"), "chunks_new": h.get("chunks_new")}
        if provider is not None:
            try:  # the header is bound to the sealed tree: opening it with the key authenticates both
                repo.open_point(p.id, provider)  # (authenticated; the entries are not decoded)
                row["manifest_checksum"] = repo.point_checksum(p.id)
            except LifelineError as exc:
                bad[p.name] = str(exc)
                continue
        rows.append(row)
    lines = [f"{'ID':12}  {'TYPE':12}  {'TIME':20}  {'SIZE':>10}  {'STORED':>10}  SOURCE  TAGS"]
    for r in rows:
        lines.append(f"{r['point_id'][:12]}  {r['type']:12}  {r['start_time'][:19]:20}  "
                     f"{human_bytes(r['size_bytes'] or 0):>10}  {human_bytes(r['stored_bytes'] or 0):>10}  "
                     f"{r['source'].get('name')}  {','.join(r['tags'])}")
    for name, why in bad.items():
        lines.append(f"UNREADABLE {name}: {why}")
    _emit(args, {"points": rows, "unreadable": bad}, "\n".join(lines))
    return 3 if bad else 0


@_guard
def cmd_shred(args) -> int:
    if not args.yes:
        raise UsageError("shred makes data unreadable for good: add --yes to confirm")
    repo = _open(args)
    # the same audited path as `lifeline keys shred`: every shred leaves an audit record
    provider = _provider(args, repo) if repo.immutability is not None else None  # seals the tombstone
    result = shred(repo, epoch=args.epoch, point=args.point, lock_wait=args.lock_wait,
                   actor=default_actor(), reason="lifeline agent shred", provider=provider)
    retained = ""
    if result.get("retained"):
        retained = (f"\nthe repository is immutable: {len(result['retained'])} object(s), the wrapped key among them, "
                    f"stay until {result['retained_until']}; lifeline treats the epoch as shredded meanwhile")
    _emit(args, result, f"destroyed the data key of epoch {result['epoch']}; "
                        f"{len(result['points_shredded'])} point(s) are gone: "
                        + ", ".join(result["points_shredded"]) + retained
                        + "\nrun `prune` to delete the unreadable packs")
    return 0


