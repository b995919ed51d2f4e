"""`lifeline keys rotate|shred|check`: key rotation, crypto-shredding and a key health check."""
from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    keys = subparsers.add_parser("keys", help="rotate, shred and check encryption keys (Vault transit)",
                                 description="Key management for lifeline repositories.")
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", "-r", default=os.environ.get("LIFELINE_REPOSITORY"),
                        help="file:///path or s3://bucket/prefix (env LIFELINE_REPOSITORY)")
    common.add_argument("--key", "-k", default=os.environ.get("LIFELINE_KEY"),
                        help="key reference, e.g. vault-transit://lifeline-his?mount=transit (env LIFELINE_KEY; "
                             "default: the one recorded at init)")
    common.add_argument("--json", action="store_true", help="print a JSON summary")
    common.add_argument("--lock-wait", type=float, default=30.0, metavar="SECONDS")
    common.add_argument("--actor", default=None,
                        help="who is doing this, for the record (default: env LIFELINE_ACTOR or user@host)")

    p = sub.add_parser("rotate", parents=[common],
                       help="rotate the transit key and rewrap every epoch's data key (data is not touched)")
    p.add_argument("--min-decryption-version", type=int, default=None, metavar="N",
                   help="afterwards retire versions below N (refused while any epoch still needs one)")
    p.add_argument("--no-rotate", action="store_true", help="only rewrap to the current latest version")
    p.set_defaults(func=cmd_rotate)

    p = sub.add_parser("shred", parents=[common],
                       help="crypto-shred an epoch: destroy its wrapped key, record who and when")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--epoch")
    which.add_argument("--point", help="shred the epoch this point belongs to")
    p.add_argument("--reason", default="", help="recorded in the tombstone")
    p.add_argument("--yes", action="store_true", help="confirm: the data becomes unreadable for good")
    p.set_defaults(func=cmd_shred)

    p = sub.add_parser("check", help="is this key usable now? (reachable, exists, permitted)")
    p.add_argument("--key", "-k", default=os.environ.get("LIFELINE_KEY"), required=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)


def _guard(fn):
    def wrapped(args) -> int:
        from lifeline.repository.errors import LifelineError

        try:
            return fn(args)
        except LifelineError as exc:
            print(f"lifeline keys {args.keys_command}: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130
    wrapped.__name__ = fn.__name__
    return wrapped


def _open(args):
    from lifeline.repository.backend import S3Options, open_backend
    from lifeline.repository.repo import Repository

    return Repository.open(open_backend(args.repo, S3Options()))


def _actor(args) -> str:
    from lifeline.agent.prune import default_actor

    return args.actor or default_actor()


def _emit(args, obj: dict, human: str) -> None:
    print(json.dumps(obj, indent=1, sort_keys=True) if args.json else human)


@_guard
def cmd_rotate(args) -> int:
    from lifeline.keys import provider_from_ref
    from lifeline.keys.rotation import rotate

    repo = _open(args)
    provider = provider_from_ref(args.key or repo.config.get("key_ref"))
    result = rotate(repo, provider, rotate_key=not args.no_rotate,
                    min_decryption_version=args.min_decryption_version, actor=_actor(args),
                    lock_wait=args.lock_wait)
    human = (f"transit key {provider.ref} is at version {result['latest_version']}; rewrapped "
             f"{len(result['rewrapped'])} of {result['epochs']} epoch key(s); no data object was touched")
    if result["min_decryption_version"]:
        human += f"\nversions below {result['min_decryption_version']} can no longer decrypt"
    for s in result["skipped"]:
        human += f"\nskipped epoch {s['epoch']}: wrapped by another key ({s['key_ref']})"
    print(f"lifeline keys rotate: {json.dumps({k: result[k] for k in ('key_ref', 'latest_version', 'actor', 'time')})}"
          f" rewrapped={len(result['rewrapped'])}", file=sys.stderr)  # the record
    _emit(args, result, human)
    return 0


@_guard
def cmd_shred(args) -> int:
    from lifeline.agent.prune import run_shred
    from lifeline.repository.errors import UsageError

    if not args.yes:
        raise UsageError("shred makes data unreadable for good: add --yes to confirm")
    repo = _open(args)
    result = run_shred(repo, epoch=args.epoch, point=args.point, lock_wait=args.lock_wait,
                       actor=_actor(args), reason=args.reason)
    _emit(args, result, f"destroyed the data key of epoch {result['epoch']} at {result['shredded_at']} "
                        f"(by {result['actor']}); {len(result['points_shredded'])} point(s) are gone: "
                        + ", ".join(result["points_shredded"]) + "\nrun `lifeline agent prune` to delete the "
                        "unreadable packs")
    return 0


@_guard
def cmd_check(args) -> int:
    from lifeline.keys.health import check
    from lifeline.repository.errors import UsageError

    if not args.key:
        raise UsageError("pass --key (or set LIFELINE_KEY)")
    status, reason, message = check(args.key)
    _emit(args, {"status": status, "reason": reason, "message": message}, f"{status} {reason}: {message}")
    return 0 if status == "True" else 4
