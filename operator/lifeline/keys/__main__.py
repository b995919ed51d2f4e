"""`python -m lifeline.keys ...` = `lifeline keys ...` without importing the operator's modules
(the full CLI loads kopf and kubernetes: about two seconds)."""
from __future__ import annotations

import argparse
import sys

from lifeline.commands import keys as commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "keys":
        argv.insert(0, "keys")
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
