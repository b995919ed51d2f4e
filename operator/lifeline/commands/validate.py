"""`lifeline validate FILE...`: check manifests before they reach a cluster (or Git).

Whatever the file holds -- bad UTF-8, a list or a string instead of an object, nesting deep enough
to exhaust the parser -- the answer is a line naming the file and what is wrong, never a traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from lifeline.api.validation import problems_in_manifest

MAX_BYTES = 4 * 1024 * 1024  # far beyond any manifest; the API server's own limit is 3 MiB


def register(sub) -> None:
    p = sub.add_parser("validate", help="check Lifeline manifests against the API models")
    p.add_argument("files", nargs="+", type=Path, help="YAML files (multi-document allowed)")
    p.set_defaults(func=run)


def _documents(path: Path) -> list:
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise ValueError(f"{len(data)} bytes is more than a manifest can be ({MAX_BYTES} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:
        raise ValueError("nested too deeply to be a manifest") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML: {exc}") from None


def run(args) -> int:
    bad = 0
    for path in args.files:
        try:
            docs = _documents(path)
        except (OSError, ValueError) as exc:
            print(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            bad += 1
            continue
        for number, doc in enumerate(docs, 1):
            if not isinstance(doc, dict):
                print(f"{path}: document {number} is a {type(doc).__name__}, not an object with apiVersion and "
                      "kind", file=sys.stderr)
                bad += 1
                continue
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            name = f"{doc.get('kind')}/{meta.get('name')}"
            name = name if len(name) <= 80 else name[:79] + "…"
            try:
                _, _, problems = problems_in_manifest(doc)
            except RecursionError:
                problems = ["nested too deeply to be a manifest"]
            if problems:
                bad += 1
                for p in problems:
                    print(f"{path}: {name}: {p}", file=sys.stderr)
            else:
                print(f"{path}: {name}: valid")
    return 1 if bad else 0
