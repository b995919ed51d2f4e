"""Repository locks: shared for backup/restore/verify, exclusive for prune.

A lock is an object ``locks/<id>`` (JSON: host, pid, process start time, kind,
created/refreshed times). Taking a lock = write own object, then list: if a
conflicting live lock exists, remove own object and back off. Two takers racing
both back off (safe); ``wait`` retries with jitter.

A lock has a *scope*. ``repository`` locks are the ones above. A ``head`` lock is held, exclusive,
only while a backup records its point in the catalogue head (a read-modify-write of one object):
backups run side by side under shared repository locks, but write the head one at a time.
Locks of different scopes never conflict (prune and shred already exclude backups).

A lock is *stale* when it was not refreshed for ``STALE_AFTER`` seconds, or when
it names a process on this host that no longer exists (kill -9). Stale locks never
block; ``check`` reports them and ``prune`` deletes them.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from .backend import Backend
from .errors import LockConflict
from .layout import LOCKS_DIR, lock_name

REFRESH_EVERY = 300.0
STALE_AFTER = 1800.0
REPOSITORY = "repository"
HEAD = "head"


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class LockInfo:
    name: str
    data: dict

    @property
    def exclusive(self) -> bool:
        return bool(self.data.get("exclusive"))

    @property
    def scope(self) -> str:
        return str(self.data.get("scope") or REPOSITORY)

    def describe(self) -> str:
        d = self.data
        kind = ("exclusive" if self.exclusive else "shared") + ("" if self.scope == REPOSITORY else f" {self.scope}")
        return (f"{kind} lock {self.name.split('/')[-1]} held by pid {d.get('pid')} on "
                f"{d.get('hostname')} ({d.get('command', '?')}) since {d.get('created_at', '?')}")

    def is_stale(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        d = self.data
        if now - float(d.get("refreshed", 0)) > STALE_AFTER:
            return True
        if d.get("hostname") == socket.gethostname():
            pid = int(d.get("pid", 0))
            if pid <= 0:
                return True
            start = _proc_start(pid)
            if start is None:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                except PermissionError:
                    return False
                return False
            if d.get("pid_start") and d.get("pid_start") != start:
                return True  # pid was reused by another process
        return False


def list_locks(backend: Backend) -> list[LockInfo]:
    out = []
    for obj in backend.list(LOCKS_DIR):
        try:
            data = json.loads(backend.get(obj.name))
            if not isinstance(data, dict):
                raise ValueError
        except (ValueError, Exception):  # unreadable lock: treat as stale garbage
            data = {"refreshed": 0, "hostname": "?", "pid": 0, "command": "unreadable lock"}
        out.append(LockInfo(obj.name, data))
    return out


class Lock:
    def __init__(self, backend: Backend, *, exclusive: bool, command: str, scope: str = REPOSITORY):
        self.backend = backend
        self.exclusive = exclusive
        self.command = command
        self.scope = scope
        self.name = lock_name(secrets.token_hex(12))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def _write(self) -> None:
        data = {
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _proc_start(os.getpid()),
            "exclusive": self.exclusive,
            "scope": self.scope,
            "command": self.command,
            "created_at": self._created,
            "refreshed": time.time(),
        }
        self.backend.put(self.name, json.dumps(data).encode(), durable=False)

    def _conflicts(self) -> list[LockInfo]:
        out = []
        for lk in list_locks(self.backend):
            if lk.name == self.name or lk.scope != self.scope or lk.is_stale():
                continue
            if self.exclusive or lk.exclusive:
                out.append(lk)
        return out

    def acquire(self, wait: float = 0.0) -> "Lock":
        deadline = time.monotonic() + wait
        while True:
            self._write()
            conflicts = self._conflicts()
            if not conflicts:
                break
            self.backend.delete(self.name)
            if time.monotonic() >= deadline:
                what = "; ".join(c.describe() for c in conflicts[:3])
                raise LockConflict(
                    f"the repository is locked: {what}. Wait for it to finish (or pass --lock-wait "
                    f"SECONDS); a lock left by a killed process becomes stale after "
                    f"{int(STALE_AFTER // 60)} minutes, or at once on the same host")
            time.sleep(min(max(0.0, deadline - time.monotonic()), 0.5 + random.random()))
        self._thread = threading.Thread(target=self._refresher, name="lock-refresh", daemon=True)
        self._thread.start()
        return self

    def _refresher(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                self._write()
            except Exception:  # noqa: BLE001 - a missed refresh is retried; staleness takes 30 min
                pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.backend.delete(self.name)
        except Exception:  # noqa: BLE001 - a leftover lock is stale once we exit
            pass

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
