"""Find a Pod's container process on the process kubelet and kill it the way the kernel's OOM killer
or a node failure would: by pid, SIGKILL, no chance to clean up.

The process kubelet reports each running container's process as its ``containerID``
(``process://PID``) in the Pod's status, as a container runtime reports its container's id: the
test reads it from the API like any client would.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


def container_pid(pod: dict, container: str) -> int | None:
    """The process of ``container`` of ``pod`` while it runs (None before it starts and after it ends)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container and "running" in (status.get("state") or {}):
            cid = status.get("containerID") or ""
            if cid.startswith("process://"):
                return int(cid[len("process://"):])
    return None


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """``pid``'s children, grandchildren, ... (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return out


def kill_container(pid: int) -> None:
    """SIGKILL a container's process and everything it started, as the kernel does when a
    container's init dies (the process kubelet runs a container as a plain process tree)."""
    tree = [pid, *descendants(pid)]
    for p in tree:  # freeze first, so nothing forks or finishes in between
        with _gone():
            os.kill(p, signal.SIGSTOP)
    for p in tree:
        with _gone():
            os.kill(p, signal.SIGKILL)


class _gone:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is ProcessLookupError


def release(gate: Path) -> None:
    """Open a dump's gate FIFO if something still waits at it (a failed test must not leave a
    dump blocked forever); a no-op when nobody reads it."""
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader (ENXIO) or no FIFO: nothing waits
        return
    try:
        os.write(fd, b"released by the test's cleanup\n")
    finally:
        os.close(fd)
