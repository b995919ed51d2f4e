"""Retention of the audit log: prune old records from the start, behind a recorded checkpoint.

Hospitals keep audit trails for years (default: six). Only the oldest records may go,
and only when older than the retention; the chain is cut by writing a checkpoint
(the first kept ``seq`` and the hash it links to) whose digest is first appended to
the chain as an ``audit-prune`` record. Verify then accepts the missing start
because the chain itself says who cut it, when, and where.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from lifeline.clock import seconds_between
from lifeline.errors import UsageError
from lifeline.repository.errors import RepositoryExists

from . import chain
from .store import AuditStore
from .verify import PRUNE_ACTION, verify

log = logging.getLogger("lifeline.audit")

DEFAULT_RETENTION = "6y"
_PART = re.compile(r"(\d+)(y|d|h|m|s)")
_UNIT = {"y": 365.25 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_retention(text: str) -> float:
    """Seconds in a retention such as ``6y``, ``2192d`` or ``1y30d`` (a year is 365.25 days)."""
    text = (text or "").strip()
    if not re.fullmatch(r"(\d+(y|d|h|m|s))+", text):
        raise UsageError(f"retention {text!r}: write a number and a unit, e.g. 6y, 2192d or 1y30d "
                         "(units: y, d, h, m, s)")
    return sum(int(n) * _UNIT[u] for n, u in _PART.findall(text))


def prune(store: AuditStore, *, retention: str = DEFAULT_RETENTION, now: datetime | None = None,
          actor: str = "lifeline") -> dict[str, Any]:
    """Remove records older than ``retention`` from the start of the chain; returns what was done.

    Refuses to touch a log that does not verify: pruning must never erase evidence of tampering.
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    keep_seconds = parse_retention(retention)
    checked = verify(store)
    if not checked.ok:
        raise UsageError(f"refusing to prune {store.url}: {checked.problem}")
    if not checked.records:
        return {"pruned": 0, "first_seq": None}
    cut = None  # first record to keep
    last_pruned: dict[str, Any] | None = None
    for seq in range(checked.first_seq, checked.last_seq + 1):
        record = store.load(seq)
        if seconds_between(record["time"], now.isoformat()) < keep_seconds:
            cut = seq
            break
        last_pruned = record
    if last_pruned is None:
        return {"pruned": 0, "first_seq": checked.first_seq}
    if cut is None:  # everything is old: keep the newest record, the prune record will follow it anyway
        cut = checked.last_seq + 1
    checkpoint = {
        "first_seq": cut,
        "prev": last_pruned["hash"],
        "pruned_from": checked.first_seq,
        "last_pruned_time": last_pruned["time"],
        "retention": retention,
        "retention_seconds": keep_seconds,
        "time": now.isoformat(),
        "actor": actor,
    }
    digest = chain.checkpoint_digest(checkpoint)
    entry = {
        "time": now.isoformat(), "action": PRUNE_ACTION, "actor": actor, "outcome": "succeeded",
        "subject": {"kind": "AuditLog", "namespace": "", "name": store.url},
        "details": {"checkpoint_sha256": digest, "first_kept_seq": cut, "pruned_from_seq": checked.first_seq,
                    "pruned": cut - checked.first_seq, "retention": retention},
    }
    prune_record = store.append(entry)
    try:
        store.backend.put(chain.checkpoint_name(cut), chain.to_bytes(checkpoint), exclusive=True)
    except RepositoryExists:
        raise UsageError(f"{store.url}: a checkpoint at {cut} exists already; another prune ran") from None
    for seq in range(checked.first_seq, cut):  # from the start, so an interruption leaves a verifiable log
        store.backend.delete(chain.record_name(seq))
    for info in store.backend.list(chain.CHECKPOINTS_DIR):
        older = chain.seq_of_checkpoint_name(info.name)
        if older is not None and older < cut:
            store.backend.delete(info.name)
    log.info("audit pruned %s", {"url": store.url, "records": cut - checked.first_seq, "first_kept_seq": cut,
                                 "prune_record": prune_record["seq"]})
    return {"pruned": cut - checked.first_seq, "first_seq": cut, "checkpoint_sha256": digest,
            "prune_record": prune_record["seq"]}
