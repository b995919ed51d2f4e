"""The entry point of the helper process that checks the second half of a large tree while the
restore checks the first (``python -m lifeline.agent.manifest_check_main``; see
:func:`.manifest_check.checked_plan`). It reads one frame (the compressed tree and where its second
half begins), answers with one frame (that half's run and plan, or its refusal), and exits. It is
given no key, no storage and no target: only the tree's text, which the restore decrypted."""
from __future__ import annotations

import sys

from lifeline.repository.tree import Tree

from .helper_process import quiet_child
from .manifest_check import check_second_half
from .restore_writers import picklable, receive, send


def _serve() -> int:
    quiet_child()
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but the frame on the pipe
    task = receive(inp)
    if task is None:
        return 0
    tree = Tree(task["name"], task["compressed"], task["version"])
    try:
        answer = check_second_half(tree, task["at"], task["point_id"], task["includes"])
    except Exception as exc:  # noqa: BLE001 - the tree cannot be read: the restore reads it whole
        answer = {"split": False, "why": f"{type(exc).__name__}: {exc}"}
    if "raise" in answer:
        answer["raise"] = picklable(answer["raise"])
    send(out, answer)
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
