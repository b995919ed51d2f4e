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

In an immutable repository (``backend.write_once``) no object is overwritten or deleted before its
retention ends, so a lock is a series of *records* that expire: ``locks/<holder>.<n>`` for each
write (take, and every refresh: n = 0, 1, ...) and ``locks/<holder>.released`` when it is let go (or
backs off). A holder with a ``released`` record holds nothing; otherwise its newest record is its
lock, stale by the same rules (a record the listing says is older than ``STALE_AFTER`` is not even
read). The records are retained for hours, not days (:data:`~.immutability.LOCK_RETENTION`); prune
deletes those past it.
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
    records: tuple[str, ...] = ()  # an immutable repository's: every record of this holder

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


def _read(backend: Backend, name: str) -> dict:
    try:
        data = json.loads(backend.get(name))
        if not isinstance(data, dict):
            raise ValueError
    except (ValueError, Exception):  # unreadable lock: treat as stale garbage
        data = {"refreshed": 0, "hostname": "?", "pid": 0, "command": "unreadable lock"}
    return data


def _holder_of(name: str) -> tuple[str, str]:
    """(holder, record) of an immutable repository's lock record name."""
    holder, _, record = name[len(LOCKS_DIR):].rpartition(".")
    return holder, record


def lock_records(backend: Backend) -> dict[str, list]:
    """An immutable repository's lock records by holder: {holder: [ObjectInfo, ...]} (sorted by name)."""
    holders: dict[str, list] = {}
    for obj in backend.list(LOCKS_DIR):
        holders.setdefault(_holder_of(obj.name)[0], []).append(obj)
    return holders


def list_locks(backend: Backend) -> list[LockInfo]:
    if not backend.write_once:
        return [LockInfo(obj.name, _read(backend, obj.name)) for obj in backend.list(LOCKS_DIR)]
    out, now = [], time.time()
    for holder, objs in lock_records(backend).items():
        if any(_holder_of(o.name)[1] == "released" for o in objs):
            continue  # let go: its records only wait for their retention to end
        newest = max(objs, key=lambda o: o.name)
        names = tuple(o.name for o in objs)
        if newest.mtime is not None and now - newest.mtime > STALE_AFTER:
            out.append(LockInfo(newest.name, {"refreshed": newest.mtime, "hostname": "?", "pid": 0, "holder": holder,
                                              "command": "a lock not refreshed for 30 minutes"}, names))
        else:
            out.append(LockInfo(newest.name, _read(backend, newest.name), names))
    return out


def lock_garbage(backend: Backend) -> list:
    """An immutable repository's lock records nothing needs: every record of a holder that let go or is
    stale (ObjectInfo; prune deletes those past their retention)."""
    stale = {lk.data.get("holder") for lk in list_locks(backend) if lk.is_stale()}
    out = []
    for holder, objs in lock_records(backend).items():
        if holder in stale or any(_holder_of(o.name)[1] == "released" for o in objs):
            out.extend(objs)
    return out


def delete_lock(backend: Backend, lock: LockInfo) -> None:
    """Delete a stale lock: its object, or an immutable repository's records of it that are past retention."""
    if not backend.write_once:
        backend.delete(lock.name)
        return
    from .errors import RetentionActive

    for name in lock.records or (lock.name,):
        try:
            backend.delete(name)
        except RetentionActive:
            pass  # it expires later; a stale lock blocks nobody meanwhile


class Lock:
    def __init__(self, backend: Backend, *, exclusive: bool, command: str, scope: str = REPOSITORY):
        self.backend = backend
        self.exclusive = exclusive
        self.command = command
        self.scope = scope
        self.write_once = bool(getattr(backend, "write_once", False))
        self.holder = secrets.token_hex(12)
        self._records = 0
        self.name = lock_name(self.holder)
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
        if self.write_once:  # a new record each time: nothing is overwritten
            data["holder"] = self.holder
            self.name = lock_name(f"{self.holder}.{self._records:06d}")
            self._records += 1
        self.backend.put(self.name, json.dumps(data).encode(), durable=False)

    def _let_go(self) -> None:
        if not self.write_once:
            self.backend.delete(self.name)
            return
        self.backend.put(lock_name(f"{self.holder}.released"),
                         json.dumps({"holder": self.holder, "released_at": time.time()}).encode(), durable=False)
        self.holder, self._records = secrets.token_hex(12), 0  # a later try is a new holder

    def _conflicts(self) -> list[LockInfo]:
        out = []
        for lk in list_locks(self.backend):
            if lk.name == self.name or (self.write_once and lk.data.get("holder") == self.holder) \
                    or lk.scope != self.scope or lk.is_stale():
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
            self._let_go()
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
            self._let_go()
        except Exception:  # noqa: BLE001 - a leftover lock is stale once we exit
            pass

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
