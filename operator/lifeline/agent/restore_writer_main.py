"""The entry point of a restore's writer process (``python -m lifeline.agent.restore_writer_main
<target descriptor> [<shared stretches descriptor>]``): what :mod:`.restore_writers` says, on the
writer's side."""
from __future__ import annotations

import sys

from lifeline.repository.crypto import EpochKeys

from .beneath import Beneath
from .helper_process import quiet_child
from .restore import Restorer
from .restore_writers import map_shared, picklable, receive, send


def _serve(root_fd: int, shared_fd: int | None = None) -> int:
    quiet_child()
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    settings = receive(inp)
    if settings is None:
        return 0
    keys = EpochKeys.from_handover(settings.pop("keys"))
    restorer = Restorer.writer(keys, settings)
    if shared_fd is not None:
        restorer.shared = map_shared(shared_fd)
    b = Beneath(root_fd, use_openat2=settings.pop("openat2"))
    zero_ids: set[str] = set()
    while (task := receive(inp)) is not None:
        files, sealed = task
        try:
            answer = restorer.write_small(b, files, sealed, zero_ids)
        except Exception as exc:  # noqa: BLE001 - handed to the main process, which raises it
            answer = {"files": 0, "written": 0, "bytes": 0, "stop": None, "raise": picklable(exc)}
        answer.update(restorer.take_records())
        send(out, answer)
    return 0


if __name__ == "__main__":
    sys.exit(_serve(*map(int, sys.argv[1:3])))
