"""`lifeline ...`: one entry point; each area registers its own sub-commands.

Sub-command modules expose ``register(subparsers)``; adding an area means adding
a line to ``_AREAS``, nothing else moves.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lifeline import __version__

_AREAS = (
    "lifeline.commands.crds",
    "lifeline.commands.operator",
    "lifeline.commands.validate",
    "lifeline.commands.dev",
    "lifeline.commands.failover",
    "lifeline.commands.backup",
    "lifeline.agent.cli",
    "lifeline.commands.keys",
    "lifeline.commands.audit",
    "lifeline.commands.report",
    "lifeline.commands.restore",
    "lifeline.commands.shred",
    "lifeline.commands.drill",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifeline",
        description="Disaster-recovery control plane for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"lifeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for area in _AREAS:
        importlib.import_module(area).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
