"""`python -m lifeline.<area> ...` = `lifeline <area> ...` with only that area's commands loaded.

The full CLI imports every area (kopf, kubernetes: a second or two); backup Jobs and scripts
that need one area start faster through its own entry point.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable


def run_area(register: Callable[[object], None], area: str, argv: list[str] | None = None) -> int:
    """Parse ``argv`` (the word ``area`` may be left out) with the commands ``register`` adds, and run it."""
    parser = argparse.ArgumentParser(prog="lifeline")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != area:
        argv.insert(0, area)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
