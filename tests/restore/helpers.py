"""What the restore tests share: people acting through the CLI, and the operator's records."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from lifeline.cli import build_parser
from lifeline.commands import restore as restore_cmd
from tests.backup.conftest import events  # noqa: F401 - the restore tests' Events, as the backup tests read them

NS = "hospital"


async def decide(kubeconfig: Path, verb: str, name: str, comment: str = "") -> tuple[int, str]:
    """`lifeline restore approve|reject NAME` as the person of ``kubeconfig``: (exit code, output)."""
    args = build_parser().parse_args(["restore", verb, name, "--kubeconfig", str(kubeconfig), "-n", NS,
                                      "--comment", comment])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = await restore_cmd._decide(args)
    return code, out.getvalue()


def stored(emulator, name: str) -> dict:
    return emulator.stored("dr.lifeline.io/v1alpha1/restores", NS, name)


def phase(emulator, name: str) -> str | None:
    return ((stored(emulator, name) or {}).get("status") or {}).get("phase")
