"""Retention of log segments: keep every segment a kept base backup needs, and no more.

A base backup (a point tagged ``base-backup`` and ``wal-start=<segment>``) needs every
segment from its start on. So after retention has chosen the points to keep, the segments
positioned before the oldest kept base backup's start are deleted; timeline history files
are tiny and always kept. Without any kept base backup nothing is deleted (segments alone
cannot be restored, but deleting them would make a base backup taken later useless too).
The epochs the remaining segments are sealed with stay in use.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from lifeline.repository.segments import AUX_STREAM, WAL_DIR, SegmentStore, parse_name

from .wal_pitr import BASE_TAG, _wal_start


def _start_seq(point, seg_size: int) -> int | None:
    start = _wal_start(point) if BASE_TAG in point.header.get("tags", []) else None
    return parse_name(start, seg_size).seq if start else None


def plan(repo, keep_points: list) -> dict:
    """{"delete": [object names], "keep_epochs": set, "segments_kept": n}."""
    store = SegmentStore(repo)
    listing = store.list()
    epochs = set()
    current = store.current_epoch()
    if current:
        epochs.add(current)
    delete, kept = [], []
    for stream, names in listing.items():
        if stream == AUX_STREAM:
            kept += [f"{WAL_DIR}{stream}/{n}" for n in names]
            continue
        positions = store.positions(stream, names)
        size = positions[0].segment_size if positions else 0
        starts = [s for s in (_start_seq(p, size or 16 * 1024 * 1024) for p in keep_points) if s is not None]
        floor = min(starts) if starts else None
        for p in positions:
            obj = f"{WAL_DIR}{stream}/{p.name}"
            (delete if floor is not None and p.seq is not None and p.seq < floor else kept).append(obj)

    def epoch_of(obj):
        h = store.read_header(obj) or {}
        return h.get("epoch")

    with ThreadPoolExecutor(8) as ex:
        epochs |= {e for e in ex.map(epoch_of, kept) if e}
    return {"delete": sorted(delete), "keep_epochs": epochs, "segments_kept": len(kept)}


def apply(repo, wal_plan: dict) -> None:
    for name in wal_plan["delete"]:
        repo.backend.delete(name)
