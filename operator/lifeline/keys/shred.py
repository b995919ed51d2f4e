"""Crypto-shredding, one code path for `lifeline keys shred` and for RecoveryPoint deletion.

The unit is the key epoch (a full backup and the incrementals/differentials on it):
:func:`run_shred` writes the tombstone (time, actor, reason) and
deletes the epoch's wrapped key. With ``destroy_key_version`` and a ``vault-kv://`` key,
the KV version that wrapped it is destroyed too (``kv destroy``) — refused, before
anything is touched, while another epoch of the repository still needs that version.
Every outcome goes to the audit trail as ``key-shred``.

An immutable repository (docs/immutability.md) cannot delete the wrapped key, nor the points,
before their retention ends: the shred then needs the key, seals the tombstone under the epoch's
own key (so nobody holding only the bucket can fake a shred), and from then on lifeline treats
the epoch as shredded; the objects go with the first prune after their retention. Until then,
whoever holds both the bucket and the key provider could still unwrap the key: what makes it
unreadable at once is destroying what unwraps it, in the key service (``destroy_key_version``).
"""
from __future__ import annotations

import base64
import time

from lifeline.errors import LifelineError, UsageError
from lifeline.observability import audit
from lifeline.repository.errors import RetentionActive
from lifeline.repository.layout import point_name, rfc3339
from lifeline.repository.repo import Repository

from .rotation import _key_id


def add_target_arguments(parser) -> None:
    """What both shred commands (``lifeline agent shred``, ``lifeline keys shred``) are told: which
    epoch (directly or by one of its points), and ``--yes``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--epoch")
    which.add_argument("--point", help="shred the epoch this point belongs to")
    parser.add_argument("--yes", action="store_true", help="confirm: the data becomes unreadable for good")


def epoch_of(repo, *, epoch: str | None, point: str | None) -> str:
    if point:
        return repo.resolve_point(point).header["epoch"]
    if not epoch:
        raise UsageError("give --epoch or --point")
    return epoch


def _kv_version_plan(repo, epoch: str, provider) -> int:
    """The KV version to destroy with this epoch; raises when another epoch still needs it."""
    if provider is None or not hasattr(provider, "destroy_versions"):
        raise UsageError("--destroy-key-version applies to vault-kv:// keys only: a transit key's versions are "
                         "shared by every epoch (the wrapped key's deletion is the shred; retire old transit "
                         "versions with `lifeline keys rotate --min-decryption-version N`)")
    versions = _kv_versions(repo, epoch, provider)  # every form: an immutable repository keeps the old ones
    if 0 in versions:
        raise UsageError("the key sits on a KV v1 mount, which has no versions to destroy; only the wrapped key "
                         "can be shredded (leave out --destroy-key-version)")
    for version in sorted(versions):
        others = [e for e in repo.list_epochs() if e != epoch and version in _kv_versions(repo, e, provider)]
        if others:
            raise UsageError(f"not destroying version {version} of {provider.cfg.data_path}: epoch(s) "
                             f"{', '.join(sorted(others))} are still wrapped under it. Rotate first (`lifeline keys "
                             "rotate` moves them to a new version), then shred")
    return max(versions)


def _kv_versions(repo, epoch: str, provider) -> set[int]:
    """The KV versions of ``provider``'s secret that wrap a form of the epoch's key."""
    out = set()
    for _name, rec in repo.epoch_records(epoch):
        if isinstance(rec, dict) and _key_id(rec.get("key_ref") or provider.ref) == _key_id(provider.ref):
            out.add(provider.version_of(base64.b64decode(rec["wrapped"])))
    return out


def shred(repo, *, epoch: str | None = None, point: str | None = None, actor: str, reason: str = "",
          provider=None, destroy_key_version: bool = False, lock_wait: float = 0.0,
          subject: dict | None = None) -> dict:
    """Shred one epoch (by id or by one of its points) and audit it; returns what happened."""
    subject = subject or {"kind": "KeyEpoch", "namespace": "", "name": epoch or point or "?",
                          "repository": repo.url}
    details = {"repository": repo.url, "reason": reason}
    try:
        epoch = epoch_of(repo, epoch=epoch, point=point)
        details["epoch"] = epoch
        version = _kv_version_plan(repo, epoch, provider) if destroy_key_version else None
        versions = sorted(_kv_versions(repo, epoch, provider)) if version is not None else []
        result = run_shred(repo, epoch=epoch, lock_wait=lock_wait, actor=actor, reason=reason, provider=provider)
        if version is not None:
            provider.destroy_versions(versions)
            result["destroyed_key_version"] = version
            result["destroyed_key_versions"] = versions
            result["key_ref"] = provider.ref
    except LifelineError as exc:
        audit.record("key-shred", actor=actor, outcome="failed", subject=subject,
                     details={**details, "error": str(exc)})
        raise
    audit.record("key-shred", actor=actor, outcome="succeeded", subject=subject,
                 details={**details, "points": result["points_shredded"], "shredded_at": result["shredded_at"],
                          **({"destroyed_key_version": result["destroyed_key_version"]}
                             if "destroyed_key_version" in result else {})})
    return result


def run_shred(repo: Repository, *, epoch: str | None = None, point: str | None = None,
              lock_wait: float = 0.0, actor: str | None = None, reason: str | None = None, provider=None) -> dict:
    """Destroy an epoch's wrapped key (and drop its now unreadable points).

    A tombstone ``shredded/<epoch>`` (time, actor, reason, point ids; no key material) is
    written first, so a later restore says when and by whom the key was destroyed."""
    lock = repo.lock(exclusive=True, command="shred", wait=lock_wait)
    try:
        points, _bad = repo.list_points()
        if point:
            epoch = repo.resolve_point(point, points).header["epoch"]
        if not epoch or epoch not in repo.list_epochs():
            raise LifelineError(f"no key epoch {epoch!r} in {repo.url}")
        victims = [p for p in points if p.header.get("epoch") == epoch]
        record = repo.epoch_record(epoch)
        tombstone = {"version": 1, "epoch": epoch, "key_ref": record.get("key_ref"),
                     "points": [p.id for p in victims], "shredded_at": rfc3339(time.time()),
                     "actor": actor or audit.default_actor(), "reason": reason or ""}
        keys = None
        if repo.immutability is not None:  # the tombstone is what shreds, until retention ends: seal it
            if provider is None:
                raise UsageError(f"{repo.url} is immutable: its key objects stay until their retention ends, so a "
                                 "shred there is a tombstone sealed with the epoch's key, and needs --key (anyone "
                                 "could write one without)")
            keys = repo.epoch_keys(epoch, provider)
        retained = repo.shred_epoch(epoch, tombstone, keys=keys)  # from here on the data is unreadable
        for p in victims:
            try:
                repo.backend.delete(point_name(p.id))
            except RetentionActive as exc:
                retained.append({"object": point_name(p.id), "until": rfc3339(exc.until) if exc.until else None})
        out = {"epoch": epoch, "points_shredded": [p.id for p in victims],
               "shredded_at": tombstone["shredded_at"], "actor": tombstone["actor"]}
        if repo.immutability is not None:
            out["retained"] = retained
            out["retained_until"] = max((r["until"] for r in retained if r["until"]), default=None)
        return out
    finally:
        lock.release()
