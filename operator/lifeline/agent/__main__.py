"""`python -m lifeline.agent ...` = `lifeline agent ...` without loading the operator's modules.

The full CLI imports every area (kopf, kubernetes: about a second); backup Jobs and
scripts that only need the data plane start faster through this entry point.
"""
from __future__ import annotations

import sys

from lifeline.cli_area import run_area

from . import cli


def main(argv: list[str] | None = None) -> int:
    return run_area(cli.register, "agent", argv)


if __name__ == "__main__":
    sys.exit(main())
