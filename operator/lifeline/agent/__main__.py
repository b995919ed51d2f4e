"""`python -m lifeline.agent ...` = `lifeline agent ...` without loading the operator's modules.

The full CLI imports every area (kopf, kubernetes: about a second); backup Jobs and
scripts that only need the data plane start faster through this entry point.
"""
from __future__ import annotations

import argparse
import sys

from . import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli.register(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "agent":
        argv.insert(0, "agent")
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
