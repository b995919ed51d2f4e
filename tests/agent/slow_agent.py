"""`python tests/agent/slow_agent.py ARGS...` = `lifeline agent ARGS...` on slow storage (tests only).

Every write and delete of the repository's storage first sleeps ``LIFELINE_TEST_WRITE_DELAY`` seconds
(default 0.1), so a ``kill -9`` from a test lands between the agent's writes and deletes at a moment
the test picks, not in the start-up or in a few milliseconds of local disk I/O. The agent itself is
unchanged: only the backends' ``put``/``delete`` are wrapped.

Two more knobs, for tests that aim a kill at one write among all of a run's writes:

* ``LIFELINE_TEST_WRITE_LOG=PATH``: every write and delete appends a line ``put NAME`` / ``delete NAME``
  to PATH as it starts (a run that is not killed counts the writes a second run will make);
* ``LIFELINE_TEST_KILL_AT=N`` with ``LIFELINE_TEST_KILL_AFTER=SECONDS``: when the N-th write or delete
  (1-based, in the order they start, from any thread) starts, the process sends itself SIGKILL SECONDS
  later; meanwhile that call and every other thread go on as usual. SECONDS below the delay kills it
  before the N-th write reaches storage, above it during or after that write.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time


def slow_down(delay: float, *, log: str | None = None, kill_at: int | None = None,
              kill_after: float = 0.0) -> None:
    from lifeline.repository.backend_file import FileBackend
    from lifeline.repository.backend_object import ObjectStoreBackend

    lock = threading.Lock()
    count = [0]

    def started(name: str, obj: str) -> None:
        with lock:
            count[0] += 1
            n = count[0]
            if log:
                with open(log, "a") as f:
                    f.write(f"{name} {obj}\n")
        if kill_at is not None and n == kill_at:
            threading.Timer(kill_after, os.kill, (os.getpid(), signal.SIGKILL)).start()

    for cls in (FileBackend, ObjectStoreBackend):
        for name in ("put", "delete"):
            orig = getattr(cls, name)

            @functools.wraps(orig)
            def slow(self, obj, *args, _orig=orig, _name=name, **kw):
                started(_name, obj)
                time.sleep(delay)
                return _orig(self, obj, *args, **kw)

            setattr(cls, name, slow)


if __name__ == "__main__":
    at = os.environ.get("LIFELINE_TEST_KILL_AT")
    slow_down(float(os.environ.get("LIFELINE_TEST_WRITE_DELAY", "0.1")), log=os.environ.get("LIFELINE_TEST_WRITE_LOG"),
              kill_at=int(at) if at else None, kill_after=float(os.environ.get("LIFELINE_TEST_KILL_AFTER", "0")))
    from lifeline.agent.__main__ import main

    sys.exit(main(sys.argv[1:]))
