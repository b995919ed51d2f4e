"""Loopback ports, readiness polling, and server child processes that cannot outlive us.

`lifeline dev up` and the tests start real servers (OpenBao, PostgreSQL) as child processes.
Three things every one of them needs live here: a free port on 127.0.0.1, a poll-until-ready
helper whose error names what it waited for, and a child process that is stopped by `stop()`,
at interpreter exit, and — if the owning process is killed outright — by a tiny watchdog that notices the owner is gone
(the read end of a pipe whose write end only the owner holds reaches EOF) and stops the server.
"""

from __future__ import annotations

import atexit
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


class NotReady(RuntimeError):
    """A server did not become ready (or died) while we waited for it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# Ports a component keeps for its whole life while others come and go (a release's webhook URL is
# registered with the API server once) are taken below the kernel's ephemeral range, where
# free_port() and every outgoing connection take theirs: nothing else can take them in between.
RESERVED_PORTS = range(20000, 32000)


def reserved_port(host: str = "127.0.0.1") -> int:
    """A TCP port outside the ephemeral range that nobody listens on right now."""
    for port in random.sample(RESERVED_PORTS, 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {RESERVED_PORTS.start}-{RESERVED_PORTS.stop - 1}")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    abort: Callable[[], str | None] | None = None,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Exceptions from the predicate count as "not yet" (a refused connection while a server
    boots). `abort()` may return a reason to stop early (the process exited); `detail()`
    adds context to the error (the tail of a server log).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - "not ready yet" comes in many types
            last_error = exc
        reason = abort() if abort else None
        if reason is None and time.monotonic() >= deadline:
            reason = f"not ready after {timeout:g}s"
        if reason is not None:
            msg = f"waiting for {what}: {reason}"
            if last_error is not None:
                msg += f" (last error: {last_error!r})"
            if detail:
                msg += "\n" + detail()
            raise NotReady(msg)
        time.sleep(interval)  # readiness polling only


# The watchdog: blocks on the pipe; a byte means "owner stopped the server itself, just
# exit"; EOF means "owner died": signal the server, wait for its process group to empty,
# SIGKILL what is left, remove its scratch directory.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
fd, pgid, sig, scratch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if os.read(fd, 1):
    sys.exit(0)
def gone():
    # The leader is gone once it is not in /proc or is a zombie nobody reaps yet.
    try:
        with open(f"/proc/{pgid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        return False
if not gone():
    try:
        os.kill(pgid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
if scratch:
    shutil.rmtree(scratch, ignore_errors=True)
"""


class ChildServer:
    """A server process in its own process group, logged to a file, guarded by a watchdog.

    `stop_signal` is what asks the server to shut down cleanly (SIGTERM for most, SIGINT
    for PostgreSQL's fast shutdown). `scratch` is a directory the watchdog removes if the
    owner dies; on a normal stop the owner cleans up itself.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        group: str | None = None,
        stop_signal: int = signal.SIGTERM,
        scratch: Path | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.stop_signal = stop_signal
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                user=user,
                group=group,
                extra_groups=[] if group else None,
                start_new_session=True,  # own process group: killpg reaches all of it
            )
        read_fd, self._guard_fd = os.pipe()  # both non-inheritable by default
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG, str(read_fd), str(self.proc.pid),
                 str(int(stop_signal)), str(scratch or "")],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # survives a Ctrl-C sent to our process group
            )
        finally:
            os.close(read_fd)
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> str | None:
        """None while running, else a reason (for `wait_for(abort=...)`)."""
        code = self.proc.poll()
        return None if code is None else f"process exited with code {code}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path.name} ---\n{tail}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop, SIGKILL its group after `timeout`, retire the watchdog."""
        atexit.unregister(self.stop)
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, self.stop_signal)
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                try:  # the leader is not reaped yet, so its pid still names our group
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait()
        if self._guard_fd is not None:
            try:
                os.write(self._guard_fd, b"x")  # "stopped on purpose": the watchdog just exits
            except OSError:
                pass
            os.close(self._guard_fd)
            self._guard_fd = None
            try:
                self._watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()


START_ATTEMPTS = 3  # a free port can be taken between free_port() and the server's bind: try another


def start_on_free_port(launch: Callable[[int], tuple[ChildServer, str]], ready: Callable[[], object],
                       timeout: float) -> ChildServer:
    """Start a server on a free port and wait until ``ready()``; on another port when it does not come
    up, START_ATTEMPTS times in all (the last NotReady is raised). ``launch(port)`` starts the child
    process and says what is waited for."""
    last: NotReady | None = None
    for _ in range(START_ATTEMPTS):
        child, what = launch(free_port())
        try:
            wait_for(ready, timeout, what, abort=child.exited, detail=child.log_tail)
        except NotReady as exc:
            last = exc
            child.stop()
            continue
        return child
    raise last  # type: ignore[misc]
