"""The audit trail's front door: every DR action calls :func:`record` once.

Callers (controllers, the agent's key commands, the CLI) say who did what to
which object and how it ended; where records go (a JSON log line always, plus
the hash-chained log kept with the backups when one is configured) is this
module's business, so no caller changes when the store does.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Callable

ACTIONS = frozenset(
    {
        "backup",
        "restore",
        "drill",
        "approval",
        "rejection",
        "failover",
        "failback",
        "key-rotation",
        "key-shred",
        "deletion",
    }
)
OUTCOMES = frozenset({"requested", "started", "succeeded", "failed", "refused"})

log = logging.getLogger("lifeline.audit")

# Extra destinations for records (the hash-chained store registers itself here).
_sinks: list[Callable[[dict[str, Any]], None]] = []


def add_sink(sink: Callable[[dict[str, Any]], None]) -> None:
    """Send every later record to ``sink`` as well (idempotent for the same callable)."""
    if sink not in _sinks:
        _sinks.append(sink)


def remove_sink(sink: Callable[[dict[str, Any]], None]) -> None:
    if sink in _sinks:
        _sinks.remove(sink)


def record(
    action: str,
    *,
    actor: str,
    outcome: str,
    subject: dict[str, str],
    details: dict[str, Any] | None = None,
    when: datetime | None = None,
) -> dict[str, Any]:
    """Append one audit record and return it.

    ``subject`` names the object acted on: ``{"kind", "namespace", "name"}``
    (plus ``uid`` when known). ``details`` holds facts, never key material.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; one of {sorted(ACTIONS)}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}; one of {sorted(OUTCOMES)}")
    entry = {
        "time": (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(),
        "action": action,
        "actor": actor,
        "outcome": outcome,
        "subject": dict(subject),
        "details": dict(details or {}),
    }
    log.info("audit %s", json.dumps(entry, sort_keys=True, default=str))
    for sink in list(_sinks):
        sink(entry)
    return entry
