"""`prune` on an immutable repository (docs/immutability.md): delete only what is past its retention,
and extend the retention of everything the remaining points need.

Retention decides first, as on any repository (:func:`lifeline.agent.prune.apply_retention`); then
storage has its say: a forgotten point whose object is still retained *stays* (listed in the head,
restorable, reported with the date it may go), and so does everything it needs. A crypto-shredded
epoch's points (sealed tombstone) are forgotten whatever the retention rules say, and go with their
key once retention allows. Under the exclusive lock, in the usual crash-safe order:

0. the catalogue head of the points that remain (a new ``heads/`` object);
1. forgotten points past retention;
2. index segments: a pack goes only when no segment names it, so no index entry ever points at a
   deleted pack. A segment that names a dead pack is not extended: the live packs it names get a new
   segment, and it goes (and the dead packs after it) once its own retention has ended;
3. the replaced segments, then packs nobody uses that are past retention, unused epoch keys (every
   form), log segments before the oldest kept base backup, old heads, released and stale lock records,
   each only past retention;
4. the retention of what remains is extended to at least ``days`` from now
   (:func:`~lifeline.repository.immutability.secure`): the kept points, their packs and index segments,
   their epochs' key objects, the config, the newest head, the log segments and ``wal/epoch``.
"""
from __future__ import annotations

import time

from lifeline.repository import catalogue
from lifeline.repository.errors import DamagedData, RetentionActive
from lifeline.repository.index import IdSet
from lifeline.repository.immutability import LOCK_RETENTION, delete_expired, floor, secure
from lifeline.repository.layout import (CONFIG, DATA_DIR, HEADS_DIR, INDEX_DIR, KEYS_DIR, POINTS_DIR, key_epoch,
                                        pack_name, point_name, rfc3339)
from lifeline.repository.locks import lock_garbage
from lifeline.repository.maintenance import write_index
from lifeline.repository.repo import Repository, ShreddedEpoch

from . import wal_retention
from .live_chunks import add_live_chunks


def retained_until(backend, imm, info, now: float) -> float | None:
    """When ``info``'s object may go (None: now). Younger than ``days``: written with ``days``, retention
    never shortens; older: storage is asked (a prune may have extended it)."""
    if info is None:
        return None
    if info.mtime is not None and info.mtime + imm.seconds > now:
        return info.mtime + imm.seconds
    r = backend.retention(info.name)
    return r.until if r is not None and r.until is not None and r.until > now else None


