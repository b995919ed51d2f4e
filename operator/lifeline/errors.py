"""The root of the errors a person can act on; below every package, so any layer raises and catches them.

Every error carries a message written for the person at the terminal: what went wrong and what
to do about it. A CLI prints ``str(error)`` and exits with the class's ``exit_code``; no traceback
is shown for these. Errors of one area subclass these there (:mod:`lifeline.repository.errors`).
"""
from __future__ import annotations


class LifelineError(Exception):
    """Base class: an error the user can act on."""

    exit_code = 1


class UsageError(LifelineError):
    """Bad arguments or a missing/invalid input named by the user."""

    exit_code = 2
