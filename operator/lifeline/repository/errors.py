"""Errors raised by the repository layer, under the root classes of :mod:`lifeline.errors`.

The CLI maps each class to its exit code (``exit_code``: 1 unless the class says otherwise). The
root classes are re-exported here for the modules that name them with the repository's errors.
"""
from __future__ import annotations

from lifeline.errors import LifelineError, UsageError

__all__ = ["BackendError", "CipherUnavailable", "DamagedData", "FormatError", "KeyMismatch", "LifelineError",
           "LockConflict", "ObjectNotFound", "PointNotFound", "RepositoryExists", "RepositoryNotFound",
           "RetentionActive", "ShreddedEpoch", "TamperedData", "UsageError"]


class RepositoryNotFound(LifelineError): ...


class RepositoryExists(LifelineError): ...


class FormatError(LifelineError):
    """An object in the repository does not follow the format (or is a newer version)."""


class CipherUnavailable(LifelineError):
    """The repository's cipher is one this lifeline cannot run (SM4 without an OpenSSL that has it)."""


class KeyMismatch(LifelineError):
    """The key given cannot unwrap the repository's data keys."""

    exit_code = 4


class PointNotFound(LifelineError):
    exit_code = 5


class LockConflict(LifelineError):
    exit_code = 6


class DamagedData(LifelineError):
    """Stored data failed an integrity check (authentication tag, hash, size)."""

    exit_code = 3

    def __init__(self, message: str, *, obj: str | None = None, chunk: str | None = None):
        super().__init__(message)
        self.obj = obj
        self.chunk = chunk


class TamperedData(DamagedData):
    """An authenticated object of the repository's own description (config, catalogue head, index
    segment) failed its MAC: storage changed it, or put back one written with another key."""


class ShreddedEpoch(LifelineError):
    """The epoch's wrapped key is gone: its points are unreadable by design."""

    exit_code = 3

    def __init__(self, epoch: str, tombstone: dict | None = None):
        when = ""
        if tombstone:
            when = (f" at {tombstone.get('shredded_at', '?')} by {tombstone.get('actor', '?')}"
                    + (f" (reason: {tombstone['reason']})" if tombstone.get("reason") else ""))
        super().__init__(f"the data key of epoch {epoch} was destroyed (crypto-shredded){when}; "
                         "points of this epoch cannot be read")
        self.epoch = epoch
        self.tombstone = tombstone


class BackendError(LifelineError):
    """The storage backend failed (I/O error, network, permissions)."""


class ObjectNotFound(BackendError):
    def __init__(self, name: str):
        super().__init__(f"object {name!r} not found in the repository")
        self.name = name


class RetentionActive(BackendError):
    """An immutable repository's object cannot be deleted (or overwritten) yet: its retention has not ended."""

    def __init__(self, name: str, until: float | None = None, message: str | None = None):
        from .layout import rfc3339

        super().__init__(message or f"object {name!r} is retained" + (f" until {rfc3339(until)}" if until else "")
                         + ": an immutable repository deletes it only once its retention has ended")
        self.name = name
        self.until = until
