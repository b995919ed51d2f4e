"""Bandwidth limits (issue 18; docs/storage.md, "Bandwidth"): a token bucket in front of a backend.

A hospital's WAN link is shared: ``--limit-upload 50MiB`` and ``--limit-download 200MiB`` (a
BackupPolicy destination's ``bandwidth``) hold one agent process to that many bytes per second,
averaged, whatever it does (backup, restore, prune, repack, verify) and however many workers it
runs: every worker's puts and gets draw from the same bucket.

:class:`TokenBucket` is the arithmetic. It starts full (``burst`` bytes, one second of the rate by
default) and refills at ``rate``; a transfer takes its size from it, into debt if need be, and the
caller sleeps until the debt is paid. Callers reserve in turn under one lock and sleep outside it,
so parallel workers queue behind each other and together keep the rate: over any stretch of time
``t`` at most ``burst + rate * t`` bytes start. The clock and the sleep are injected (the tests
pass time without waiting).

:class:`ThrottledBackend` wraps any :class:`.backend_base.Backend`: a ``put`` pays before it sends
(its size is known), a ``get_range`` before it reads (its length), a ``get`` after it read (the size
is known only then: the next transfer waits for it). Listings, stats, deletes and retention calls
are not counted. An object goes at the link's speed, the waits between objects keep the average:
a 16 MiB pack under a 1MiB limit goes up at once and the next waits about 16 seconds.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lifeline.rates import format_rate, parse_rate

from .backend_base import Backend, ObjectInfo


@dataclass(frozen=True)
class Limits:
    """Bytes per second up (put) and down (get); None: no limit that way."""

    upload: int | None = None
    download: int | None = None

    @classmethod
    def parse(cls, upload: str | None = None, download: str | None = None) -> "Limits":
        return cls(parse_rate(upload) if upload else None, parse_rate(download) if download else None)

    def __bool__(self) -> bool:
        return bool(self.upload or self.download)

    def describe(self) -> str:
        return ", ".join(f"{way} {format_rate(v)}" for way, v in (("upload", self.upload),
                                                                  ("download", self.download)) if v) or "none"


class TokenBucket:
    """``rate`` bytes per second, at most ``burst`` ahead; shared by threads."""

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("a token bucket needs a rate above 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._at = clock()
        self.bytes = 0  # taken so far
        self.waited = 0.0  # seconds callers were told to sleep, summed over callers

    def delay(self, size: int) -> float:
        """Take ``size`` bytes now; how long the caller must wait before it may go (0: at once)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= size
            self.bytes += size
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited += wait
            return wait

    def take(self, size: int) -> float:
        """Take ``size`` bytes, sleeping as long as the rate asks; the seconds slept."""
        wait = self.delay(size) if size > 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait

    def report(self) -> dict:
        return {"rate": int(self.rate), "bytes": self.bytes, "waited_seconds": round(self.waited, 3)}


def _size(data) -> int:
    if isinstance(data, (list, tuple)):
        return sum(memoryview(b).nbytes for b in data)
    return memoryview(data).nbytes


class ThrottledBackend(Backend):
    """``inner`` with its puts drawing on ``up`` and its gets on ``down`` (either may be None).

    Everything else is ``inner``'s: attributes are read through, ``immutability`` is set on it, and
    its write-once view (an immutable repository's, :mod:`.backend_s3_locked`) is throttled by the same
    buckets."""

    def __init__(self, inner: Backend, up: TokenBucket | None, down: TokenBucket | None):
        self.__dict__.update(_inner=inner, up=up, down=down)

    # -- what is counted
    def put(self, name: str, data, *, exclusive: bool = False, durable: bool = True) -> None:
        if self.up is not None:
            self.up.take(_size(data))
        self._inner.put(name, data, exclusive=exclusive, durable=durable)

    def get(self, name: str) -> bytes:
        data = self._inner.get(name)
        if self.down is not None:
            self.down.take(len(data))
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if self.down is not None:
            self.down.take(length)
        return self._inner.get_range(name, offset, length)

    # -- what is not
    def list(self, prefix: str) -> list[ObjectInfo]:
        return self._inner.list(prefix)

    def delete(self, name: str) -> None:
        self._inner.delete(name)

    def stat(self, name: str) -> ObjectInfo | None:
        return self._inner.stat(name)

    def exists(self, name: str) -> bool:
        return self._inner.exists(name)

    def retention(self, name: str):
        return self._inner.retention(name)

    def extend_retention(self, name: str, until: float, current=None) -> None:
        self._inner.extend_retention(name, until, current)

    def list_temporaries(self) -> list[ObjectInfo]:
        return self._inner.list_temporaries()

    def delete_temporary(self, name: str) -> None:
        self._inner.delete_temporary(name)

    def close(self) -> None:
        self._inner.close()

    # -- the rest is the inner backend's
    @property
    def url(self) -> str:
        return self._inner.url

    @property
    def write_once(self) -> bool:
        return self._inner.write_once

    @property
    def immutability(self):
        return self._inner.immutability

    @immutability.setter
    def immutability(self, value) -> None:
        self._inner.immutability = value

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)  # AttributeError when the inner backend has none
        if name == "write_once_view":
            return lambda *a, **kw: ThrottledBackend(attr(*a, **kw), self.up, self.down)
        return attr

    def __setattr__(self, name: str, value) -> None:
        if name == "immutability":
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def report(self) -> dict:
        """What was counted each way: rate, bytes, seconds waited."""
        return {way: b.report() for way, b in (("upload", self.up), ("download", self.down)) if b is not None}


def throttled(backend: Backend, limits: Limits | None, *, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Backend:
    """``backend`` under ``limits`` (as it is when there are none)."""
    if not limits:
        return backend
    up, down = ((TokenBucket(rate, clock=clock, sleep=sleep) if rate else None)
                for rate in (limits.upload, limits.download))
    return ThrottledBackend(backend, up, down)


def report(backend) -> dict | None:
    """The accounting of a throttled backend (None for any other)."""
    return backend.report() if isinstance(backend, ThrottledBackend) else None
