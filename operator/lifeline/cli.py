"""`lifeline ...`: one entry point; each area registers its own sub-commands.

Sub-command modules expose ``register(subparsers)``; adding an area means adding its
commands to ``_AREAS``, nothing else moves. A command imports only its own area: the
areas together import kopf, the Kubernetes client and every model (~1.9 s before the
first line of output), and ``lifeline backup now`` needs less than half of that.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lifeline import __version__

_AREAS = {  # each top-level command -> the module that registers it
    "crds": "lifeline.commands.crds",
    "operator": "lifeline.commands.operator",
    "validate": "lifeline.commands.validate",
    "dev": "lifeline.commands.dev",
    "demo": "lifeline.commands.dev",
    "failover": "lifeline.commands.failover",
    "backup": "lifeline.commands.backup",
    "agent": "lifeline.agent.cli",
    "keys": "lifeline.commands.keys",
    "audit": "lifeline.commands.audit",
    "report": "lifeline.commands.report",
    "restore": "lifeline.commands.restore",
    "shred": "lifeline.commands.shred",
    "drill": "lifeline.commands.drill",
}


def _areas_for(argv: list[str] | None) -> list[str]:
    """The areas to register for ``argv``: the command's own, or all of them when there is none
    to read (no command, ``--help``, a misspelt one: then the help and the error list every command)."""
    command = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    if command in _AREAS:
        return [_AREAS[command]]
    return list(dict.fromkeys(_AREAS.values()))


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with every area's commands, or with only those of the area ``argv`` names."""
    parser = argparse.ArgumentParser(
        prog="lifeline",
        description="Disaster-recovery control plane for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"lifeline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for area in _areas_for(argv):
        importlib.import_module(area).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
