"""`lifeline keys rotate|shred|check`: key rotation, crypto-shredding and a key health check.

Rotation and shredding are DR actions: each ends in one ``audit.record`` (``key-rotation``,
``key-shred``) whose actor is ``--actor``, else ``LIFELINE_ACTOR``, else the Vault token's
display name (when the key is in Vault and Vault answers), else ``user@host``."""
from __future__ import annotations

import argparse
import json
import os

from lifeline.cli_stderr import audit_to_stderr, guard
from lifeline.errors import LifelineError, UsageError
from lifeline.keys.choice import provider_for
from lifeline.keys.health import check
from lifeline.keys.rotation import rotate
from lifeline.keys.shred import add_target_arguments as add_shred_arguments, shred
from lifeline.observability import audit
from lifeline.observability.audit import default_actor
from lifeline.repository.backend import S3Options, open_backend
from lifeline.repository.repo import Repository


def register(subparsers) -> None:
    keys = subparsers.add_parser("keys", help="rotate, shred and check encryption keys (Vault transit/KV)",
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
    add_shred_arguments(p)
    p.add_argument("--reason", default="", help="recorded in the tombstone")
    p.add_argument("--destroy-key-version", action="store_true",
                   help="vault-kv:// keys: also destroy the KV version that wrapped this epoch (`kv destroy`; "
                        "refused while another epoch still needs it)")
    p.set_defaults(func=cmd_shred)

    p = sub.add_parser("check", help="is this key usable now? (reachable, exists, permitted)")
    p.add_argument("--key", "-k", default=os.environ.get("LIFELINE_KEY"), required=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)


_guard = guard(lambda args: f"lifeline keys {args.keys_command}")


def _open(args):
    return Repository.open(open_backend(args.repo, S3Options()))


def _actor(args, provider=None) -> str:
    """--actor, LIFELINE_ACTOR, the Vault token's display name, or user@host."""
    if args.actor or os.environ.get("LIFELINE_ACTOR"):
        return args.actor or os.environ["LIFELINE_ACTOR"]
    if provider is not None and hasattr(provider, "client"):
        try:
            provider.client()
        except LifelineError:
            pass
        if getattr(provider, "identity", None):
            return f"vault:{provider.identity}"
    return default_actor()


def _provider(args, repo):
    return provider_for(repo, args.key)


def _emit(args, obj: dict, human: str) -> None:
    print(json.dumps(obj, indent=1, sort_keys=True) if args.json else human)


@_guard
def cmd_rotate(args) -> int:
    audit_to_stderr("lifeline keys")
    repo = _open(args)
    provider = _provider(args, repo)
    actor = _actor(args, provider)
    subject = {"kind": "Key", "namespace": "", "name": provider.ref, "repository": repo.url}
    try:
        result = rotate(repo, provider, rotate_key=not args.no_rotate,
                        min_decryption_version=args.min_decryption_version, actor=actor,
                        lock_wait=args.lock_wait)
    except LifelineError as exc:
        audit.record("key-rotation", actor=actor, outcome="failed", subject=subject,
                     details={"repository": repo.url, "error": str(exc)})
        raise
    audit.record("key-rotation", actor=actor, outcome="succeeded", subject=subject,
                 details={"repository": repo.url, "latest_version": result["latest_version"],
                          "rewrapped": len(result["rewrapped"]), "epochs": result["epochs"],
                          "min_decryption_version": result["min_decryption_version"]})
    human = (f"key {provider.ref} is at version {result['latest_version']}; rewrapped "
             f"{len(result['rewrapped'])} of {result['epochs']} epoch key(s); no data object was touched")
    if result["min_decryption_version"]:
        human += f"\nversions below {result['min_decryption_version']} can no longer decrypt"
    for s in result["skipped"]:
        human += f"\nskipped epoch {s['epoch']}: wrapped by another key ({s['key_ref']})"
    _emit(args, result, human)
    return 0


@_guard
def cmd_shred(args) -> int:
    if not args.yes:
        raise UsageError("shred makes data unreadable for good: add --yes to confirm")
    audit_to_stderr("lifeline keys")
    repo = _open(args)
    provider = None  # needed for --destroy-key-version and immutable repositories; else only to name the actor
    if args.destroy_key_version or repo.immutability is not None:
        provider = _provider(args, repo)
    elif not (args.actor or os.environ.get("LIFELINE_ACTOR")):
        try:
            provider = _provider(args, repo)
        except LifelineError:
            provider = None
    result = shred(repo, epoch=args.epoch, point=args.point, lock_wait=args.lock_wait,
                   actor=_actor(args, provider), reason=args.reason, provider=provider,
                   destroy_key_version=args.destroy_key_version)
    human = (f"destroyed the data key of epoch {result['epoch']} at {result['shredded_at']} "
             f"(by {result['actor']}); {len(result['points_shredded'])} point(s) are gone: "
             + ", ".join(result["points_shredded"]))
    if "destroyed_key_version" in result:
        human += f"\ndestroyed version {result['destroyed_key_version']} of {result['key_ref']}"
    if result.get("retained"):
        human += (f"\nthe repository is immutable: {len(result['retained'])} object(s), the wrapped key among them, stay "
                  f"until {result['retained_until']} (lifeline treats the epoch as shredded meanwhile)")
    _emit(args, result, human + "\nrun `lifeline agent prune` to delete the unreadable packs")
    return 0


@_guard
def cmd_check(args) -> int:
    if not args.key:
        raise UsageError("pass --key (or set LIFELINE_KEY)")
    status, reason, message = check(args.key)
    _emit(args, {"status": status, "reason": reason, "message": message}, f"{status} {reason}: {message}")
    return 0 if status == "True" else 4
