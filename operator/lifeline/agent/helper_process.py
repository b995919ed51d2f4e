"""Starting the agent's helper processes (a restore's writers, a backup's read-ahead) so that
nothing of the place they run in steers them.

``python -P -m``: without ``-P``, ``-m`` searches the working directory for modules first, and the
working directory may be a tenant's source or a restore target, where a planted ``lifeline/``
would run in the helper. A helper runs from ``/``, finds its modules where this process found them,
and gets only the environment it needs: no storage credentials, key references or Vault tokens
(a writer gets the keys it needs over its pipe; the read-ahead needs none)."""
from __future__ import annotations

import os
import subprocess
import sys

_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONUTF8", "TMPDIR",
         # how names of users and groups are found (nss_wrapper, as images that run under any uid
         # use): the read-ahead helper renders owners' names the backup compares with the parent's
         "LD_PRELOAD", "NSS_WRAPPER_PASSWD", "NSS_WRAPPER_GROUP")


def start(module: str, *args: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    """``module`` (of lifeline) as a helper with ``args``, its stdin and stdout pipes to us."""
    here = os.getcwd()
    env = {k: v for k, v in os.environ.items() if k in _KEPT}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.abspath(p) != here)
    return subprocess.Popen([sys.executable, "-P", "-m", module, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, pass_fds=pass_fds, cwd="/", env=env)


def quiet_child() -> None:
    """In a helper: Ctrl-C is for the agent, which stops its helpers; a helper whose agent died
    leaves without a traceback on the agent's stderr (it lands in Job logs and status)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
