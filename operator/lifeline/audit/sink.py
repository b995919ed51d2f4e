"""Connects :func:`lifeline.observability.audit.record` to a chained store.

A record that cannot be stored right now (the bucket is unreachable) is held in
memory, in order, and written before the next one; the failure is logged loudly
but never raised into the controller that was only reporting what it did.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from .store import AuditStore

log = logging.getLogger("lifeline.audit")

MAX_PENDING = 10_000


class ChainSink:
    def __init__(self, store: AuditStore):
        self.store = store
        self.pending: list[dict[str, Any]] = []
        self.dropped = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def __call__(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if len(self.pending) >= MAX_PENDING:
                self.pending.pop(0)
                self.dropped += 1
            self.pending.append(entry)
            self._flush()

    def flush(self) -> bool:
        """Write whatever is held; True when nothing is left."""
        with self._lock:
            return self._flush()

    def _flush(self) -> bool:
        while self.pending:
            try:
                self.store.append(self.pending[0])
            except Exception as exc:  # storage errors of every backend kind
                self.last_error = str(exc)
                log.error("audit store %s unreachable; %d record(s) held in memory until it answers: %s",
                          self.store.url, len(self.pending), exc)
                return False
            self.pending.pop(0)
        self.last_error = None
        return True
