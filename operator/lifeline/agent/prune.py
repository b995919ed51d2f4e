"""`prune`: retention + garbage collection (crypto-shredding an epoch is :mod:`lifeline.keys.shred`'s).

Prune holds the exclusive lock, so no backup is half-way while it decides what is
garbage. Deletion order keeps every step crash-safe:

0. the catalogue head of the points it keeps (before any point goes: a crash then leaves
   points the head no longer lists, never listed points that are gone);
1. forgotten points (after this their chunks are merely unreferenced);
2. a fresh index segment per epoch for the packs that stay;
3. the old index segments;
4. packs with no live chunk, and packs no index names (left by killed backups);
5. epoch keys no point or pack uses, temporary files, stale locks.

A crash between any two steps leaves duplicates or garbage, never a dangling reference.
Prune refuses to collect garbage when it cannot see every live reference (an unreadable
point, a damaged index segment, a chunk missing from the index), and when the catalogue
head says points are missing (a rollback: retention would then keep older points as if they
were the newest and delete more than meant) or cannot be trusted — unless the loss is
accepted (``accept_missing``), which writes a head of the points that are there.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from lifeline.errors import LifelineError
from lifeline.repository import catalogue
from lifeline.repository.errors import DamagedData, TamperedData
from lifeline.repository.index import IdSet
from lifeline.repository.layout import key_name, pack_name, point_name
from lifeline.repository.locks import list_locks
from lifeline.repository.repo import PointRef, Repository, ShreddedEpoch, parse_rfc3339

from . import prune_immutable, wal_retention  # wal_retention: log segments a kept base backup needs
from .live_chunks import add_live_chunks

if TYPE_CHECKING:  # (the models load pydantic: a tenth of a second every agent command would pay)
    from lifeline.messages import RetentionPlan


class PruneRefused(LifelineError):
    exit_code = 3


def _buckets():
    return [
        ("daily", lambda t: t.strftime("%Y-%m-%d")),
        ("weekly", lambda t: "%d-W%02d" % t.isocalendar()[:2]),
        ("monthly", lambda t: t.strftime("%Y-%m")),
        ("yearly", lambda t: t.strftime("%Y")),
    ]


def apply_retention(points: list[PointRef], policy: RetentionPlan) -> tuple[list[PointRef], list[PointRef], dict]:
    """(keep, forget, reasons) per source, restic semantics: newest point of each of the last N buckets."""
    if policy.empty():
        return list(points), [], {}
    groups: dict[str, list[PointRef]] = {}
    for p in points:
        src = p.header.get("source", {})
        groups.setdefault(f"{src.get('kind')}:{src.get('name')}", []).append(p)
    keep_ids: dict[str, list[str]] = {}
    for pts in groups.values():
        pts = sorted(pts, key=lambda p: (p.header.get("start_time", ""), p.id), reverse=True)
        for p in pts[:policy.last]:
            keep_ids.setdefault(p.id, []).append("last")
        for rule, bucket in _buckets():
            n = getattr(policy, rule)
            last = None
            for p in pts:
                if n <= 0:
                    break
                t = dt.datetime.fromtimestamp(parse_rfc3339(p.header["start_time"]), dt.timezone.utc)
                b = bucket(t)
                if b != last:
                    keep_ids.setdefault(p.id, []).append(rule)
                    n -= 1
                    last = b
    keep = [p for p in points if p.id in keep_ids]
    forget = [p for p in points if p.id not in keep_ids]
    return keep, forget, keep_ids


def run_prune(repo: Repository, provider, policy: RetentionPlan, *, dry_run: bool = False,
              lock_wait: float = 0.0, accept_missing: bool = False) -> dict:
    lock = repo.lock(exclusive=True, command="prune", wait=lock_wait)
    try:
        return _prune(repo, provider, policy, dry_run, accept_missing)
    finally:
        lock.release()


def _catalogue_problem(repo: Repository, provider, points: list[PointRef]) -> tuple[catalogue.Head | None, str,
                                                                                   list[str]]:
    """(head or None when it cannot be trusted, why not, ids of the points it lists that are gone)."""
    try:
        head = catalogue.read(repo, provider)
    except TamperedData as exc:
        if exc.obj != catalogue.HEAD:
            raise  # the config itself: nothing is done with it
        return None, str(exc), []
    if head.state == "missing":
        return None, (str(catalogue.missing_head(repo)) if points else ""), []
    if head.state != "verified":
        return head, "", []
    found = catalogue.compare(repo, head, {p.id for p in points}, points)
    return head, (catalogue.describe_ahead(head, found.ahead) if found.ahead else ""), \
        [pid for pid, _e in found.missing]


def _prune(repo: Repository, provider, policy: RetentionPlan, dry_run: bool, accept_missing: bool) -> dict:
    points, bad = repo.list_points()
    if bad:
        raise PruneRefused("prune stopped: some points cannot be read (" + "; ".join(bad.values())
                           + "). Run `lifeline agent check`; nothing was deleted")
    head, distrust, lost = _catalogue_problem(repo, provider, points)
    if (distrust or lost) and not accept_missing:
        what = distrust or ("the catalogue head lists recovery point(s) that are gone from storage ("
                            + ", ".join(lost) + "): deleted, or storage was rolled back")
        raise PruneRefused(f"prune stopped: {what}. Retention now would keep older points as if they were the "
                           "newest and delete more than you mean to. Find out what happened (`lifeline agent "
                           "check`); to accept the loss and record the points that are there, run prune with "
                           "--accept-missing; nothing was deleted")
    keep, forget, reasons = apply_retention(points, policy)
    if repo.immutability is not None:  # only what is past its retention goes (docs/immutability.md)
        return prune_immutable.prune(repo, provider, points, keep, forget, reasons, head, distrust, lost, dry_run,
                                     PruneRefused)
    index = repo.load_index(provider, epochs={p.header.get("epoch") for p in keep})
    if index.damaged:
        raise PruneRefused("prune stopped: damaged index segments (" + ", ".join(index.damaged)
                           + "); nothing was deleted")
    live = IdSet()  # (32 bytes a chunk; the trees are read entry by entry)
    kept: list[tuple[dict, object]] = []  # authenticated headers and keys of the kept points
    for p in keep:
        try:
            header, entries, keys = repo.open_point(p.id, provider)
            kept.append((header, keys))
        except ShreddedEpoch:
            raise PruneRefused(f"prune stopped: point {p.id} belongs to epoch {p.header.get('epoch')} whose "
                               "key object is missing. Restore keys/<epoch> from a copy, or confirm the "
                               "loss with `lifeline agent shred --epoch ...`; nothing was deleted") from None
        except DamagedData as exc:
            raise PruneRefused(f"prune stopped: point {p.id} cannot be read ({exc}); nothing was deleted") from None
        add_live_chunks(p.id, entries, index, live, PruneRefused)
    stored = repo.list_packs()
    keep_packs = {pid: info for pid, info in index.packs.items()
                  if pid in stored and any(en[0] in live for en in info.entries)}
    drop_packs = sorted(set(stored) - set(keep_packs))
    keep_epochs = {p.header.get("epoch") for p in keep} | {i.epoch for i in keep_packs.values()}
    wal = wal_retention.plan(repo, keep)
    keep_epochs |= wal["keep_epochs"]
    drop_epochs = sorted(set(repo.list_epochs()) - keep_epochs)
    tmp = repo.backend.list_temporaries()
    stale = [lk for lk in list_locks(repo.backend) if lk.is_stale()]
    freed = sum(stored[p] for p in drop_packs)
    report = {
        "dry_run": dry_run,
        "keep": [{"point_id": p.id, "start_time": p.header.get("start_time"), "reasons": reasons.get(p.id, [])}
                 for p in keep],
        "forget": [{"point_id": p.id, "start_time": p.header.get("start_time"), "type": p.header.get("type")}
                   for p in forget],
        "packs_deleted": len(drop_packs),
        "bytes_freed": freed,
        "epoch_keys_deleted": drop_epochs,
        "temporary_files_deleted": len(tmp),
        "stale_locks_deleted": len(stale),
        "index_segments_rewritten": 0,
        "wal_segments_deleted": len(wal["delete"]),
        "catalogue": {"seq": head.seq if head else None, "points": len(keep), "accepted_missing": lost,
                      "rebuilt": bool(distrust)},
    }
    new_points = {h["id"]: catalogue.entry(h) for h, _k in kept}
    rewrite_head = head is None or head.state != "verified" or head.points != new_points
    if rewrite_head:
        seq = max([head.seq if head else 0] + [h.get("seq") or 0 for h, _k in kept]) + 1
        report["catalogue"]["seq"] = seq
    if dry_run:
        return report
    if rewrite_head:
        sources = catalogue.seal_sources(kept) or (
            {head.proof: head.keys} if head is not None and head.keys is not None
            else {catalogue.ANCHOR: repo.anchor_keys(provider)})
        catalogue.write(repo, seq=seq, points=new_points, sources=sources, by="prune")
    for p in forget:
        repo.backend.delete(point_name(p.id))
    wal_retention.apply(repo, wal)
    report["index_segments_rewritten"] = repo.rewrite_index(index, keep_packs.values(), provider,
                                                            force=bool(drop_packs))
    for pid in drop_packs:
        repo.backend.delete(pack_name(pid))
    for epoch in drop_epochs:
        repo.backend.delete(key_name(epoch))
    for t in tmp:
        repo.backend.delete_temporary(t.name)
    for lk in stale:
        repo.backend.delete(lk.name)
    return report
