"""What a `lifeline …` command writes to stderr besides its own output: errors and audit records.

Errors: one line and an exit code instead of a traceback. A
:class:`~lifeline.errors.LifelineError` already says what went wrong and what to do;
the command only prefixes its own name and exits with the error's code (130 when interrupted).

Audit records: a command run by a person shows the records its DR action writes (in the
operator, its logging configuration does that instead).

Arguments: a check that raises a :class:`~lifeline.errors.UsageError` serves as an argparse type
(:func:`arg_type`), so a bad value is refused in argparse's words before the command runs.
"""
from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import Callable, TypeVar

from lifeline.errors import LifelineError, UsageError

T = TypeVar("T")


def guard(command: Callable[[object], str], *, os_errors: bool = False):
    """Decorator for a ``func(args) -> int`` command; ``command(args)`` names it, e.g. ``lifeline keys rotate``."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(args) -> int:
            try:
                return fn(args)
            except LifelineError as exc:
                print(f"{command(args)}: error: {exc}", file=sys.stderr)
                return exc.exit_code
            except KeyboardInterrupt:
                return 130
            except OSError as exc:
                if not os_errors:
                    raise
                where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
                print(f"{command(args)}: error: {exc.strerror or exc}{where}", file=sys.stderr)
                return 1

        return wrapped
    return decorate


def audit_to_stderr(prefix: str) -> None:
    """Print ``lifeline.audit`` records as ``<prefix>: <record>`` unless logging is configured already."""
    log = logging.getLogger("lifeline.audit")
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def arg_type(check: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` from ``check``: its UsageError becomes argparse's error, with the same words."""
    @functools.wraps(check)
    def convert(text: str) -> T:
        try:
            return check(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert
