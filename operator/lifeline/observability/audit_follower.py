"""Counting what others write to the audit log: the CLI's key rotations and shreds, by a person.

The operator counts what it audits itself as it writes it (``lifeline_audited_actions_total``). Key
rotation and the key holder's ``lifeline keys shred`` run from the CLI, outside the operator, and
write to the same hash-chained log; a rotation that failed or keys destroyed outside reviewed
destruction must still reach an alert. So the operator follows the log: every ``interval`` seconds it
reads the records after the last one it saw (from the head, never the whole log) and counts those of
other writers in ``lifeline_audited_elsewhere_total{action, outcome, namespace}``. History before
the operator started is not counted (an alert is about now).
"""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

INTERVAL = 60.0


class AuditFollower:
    def __init__(self, store, metrics, *, own_writer: str, interval: float = INTERVAL):
        self.store, self.metrics, self.own_writer, self.interval = store, metrics, own_writer, interval
        self.last: int | None = None

    def poll(self) -> int:
        """Count the records written since the last poll by others; how many were counted."""
        head, _ = self.store.find_head()
        if self.last is None:  # the first look: start from now
            self.last = head
            return 0
        counted = 0
        for seq in range(self.last + 1, head + 1):
            try:
                record = self.store.load(seq)
            except Exception as exc:  # noqa: BLE001 - a gap is verify's business; keep following
                log.warning("audit record %d unreadable while following the log: %s", seq, exc)
                continue
            if record.get("writer") != self.own_writer and record.get("action") and record.get("outcome"):
                namespace = (record.get("subject") or {}).get("namespace") or ""
                self.metrics.audited_elsewhere.labels(record["action"], record["outcome"], namespace).inc()
                counted += 1
        self.last = max(self.last, head)
        return counted

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.poll)
            except Exception as exc:  # noqa: BLE001 - storage down: try again next round
                log.warning("cannot follow the audit log %s: %s", getattr(self.store, "url", "?"), exc)
            await asyncio.sleep(self.interval)
