"""A Restore's emptiness guard: ``python -m lifeline.agent.target_guard <directory> <claim:path shown>``.

An init container in front of the restore agent (:mod:`lifeline.planning.restore_run`): a target
that holds anything (``lost+found`` aside) stops the Job before a byte is written, with a restore
summary (reason ``TargetNotEmpty``) the Restore controller reads like the agent's own.
Exit codes: 0 empty or missing, 2 not empty.
"""
from __future__ import annotations

import os
import sys

from lifeline.messages import DEFAULT_TERMINATION_LOG, RestoreSummary, termination

NOT_EMPTY = 2


def refusal(path: str, shown: str) -> RestoreSummary | None:
    """Why ``path`` may not be restored into, or None when it is empty (or missing)."""
    entries = sorted(e for e in os.listdir(path) if e != "lost+found") if os.path.isdir(path) else []
    if not entries:
        return None
    listed = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return RestoreSummary(ok=False, reason="TargetNotEmpty",
                          error=f"target {shown} is not empty ({len(entries)} entries: {listed}): nothing was "
                                "written; set overwrite: true in a new Restore to restore over it")


def main(argv: list[str] | None = None) -> int:
    path, shown = list(sys.argv[1:] if argv is None else argv)[:2]
    refused = refusal(path, shown)
    if refused is None:
        return 0
    termination.write(os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG, refused)
    print(refused.error, file=sys.stderr)
    return NOT_EMPTY


if __name__ == "__main__":
    sys.exit(main())
