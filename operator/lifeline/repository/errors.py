"""Errors raised by the repository layer.

Every error carries a message written for the person at the terminal: what went
wrong and what to do about it. The agent CLI prints ``str(error)`` and maps the
class to an exit code; no traceback is shown for these.
"""
from __future__ import annotations


class LifelineError(Exception):
    """Base class: an error the user can act on."""

    exit_code = 1


class UsageError(LifelineError):
    """Bad arguments or a missing/invalid input named by the user."""

    exit_code = 2


class RepositoryNotFound(LifelineError):
    exit_code = 1


class RepositoryExists(LifelineError):
    exit_code = 1


class FormatError(LifelineError):
    """An object in the repository does not follow the format (or is a newer version)."""

    exit_code = 1


class CipherUnavailable(LifelineError):
    """The repository's cipher is one this lifeline cannot run (SM4 without an OpenSSL that has it)."""

    exit_code = 1


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


class BackendError(LifelineError):
    """The storage backend failed (I/O error, network, permissions)."""

    exit_code = 1


class ObjectNotFound(BackendError):
    def __init__(self, name: str):
        super().__init__(f"object {name!r} not found in the repository")
        self.name = name
