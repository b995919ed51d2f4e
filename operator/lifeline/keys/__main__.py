"""`python -m lifeline.keys ...` = `lifeline keys ...` without importing the operator's modules
(the full CLI loads kopf and kubernetes: about two seconds)."""
from __future__ import annotations

import sys

from lifeline.cli_area import run_area
from lifeline.commands import keys as commands


def main(argv: list[str] | None = None) -> int:
    return run_area(commands.register, "keys", argv)


if __name__ == "__main__":
    sys.exit(main())
