"""`python tests/agent/slow_agent.py ARGS...` = `lifeline agent ARGS...` on slow storage (tests only).

Every write and delete of the repository's storage first sleeps ``LIFELINE_TEST_WRITE_DELAY`` seconds
(default 0.1), so a ``kill -9`` from a test lands between the agent's writes and deletes at a moment
the test picks, not in the start-up or in a few milliseconds of local disk I/O. The agent itself is
unchanged: only the backends' ``put``/``delete`` are wrapped.
"""
from __future__ import annotations

import functools
import os
import sys
import time


def slow_down(delay: float) -> None:
    from lifeline.repository.backend_file import FileBackend
    from lifeline.repository.backend_object import ObjectStoreBackend

    for cls in (FileBackend, ObjectStoreBackend):
        for name in ("put", "delete"):
            orig = getattr(cls, name)

            @functools.wraps(orig)
            def slow(self, *args, _orig=orig, **kw):
                time.sleep(delay)
                return _orig(self, *args, **kw)

            setattr(cls, name, slow)


if __name__ == "__main__":
    slow_down(float(os.environ.get("LIFELINE_TEST_WRITE_DELAY", "0.1")))
    from lifeline.agent.__main__ import main

    sys.exit(main(sys.argv[1:]))
