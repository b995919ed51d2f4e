"""`lifeline validate FILE...`: check manifests before they reach a cluster (or Git)."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from lifeline.api.validation import problems_in_manifest


def register(sub) -> None:
    p = sub.add_parser("validate", help="check Lifeline manifests against the API models")
    p.add_argument("files", nargs="+", type=Path, help="YAML files (multi-document allowed)")
    p.set_defaults(func=run)


def run(args) -> int:
    bad = 0
    for path in args.files:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            bad += 1
            continue
        for doc in docs:
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            _, _, problems = problems_in_manifest(doc)
            if problems:
                bad += 1
                for p in problems:
                    print(f"{path}: {name}: {p}", file=sys.stderr)
            else:
                print(f"{path}: {name}: valid")
    return 1 if bad else 0
