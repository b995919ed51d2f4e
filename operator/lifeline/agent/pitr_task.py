"""What a point-in-time restore Job's agent runs: ``python -m lifeline.agent.pitr_task <restore-pitr args>``.

``lifeline agent restore-pitr --json`` does the work (:mod:`lifeline.planning.restore_pitr` says who
chooses what); this wrapper turns its outcome into the restore summary the Restore controller
reads from the termination message (:class:`~lifeline.messages.RestoreSummary`). Exit 3 (a hole in
the WAL before the target) is a failed restore with reason ``WALGap``: the directory then recovers
only to the last good segment, and the message names the missing range. The exit code is
restore-pitr's own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from lifeline.messages import DEFAULT_TERMINATION_LOG, RestoreSummary, termination

WAL_GAP = 3  # restore-pitr's exit code for a hole in the shipped WAL before the target


def summary_of(returncode: int, stdout: str, stderr: str) -> RestoreSummary:
    """The restore summary of one restore-pitr run (its ``--json`` output and its stderr)."""
    try:
        result = json.loads(stdout)
    except ValueError:
        result = {}
    result = result if isinstance(result, dict) else {}
    wal = result.get("wal") or {}
    out = RestoreSummary(ok=returncode == 0, bytes_restored=result.get("bytes"), files=result.get("files"),
                         base_backup=result.get("base_backup"), recovery_target_time=result.get("recovery_target_time"),
                         last_segment=wal.get("last_good"))
    if returncode == WAL_GAP:
        holes = (wal.get("gaps") or [])[:3] + ([wal["damaged"]["name"] + " is damaged"] if wal.get("damaged") else [])
        out.reason = "WALGap"
        out.error = (f"the shipped WAL has a hole before the target: {'; '.join(holes)}; "
                     f"the directory recovers only to {wal.get('last_good')}")
    elif returncode != 0:
        out.reason = "RestoreFailed"
        out.error = (stderr.strip().splitlines() or [f"exit {returncode}"])[-1][-500:]
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    proc = subprocess.run([sys.executable, "-m", "lifeline.agent", "restore-pitr", "--json", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(proc.stderr)
    sys.stdout.write(proc.stdout)
    summary = summary_of(proc.returncode, proc.stdout, proc.stderr)
    termination.write(os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG, summary)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
