"""kubectl and helm for the dev stack: the checkout's ``.tools/bin`` (``make`` unpacks them), else PATH."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _tool(name: str) -> Path | None:
    local = ROOT / ".tools" / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def kubectl_path() -> Path | None:
    return _tool("kubectl")


def helm_path() -> Path | None:
    return _tool("helm")


__all__ = ["helm_path", "kubectl_path"]
