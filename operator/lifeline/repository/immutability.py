"""Immutable repositories (issue 18; docs/immutability.md): what ``init --immutable-days N
--immutable-mode compliance|governance`` records, and the retention arithmetic the commands share.

In an immutable repository every object is written once, with its retention set by the write itself
(S3 Object Lock: mode and retain-until date), and nothing is overwritten or deleted before its
retention ends — so whoever holds the backup credentials (ransomware) can neither delete nor change
what a point needs: a delete leaves a delete marker, an overwrite a newer version, and lifeline reads
the first version of every name (:mod:`.backend_s3_locked`).

* Objects get ``days`` of retention when written; lock records (:mod:`.locks`) only
  :data:`LOCK_RETENTION`, since they are never deleted before it ends and a lock is stale after 30 min.
* ``prune`` (and ``repack``) delete only objects whose retention has ended, and *extend* the retention
  of everything the points they keep still need (:func:`secure`): to at least ``days`` from now, by
  ``days`` plus a slack (:func:`slack`) so that a daily prune does not extend every object every day.
  So after each prune, what the kept points need is retained at least ``days`` longer: after an attack
  there are ``days`` minus the time since the last prune to restore from it.
* ``check`` reports objects whose retention is shorter than that (:func:`audit`).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lifeline.errors import UsageError

from .errors import FormatError, ObjectNotFound, RetentionActive
from .layout import CONFIG, rfc3339

MODES = ("compliance", "governance")
DAY = 86400


def day_seconds() -> int:
    """How long a retention "day" is: 86400 s, unless the tests shorten it (``LIFELINE_RETENTION_DAY_SECONDS``,
    so that retention can end within a test; never set it on a real repository)."""
    try:
        return max(1, int(os.environ.get("LIFELINE_RETENTION_DAY_SECONDS", "") or DAY))
    except ValueError:
        return DAY


MAX_DAYS = 36500
# A lock record is retained this long (it expires instead of being deleted; stale after 30 minutes).
LOCK_RETENTION = 2 * 3600


@dataclass(frozen=True)
class Retention:
    """An object version's retention as storage reports it (``until``: Unix time; None: none set)."""

    mode: str | None
    until: float | None


@dataclass(frozen=True)
class Immutability:
    mode: str  # compliance | governance
    days: int

    @property
    def seconds(self) -> int:
        return self.days * day_seconds()

    def until(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) + self.seconds

    def as_config(self) -> dict:
        return {"mode": self.mode, "days": self.days}

    def describe(self) -> str:
        return f"{self.mode} mode, {self.days} day{'s' if self.days != 1 else ''}"


def settings(mode: str | None, days: int | None) -> Immutability | None:
    """The settings ``init`` was given (None: a mutable repository); UsageError when they do not hold."""
    if days is None:
        if mode is not None:
            raise UsageError("--immutable-mode needs --immutable-days N")
        return None
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"--immutable-days must be between 1 and {MAX_DAYS}")
    mode = (mode or "compliance").lower()
    if mode not in MODES:
        raise UsageError(f"--immutable-mode must be one of {', '.join(MODES)}")
    return Immutability(mode, days)


def from_config(url: str, config: dict) -> Immutability | None:
    """The config's ``immutable`` settings (None: a mutable repository); FormatError when malformed."""
    raw = config.get("immutable")
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("mode") not in MODES or type(raw.get("days")) is not int \
            or not 1 <= raw["days"] <= MAX_DAYS:
        raise FormatError(f"the repository {CONFIG} at {url} has malformed immutability settings {raw!r}")
    return Immutability(raw["mode"], raw["days"])


def slack(imm: Immutability) -> int:
    """How much longer than ``days`` prune extends a retention: a quarter of it, at least a day."""
    return max(day_seconds(), imm.seconds // 4)


def floor(imm: Immutability, now: float) -> float:
    """What prune makes every needed object retained until, at least."""
    return now + imm.seconds


def expired_by_age(imm: Immutability, mtime: float | None, now: float) -> bool:
    """Whether an object written at ``mtime`` may be past its retention (it was written with ``days``
    and retention never shortens: younger objects certainly are not; older ones may have been extended)."""
    return mtime is not None and mtime + imm.seconds <= now


def secure(backend, needs, imm: Immutability, now: float | None = None, *, workers: int = 8) -> dict:
    """Make each object retained for as long as what remains needs it. ``needs``: names (needed by kept
    points: until :func:`floor`), or {name: until} (needed only by a point that stays until then).
    An object retained less long is extended: to :func:`floor` + :func:`slack`, so that the next daily
    prune need not extend it again, or exactly to a date before that. One HEAD per object, and one
    PutObjectRetention where it is short. Returns {"checked", "extended", "missing": [names]}."""
    now = time.time() if now is None else now
    low = floor(imm, now)
    if not isinstance(needs, dict):
        needs = dict.fromkeys(needs, low)

    def one(item: tuple[str, float]):
        name, until = item
        try:
            r = backend.retention(name)
        except ObjectNotFound:
            return name, None
        if r is not None and r.until is not None and r.until >= until:
            return name, False
        backend.extend_retention(name, until + slack(imm) if until >= low else until, r)
        return name, True

    out = {"checked": len(needs), "extended": 0, "missing": []}
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="retention") as ex:
        for name, extended in ex.map(one, sorted(needs.items())):
            if extended is None:
                out["missing"].append(name)
            elif extended:
                out["extended"] += 1
    return out


def delete_expired(backend, names, imm: Immutability, mtimes: dict[str, float | None] | None = None,
                   now: float | None = None) -> tuple[list[str], list[dict]]:
    """Delete what of ``names`` is past retention; returns (deleted, retained: [{"object", "until"}]).
    Objects younger than ``days`` are not even tried (they cannot be past it)."""
    now = time.time() if now is None else now
    deleted, retained = [], []
    for name in names:
        mtime = (mtimes or {}).get(name)
        if mtime is not None and not expired_by_age(imm, mtime, now):
            retained.append({"object": name, "until": rfc3339(mtime + imm.seconds)})
            continue
        try:
            backend.delete(name)
            deleted.append(name)
        except RetentionActive as exc:
            retained.append({"object": name, "until": rfc3339(exc.until) if exc.until else None})
    return deleted, retained


def audit(backend, infos, imm: Immutability, *, workers: int = 8) -> list[dict]:
    """Objects among ``infos`` (ObjectInfo: name and write time) whose retention ends sooner than ``days``
    after they were written, is of another mode than the repository's, or is not set at all:
    [{"object", "until", "mode", "expected"}]. One HEAD per object. The date is set by the writer's clock
    before the upload and stored to the second; the write time is the server's, after it: a few seconds
    (at most 5 minutes of clock skew, a hundredth of the retention) are not counted against it."""
    slop = min(300.0, max(2.0, imm.seconds / 100))

    def one(info):
        try:
            r = backend.retention(info.name)
        except ObjectNotFound:
            return None
        want = (info.mtime if info.mtime is not None else time.time()) + imm.seconds
        mode = (r.mode or "").lower() or None if r is not None else None
        if r is None or r.until is None or r.until + slop < want or mode != imm.mode:
            return {"object": info.name, "until": rfc3339(r.until) if r is not None and r.until else None,
                    "mode": mode, "expected": f"{imm.mode} until at least {rfc3339(want)}"}
        return None

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="retention") as ex:
        return [x for x in ex.map(one, list(infos)) if x is not None]
