"""Find the processes the job runner started for a pod, to kill one the way the kernel's OOM killer
or a node failure would: by pid, SIGKILL, no chance to clean up."""
from __future__ import annotations

import os
from pathlib import Path


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def agent_pids(workdir: Path) -> list[int]:
    """Agent containers (``python -m lifeline.agent.jobs ...``) this process started, in a pod under ``workdir``."""
    me, root, found = os.getpid(), str(Path(workdir).resolve()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if _parent(pid) != me:
            continue
        argv = _cmdline(pid)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(root) and ("lifeline.agent.jobs" in argv or ("lifeline.cli" in argv and "agent" in argv)):
            found.append(pid)
    return found


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
    container's init dies (the job runner runs a container as a plain process tree)."""
    import signal

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