def prune(repo: Repository, provider, points, keep, forget, reasons, head, distrust: str, lost: list[str],
          dry_run: bool, refused) -> dict:
    """``refused``: the exception class prune raises when it will not delete (PruneRefused)."""
    imm, backend, now = repo.immutability, repo.backend, time.time()
    objs = {o.name: o for o in backend.list(POINTS_DIR)}

    # --- which points remain: kept by the rules, or still retained; shredded epochs' go when they may
    kept: list[tuple[object, dict, list, object]] = []  # (point, header, entries, keys)
    shredded = []
    for p in keep:
        try:
            header, entries, keys = repo.load_point(p.id, provider)
        except ShreddedEpoch as exc:
            if exc.tombstone is None:
                raise refused(f"prune stopped: point {p.id} belongs to epoch {p.header.get('epoch')} whose key "
                              "object is missing; nothing was deleted") from None
            shredded.append(p)
            continue
        except DamagedData as exc:
            raise refused(f"prune stopped: point {p.id} cannot be read ({exc}); nothing was deleted") from None
        kept.append((p, header, entries, keys))
    going, staying = [], []  # staying: [(point, until, shredded)]
    for p in list(forget) + shredded:
        until = retained_until(backend, imm, objs.get(point_name(p.id)), now)
        if until is None:
            going.append(p)
        else:
            staying.append((p, until, p in shredded))
    by_rules = len(kept)  # kept[:by_rules]: kept by the rules; after them, forgotten but still retained
    until_of: dict[str, float] = {}
    for p, until, was_shredded in staying:
        if was_shredded:
            continue
        try:  # still restorable: what it needs stays as long as it does
            header, entries, keys = repo.load_point(p.id, provider)
        except ShreddedEpoch:
            continue
        except DamagedData as exc:
            raise refused(f"prune stopped: point {p.id} cannot be read ({exc}); nothing was deleted") from None
        kept.append((p, header, entries, keys))
        until_of[p.id] = until

    # --- what is live ---------------------------------------------------------------------
    index = repo.load_index(provider)
    if index.damaged:
        raise refused("prune stopped: damaged index segments (" + ", ".join(index.damaged) + "); nothing was deleted")
    live = IdSet()  # (32 bytes a chunk)
    for p, _h, entries, _k in kept:
        add_live_chunks(p.id, entries, index, live, refused)
    stored = {o.name.rsplit("/", 1)[-1]: o for o in backend.list(DATA_DIR)}
    live_packs = {pid for pid, info in index.packs.items()
                  if pid in stored and any(en[0] in live for en in info.entries)}
    dead = set(stored) - live_packs

    # --- index segments: replace those that name dead packs, once they may go -------------------------
    seg_objs = {o.name: o for o in backend.list(INDEX_DIR)}
    blocked: set[str] = set()  # dead packs a retained segment still names: they stay
    replace: list[str] = []
    staying_segments: list[str] = []
    for name, pids in index.segments.items():
        if not set(pids) & dead:
            staying_segments.append(name)
        elif retained_until(backend, imm, seg_objs.get(name), now) is None:
            replace.append(name)
        else:
            blocked |= set(pids) & dead
            staying_segments.append(name)
    for name in index.other:  # of crypto-shredded epochs: every pack they name is garbage
        if retained_until(backend, imm, seg_objs.get(name), now) is None:
            replace.append(name)
        else:
            staying_segments.append(name)
    # A segment that names a dead pack is never extended (else that pack would stay for good): the live
    # packs it names get a new segment (unless a clean one names them), and it goes once it may.
    clean = [n for n in staying_segments if n in index.segments and not set(index.segments[n]) & dead]
    named_by_clean = {pid for name in clean for pid in index.segments[name]}
    rewrite = sorted({pid for name in index.segments if name not in clean for pid in index.segments[name]
                      if pid in live_packs and pid not in named_by_clean})
    # a pack of a shredded epoch named by a retained segment of that epoch cannot be told apart: keep them all
    unknown_block = bool(set(index.other) & set(staying_segments))
    candidates = sorted(p for p in dead - blocked if not unknown_block or p in index.packs)
    drop_packs, kept_packs = [], []
    for pid in candidates:
        (kept_packs if retained_until(backend, imm, stored[pid], now) is not None else drop_packs).append(pid)

    # --- epochs, log segments ---------------------------------------------------------------------------
    remaining = [p for p, _h, _e, _k in kept]
    keep_epochs = {h.get("epoch") for _p, h, _e, _k in kept} | {index.packs[p].epoch for p in live_packs}
    wal = wal_retention.plan(repo, remaining)
    keep_epochs |= wal["keep_epochs"]
    shredded_epochs = {p.header.get("epoch") for p in shredded}
    keep_epochs -= shredded_epochs
    key_objs = {o.name: o for o in backend.list(KEYS_DIR)}
    drop_keys = sorted(n for n in key_objs if key_epoch(n) not in keep_epochs)

    report = {
        "dry_run": dry_run,
        "immutable": imm.as_config(),
        "keep": [{"point_id": p.id, "start_time": p.header.get("start_time"), "reasons": reasons.get(p.id, [])}
                 for p in keep if p not in shredded],
        "forget": [{"point_id": p.id, "start_time": p.header.get("start_time"), "type": p.header.get("type")}
                   for p in going],
        "retained_points": [{"point_id": p.id, "start_time": p.header.get("start_time"), "until": rfc3339(u),
                             "shredded": s} for p, u, s in staying],
        "packs_deleted": len(drop_packs),
        "packs_retained": len(kept_packs) + len(blocked),
        "bytes_freed": sum(stored[p].size for p in drop_packs),
        "epoch_keys_deleted": sorted({key_epoch(n) for n in drop_keys}),
        "temporary_files_deleted": 0,
        "stale_locks_deleted": 0,
        "index_segments_rewritten": len(replace),
        "wal_segments_deleted": len(wal["delete"]),
        "catalogue": {"seq": head.seq if head else None, "points": len(kept) + sum(1 for s in staying if s[2]),
                      "accepted_missing": lost, "rebuilt": bool(distrust)},
        "retention_extended": 0,
        "retention_checked": 0,
        "retained_objects": 0,
    }
    remaining_ids = {p.id for p in remaining} | {p.id for p, _u, _s in staying}
    new_points = {p.id: catalogue.entry(h) for p, h, _e, _k in kept}
    new_points.update({p.id: catalogue.entry(p.header) for p, _u, s in staying if s})
    rewrite_head = head is None or head.state != "verified" or set(head.points) != remaining_ids
    seq = None
    if rewrite_head:
        seq = max([head.seq if head else 0] + [h.get("seq") or 0 for _p, h, _e, _k in kept]) + 1
        report["catalogue"]["seq"] = seq
    if dry_run:
        return report

    # 0. the head of what remains
    if rewrite_head:
        sources = catalogue.seal_sources([(h, k) for _p, h, _e, k in kept]) or (
            {head.proof: head.keys} if head is not None and head.keys is not None
            else {catalogue.ANCHOR: repo.anchor_keys(provider)})
        catalogue.write(repo, seq=seq, points=new_points, sources=sources, by="prune")
    retained: list[dict] = []

    def drop(names, mtimes=None) -> list[str]:
        deleted, kept_back = delete_expired(backend, names, imm, mtimes, now)
        retained.extend(kept_back)
        return deleted

    # 1. points past retention
    drop([point_name(p.id) for p in going])
    # 2. new segments for the live packs of the segments replaced, then those segments
    write_index(repo, provider, [index.packs[p] for p in rewrite])
    gone = set(drop(replace))
    held = {pid for name in replace if name not in gone for pid in index.segments.get(name, ())}
    if any(name in index.other for name in replace if name not in gone):
        held |= {p for p in drop_packs if p not in index.packs}  # which packs it names: unknown, keep them
    # 3. packs (none that a segment still names), keys, log segments, old heads, lock records
    report["packs_deleted"] = len(drop([pack_name(p) for p in drop_packs if p not in held]))
    drop(drop_keys)
    report["wal_segments_deleted"] = len(drop(wal["delete"]))
    heads = catalogue.head_objects(repo)
    drop([name for _seq, name in heads[1:]], {o.name: o.mtime for o in backend.list(HEADS_DIR)})
    locks = [o for o in lock_garbage(backend) if o.mtime is None or o.mtime + LOCK_RETENTION <= now]
    for o in locks:
        try:
            backend.delete(o.name)
            report["stale_locks_deleted"] += 1
        except RetentionActive:
            pass
    report["retained_objects"] = len(retained)

    # 4. what the points kept by the rules need stays retained for at least `days` from now; what only a
    #    forgotten point still retained needs, as long as that point (its own object is not extended)
    low = floor(imm, now)
    pack_need: dict[str, float] = {}
    epoch_need: dict[str, float] = {}
    for i, (p, h, entries, _k) in enumerate(kept):
        need = low if i < by_rules else until_of[p.id]
        epoch_need[h.get("epoch")] = max(epoch_need.get(h.get("epoch"), 0.0), need)
        for e in entries:
            for c in e.get("chunks", ()):
                pid = index.get(bytes.fromhex(c)).pack_id
                pack_need[pid] = max(pack_need.get(pid, 0.0), need)
    for epoch in wal["keep_epochs"]:
        epoch_need[epoch] = low
    needs = {pack_name(pid): until for pid, until in pack_need.items()}
    needs.update({point_name(p.id): low for p, _h, _e, _k in kept[:by_rules]})
    for n in clean:
        wanted = [pack_need[pid] for pid in index.segments[n] if pid in pack_need]
        if wanted:
            needs[n] = max(wanted)
    needs.update({n: epoch_need[key_epoch(n)] for n in key_objs if key_epoch(n) in epoch_need})
    needs.update({n: low for n in [CONFIG] + [n for _s, n in heads[:1]]})
    needs.update({o.name: low for o in backend.list("wal/") if o.name not in set(wal["delete"])})
    done = secure(backend, needs, imm, now)
    report["retention_checked"], report["retention_extended"] = done["checked"], done["extended"]
    return report
