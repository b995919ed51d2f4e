"""`lifeline audit verify|log|prune`: check, read and trim the hash-chained audit log.

The log lives with the backups (``file:///path/audit`` or ``s3://bucket/audit``; S3
credentials and endpoint from the usual AWS_* variables). ``verify`` exits 0 with a
summary, or 1 naming the first record that was edited, removed, inserted or reordered.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from datetime import datetime, timedelta, timezone

from lifeline.audit import open_store, verify
from lifeline.audit.retention import parse_retention, prune
from lifeline.cli_stderr import guard
from lifeline.errors import UsageError
from lifeline.observability.audit import default_actor


def register(subparsers) -> None:
    audit = subparsers.add_parser("audit", help="verify, read and prune the tamper-evident audit log",
                                  description="The hash-chained audit log kept with the backups.")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("LIFELINE_AUDIT_URL"),
                        help="file:///path/audit or s3://bucket/audit (env LIFELINE_AUDIT_URL)")
    common.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("verify", parents=[common], help="check every record's hash and link; name the first bad one")
    p.add_argument("--anchor", action="append", default=[], metavar="SEQ:HASH",
                   help="a head you noted earlier (from a report or a previous verify): it must still be there "
                        "(catches records removed from the end); repeatable")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("log", parents=[common], help="print records, oldest first")
    p.add_argument("--since", default=None, help="an ISO time (2026-11-01T00:00:00Z) or an age (7d, 12h, 30m)")
    p.add_argument("--action", action="append", default=[], help="only this action (repeatable): backup, restore, "
                                                                 "drill, approval, failover, key-rotation, ...")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("prune", parents=[common], help="drop records older than the retention, from the start only")
    p.add_argument("--retention", default=os.environ.get("LIFELINE_AUDIT_RETENTION") or "6y",
                   help="how long records are kept (default 6y; env LIFELINE_AUDIT_RETENTION)")
    p.add_argument("--actor", default=None, help="who prunes, for the record (default: env LIFELINE_ACTOR or user@host)")
    p.set_defaults(func=cmd_prune)


def _guard(fn):
    """cli_stderr.guard (LifelineError -> its exit code, named `lifeline audit VERB`), after checking --url."""
    @guard(lambda args: f"lifeline audit {args.audit_command}")
    @functools.wraps(fn)
    def wrapped(args) -> int:
        if not args.url:
            raise UsageError("no audit log given: pass --url (file:///path/audit or s3://bucket/audit) "
                             "or set LIFELINE_AUDIT_URL")
        return fn(args)
    return wrapped


def _store(args, create: bool = False):
    return open_store(args.url, create=create)


def parse_anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) < 8 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise UsageError(f"anchor {text!r}: write SEQ:HASH, e.g. 41:3fa9c2… (at least 8 hex digits)")
    return int(seq), digest


@_guard
def cmd_verify(args) -> int:
    anchors = [parse_anchor(a) for a in args.anchor]
    result = verify(_store(args), anchors)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1, sort_keys=True))
    else:
        print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        pass
    try:
        return datetime.now(timezone.utc) - timedelta(seconds=parse_retention(text))
    except UsageError:
        raise UsageError(f"--since {text!r}: give an ISO time (2026-11-01T00:00:00Z) or an age (7d, 12h)") from None


def select(records, since: datetime | None = None, actions: list[str] | None = None):
    """The records at or after ``since`` with one of ``actions`` (all when empty)."""
    for record in records:
        if actions and record.get("action") not in actions:
            continue
        if since is not None:
            when = datetime.fromisoformat(str(record.get("time")).replace("Z", "+00:00"))
            if when < since:
                continue
        yield record


def format_record(record: dict) -> str:
    subject = record.get("subject") or {}
    target = "/".join(x for x in (subject.get("kind"), subject.get("namespace"), subject.get("name")) if x)
    details = record.get("details") or {}
    extra = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(details.items()))
    return (f"{record.get('seq'):>6} {record.get('time')} {record.get('action')} {record.get('outcome')} "
            f"{target} by {record.get('actor')}" + (f" {extra}" if extra else ""))


@_guard
def cmd_log(args) -> int:
    chosen = select(_store(args).records(), _since(args.since), args.action)
    for record in chosen:
        print(json.dumps(record, sort_keys=True) if args.json else format_record(record))
    return 0


@_guard
def cmd_prune(args) -> int:
    result = prune(_store(args), retention=args.retention, actor=args.actor or default_actor())
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    elif result["pruned"]:
        print(f"pruned {result['pruned']} record(s) older than {args.retention}; the log now starts at "
              f"{result['first_seq']} (checkpoint recorded as record {result['prune_record']})")
    else:
        print(f"nothing older than {args.retention} to prune")
    return 0
