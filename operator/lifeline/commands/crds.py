"""`lifeline crds`: write or check the CRDs generated from the models."""
from __future__ import annotations

import sys
from pathlib import Path

from lifeline import crd

DEFAULT_DIRS = ("crds", "charts/lifeline/crds")


def register(sub) -> None:
    p = sub.add_parser(
        "crds",
        help="write the CustomResourceDefinitions generated from the models (or --check them)",
        description="Generate crds/*.yaml and the Helm chart's copy from the pydantic models.",
    )
    p.add_argument("--check", action="store_true", help="fail when the files on disk differ from the models")
    p.add_argument(
        "--dir", dest="dirs", action="append", metavar="DIR",
        help=f"directory to write or check (repeatable; default: {', '.join(DEFAULT_DIRS)})",
    )
    p.add_argument("--stdout", action="store_true", help="print all CRDs as one YAML stream instead")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.stdout:
        sys.stdout.write("---\n".join(crd.render(i) for i in crd.KINDS))
        return 0
    dirs = [Path(d) for d in (args.dirs or DEFAULT_DIRS)]
    if args.check:
        problems = [line for d in dirs for line in crd.drift(d)]
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("CRDs are out of date: run `lifeline crds` (or `make crds`) and commit the result.", file=sys.stderr)
            return 1
        print(f"CRDs match the models ({len(crd.KINDS)} kinds in {', '.join(map(str, dirs))}).")
        return 0
    for d in dirs:
        for path in crd.write_all(d):
            print(path)
    return 0
