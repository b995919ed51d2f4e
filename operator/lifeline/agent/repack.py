"""`repack` and `rebuild-index`: repository maintenance (see docs/maintenance.md).

**repack** rewrites the packs that are mostly garbage after ``prune`` (prune keeps a pack whole while
one of its chunks is live). A pack is *rewritten* when more than ``--max-unused`` percent of its bytes
are blobs no point uses (default :data:`DEFAULT_MAX_UNUSED`); its live blobs are authenticated and
copied, sealed as they are, into new packs of their epoch. Packs with no live blob and packs no index
segment names (left by a killed backup, prune or repack) are deleted. Under the exclusive repository
lock (the one prune takes: no backup runs meanwhile), in the crash-safe order of
:mod:`lifeline.repository.maintenance`:

1. new packs;
2. one index segment per epoch naming the new packs and every pack that stays;
3. the old index segments (and those of crypto-shredded epochs);
4. the rewritten packs, the unused ones and the unindexed ones; then ``tmp/`` files and stale locks.

``kill -9`` anywhere leaves duplicates or garbage; the next repack (or prune) removes them. Like prune,
repack refuses to delete anything when it cannot see every live reference (an unreadable point, a
damaged index segment, a chunk no index names, a missing epoch key) or when the catalogue head shows
that points are missing. A pack whose live blob fails authentication is reported by name and left
whole (with its index entries): the other packs are still repacked, and the exit code is 3.

**rebuild-index** recreates the index from the packs alone: each pack's clear header names its epoch,
whose key opens the pack's sealed directory (ranged reads of the header and tail, no blob is read).
The new segments are stored before every old one is deleted. A pack whose directory cannot be read is
reported by name (exit 3) and, if an old segment that authenticates still describes it, keeps that
description; packs of crypto-shredded epochs are left out (garbage for prune).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from lifeline.errors import LifelineError
from lifeline.repository.errors import DamagedData, KeyMismatch, RetentionActive, ShreddedEpoch
from lifeline.repository.immutability import delete_expired
from lifeline.repository.index import IdSet, Index, PackInfo
from lifeline.repository.layout import DATA_DIR, INDEX_DIR, pack_name
from lifeline.repository.locks import delete_lock, list_locks
from lifeline.repository.maintenance import PackWriter, read_pack_info, write_index
from lifeline.repository.repo import PointRef, Repository

from .progress import Progress, _hms, human_bytes
from .prune import _catalogue_problem  # the same rollback test prune makes before it deletes
from .prune_immutable import retained_until

# A pack is rewritten when more than this percent of its bytes is unused. Per pack, not per repository
# (restic's --max-unused 5 % is a repository-wide budget): 10 % bounds what stays unused at about a
# tenth of the stored bytes, and copies at most 9 live bytes for each byte freed.
DEFAULT_MAX_UNUSED = 10.0


class MaintenanceRefused(LifelineError):
    exit_code = 3


class PackProgress(Progress):
    """The progress line in packs, not files."""

    def line(self) -> str:
        el = max(time.monotonic() - self.start, 1e-6)
        rate = self.bytes_done / el
        parts = [f"{self.verb} {human_bytes(self.bytes_done)}"
                 + (f" / {human_bytes(self.bytes_total)}" if self.bytes_total else "")]
        parts.append(f"{self.files_done}" + (f"/{self.files_total}" if self.files_total else "") + " packs")
        parts.append(f"{human_bytes(rate)}/s")
        if self.bytes_total and rate > 0 and self.bytes_done < self.bytes_total:
            parts.append(f"ETA {_hms((self.bytes_total - self.bytes_done) / rate)}")
        parts.append(_hms(el))
        return "  ".join(parts)


# --- what is live --------------------------------------------------------------------------
def live_chunks(repo: Repository, provider, points: list[PointRef], index: Index, verb: str) -> IdSet:
    """Every chunk id the points use; refuses (nothing deleted yet) when one cannot be seen."""
    live = IdSet()  # (32 bytes a chunk; the trees are read entry by entry)
    for p in points:
        try:
            _header, entries, _keys = repo.open_point(p.id, provider)
        except ShreddedEpoch as exc:
            if repo.immutability is not None and exc.tombstone is not None:
                continue  # shredded; its objects stay until their retention ends, then prune deletes them
            raise MaintenanceRefused(f"{verb} stopped: point {p.id} belongs to epoch {p.header.get('epoch')} whose "
                                     "key object is missing. Restore keys/<epoch> from a copy, or confirm the "
                                     "loss with `lifeline agent shred --epoch ...`; nothing was deleted") from None
        except DamagedData as exc:
            raise MaintenanceRefused(f"{verb} stopped: point {p.id} cannot be read ({exc}); "
                                     "nothing was deleted") from None
        try:
            for e in entries:
                for c in e.get("chunks", ()):
                    cid = bytes.fromhex(c)
                    if cid not in index:
                        raise MaintenanceRefused(
                            f"{verb} stopped: point {p.id} file {e.get('path')!r} references chunk {c} which no "
                            "index names; run `lifeline agent check` (a lost index: `lifeline agent "
                            "rebuild-index`); nothing was deleted")
                    live.add(cid)
        except DamagedData as exc:  # (the tree is decoded as it is read)
            raise MaintenanceRefused(f"{verb} stopped: point {p.id} cannot be read ({exc}); "
                                     "nothing was deleted") from None
    return live


# --- the plan -----------------------------------------------------------------------------
@dataclass
class RepackPlan:
    keep: list[str] = field(default_factory=list)  # stay as they are
    rewrite: list[str] = field(default_factory=list)  # partly used: live blobs copied, then deleted
    drop: list[str] = field(default_factory=list)  # indexed, no live blob here: deleted
    orphans: list[str] = field(default_factory=list)  # in storage, named by no index segment: deleted
    lost: list[str] = field(default_factory=list)  # named by the index, gone from storage, hold live chunks
    forget: list[str] = field(default_factory=list)  # named by the index, gone from storage, nothing live
    copy: dict[str, list[tuple]] = field(default_factory=dict)  # pack -> index entries of the blobs to copy
    unused: dict[str, int] = field(default_factory=dict)  # present indexed pack -> unused bytes


def plan_repack(index: Index, stored: dict[str, int], live: set[bytes], max_unused: float) -> RepackPlan:
    """Which packs stay, which are rewritten and which go.

    Each live chunk has one *owner*: the first pack in storage that holds it (a duplicate, left by
    concurrent backups or an interrupted repack, counts as unused in the others). A pack's unused
    bytes are its blobs it does not own. A pack that owns nothing is dropped; one whose unused
    share exceeds ``max_unused`` percent is rewritten (its owned blobs copied); the rest stay. So a
    live chunk survives either in the pack that stays or as a copy, exactly once."""
    plan = RepackPlan()
    owner: dict[bytes, str] = {}
    for pid in sorted(index.packs):
        if pid not in stored:
            continue
        for e in index.packs[pid].entries:
            if e[0] in live:
                owner.setdefault(e[0], pid)
    for pid in sorted(index.packs):
        info = index.packs[pid]
        if pid not in stored:
            holds = any(e[0] in live and e[0] not in owner for e in info.entries)
            (plan.lost if holds else plan.forget).append(pid)
            continue
        owned, seen = [], set()
        for e in info.entries:
            if owner.get(e[0]) == pid and e[0] not in seen:
                seen.add(e[0])
                owned.append(e)
        used = sum(e[2] for e in owned)
        plan.unused[pid] = sum(e[2] for e in info.entries) - used
        if not owned:
            plan.drop.append(pid)
        elif plan.unused[pid] * 100 > max_unused * stored[pid]:
            plan.rewrite.append(pid)
            plan.copy[pid] = owned
        else:
            plan.keep.append(pid)
    plan.orphans = sorted(set(stored) - set(index.packs))
    # copy epoch by epoch (one pack fills at a time), biggest gain first within an epoch
    plan.rewrite.sort(key=lambda p: (index.packs[p].epoch, -plan.unused[p], p))
    return plan


# --- repack --------------------------------------------------------------------------------
def run_repack(repo: Repository, provider, *, max_unused: float = DEFAULT_MAX_UNUSED, dry_run: bool = False,
               lock_wait: float = 0.0, progress: Progress | None = None) -> dict:
    lock = repo.lock(exclusive=True, command="repack", wait=lock_wait)
    try:
        return _repack(repo, provider, max_unused, dry_run, progress or PackProgress("repack", enabled=False))
    finally:
        lock.release()


def _index_objects(repo: Repository) -> dict[str, int]:
    return {o.name: o.size for o in repo.backend.list(INDEX_DIR)}


def _prefetch(repo: Repository, pack_ids: list[str], ahead: int = 1) -> Iterator[tuple[str, Future]]:
    """(pack id, future of its bytes), reading ``ahead`` packs in advance."""
    with ThreadPoolExecutor(ahead) as ex:
        window: deque[tuple[str, Future]] = deque()
        it = iter(pack_ids)
        for pid in it:
            window.append((pid, ex.submit(repo.backend.get, pack_name(pid))))
            if len(window) > ahead:
                yield window.popleft()
        while window:
            yield window.popleft()


def _repack(repo: Repository, provider, max_unused: float, dry_run: bool, progress: Progress) -> dict:
    started = time.monotonic()
    points, bad = repo.list_points()
    if bad:
        raise MaintenanceRefused("repack stopped: some points cannot be read (" + "; ".join(bad.values())
                                 + "). Run `lifeline agent check`; nothing was deleted")
    _head, distrust, lost_points = _catalogue_problem(repo, provider, points)
    if distrust or lost_points:
        what = distrust or ("the catalogue head lists recovery point(s) that are gone from storage ("
                            + ", ".join(lost_points) + ")")
        raise MaintenanceRefused(f"repack stopped: {what}. Their data may still be in the packs repack would "
                                 "delete. Find out what happened (`lifeline agent check`); to accept the loss, run "
                                 "`lifeline agent prune --accept-missing` first; nothing was deleted")
    index = repo.load_index(provider)
    if index.damaged:
        raise MaintenanceRefused("repack stopped: damaged index segments (" + ", ".join(index.damaged)
                                 + "); `lifeline agent rebuild-index` replaces them; nothing was deleted")
    live = live_chunks(repo, provider, points, index, "repack")
    stored = repo.list_packs()
    segments_before = _index_objects(repo)
    plan = plan_repack(index, stored, live, max_unused)
    if repo.immutability is not None:  # a pack still retained can neither go nor be worth copying: it stays
        _retained_stay(repo, plan)

    pack_bytes_before = sum(stored.values())
    index_bytes_before = sum(segments_before.values())
    copy_bytes = sum(e[2] for entries in plan.copy.values() for e in entries)
    going = set(plan.rewrite) | set(plan.drop) | set(plan.orphans)
    epochs = {index.packs[p].epoch for p in plan.keep + plan.lost + plan.rewrite}
    rewrite_index = bool(plan.rewrite or plan.drop or plan.forget or index.other
                         or (len(index.segments) > len(epochs) and repo.immutability is None))
    tmp = repo.backend.list_temporaries()
    stale = [lk for lk in list_locks(repo.backend) if lk.is_stale()]
    report = {
        "dry_run": dry_run,
        "max_unused_percent": max_unused,
        "packs_before": len(stored),
        "packs_rewritten": len(plan.rewrite),
        "packs_deleted_unused": len(plan.drop),
        "packs_deleted_unindexed": len(plan.orphans),
        "packs_written": 0,
        "blobs_copied": sum(len(v) for v in plan.copy.values()),
        "bytes_copied": copy_bytes,
        "unused_bytes_before": sum(plan.unused.values()) + sum(stored[p] for p in plan.orphans),
        "pack_bytes_before": pack_bytes_before,
        "index_bytes_before": index_bytes_before,
        "bytes_before": pack_bytes_before + index_bytes_before,
        "index_segments_before": len(segments_before),
        "rewritten": list(plan.rewrite),
        "damaged": [],
        "temporary_files_deleted": len(tmp),
        "stale_locks_deleted": len(stale),
    }
    for pid in plan.lost:
        report["damaged"].append({"object": pack_name(pid), "error": "the index names this pack but it is gone "
                                  "from storage; its entries are kept (run `lifeline agent check`)"})
    if dry_run:
        # estimated: the copies cost about what they hold (packs are written at the pack target)
        after = pack_bytes_before - sum(stored[p] for p in going) + copy_bytes
        written = -(-copy_bytes // repo.pack_target)  # about: new packs are filled to the pack target
        report.update(packs_after=len(stored) - len(going) + written, packs_written=written, pack_bytes_after=after,
                      bytes_after=after + index_bytes_before, bytes_freed=pack_bytes_before - after,
                      duration_seconds=round(time.monotonic() - started, 3))
        return report

    # 1. new packs: the live blobs of the packs to rewrite, each authenticated before it is copied
    progress.bytes_total = sum(stored[p] for p in plan.rewrite)
    progress.files_total = len(plan.rewrite)
    rewritten: list[str] = []
    writer = PackWriter(repo)
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="repack-check") as pool:
            for pid, fut in _prefetch(repo, plan.rewrite):
                info = index.packs[pid]
                progress.bytes_done += stored[pid]
                progress.files_done += 1
                try:
                    data = fut.result()
                    keys = repo.epoch_keys(info.epoch, provider)
                    blobs = list(pool.map(lambda e: _checked_blob(keys, pid, data, e), plan.copy[pid]))
                except LifelineError as exc:  # damaged or unreadable: stays whole, its entries too
                    report["damaged"].append({"object": pack_name(pid), "error": str(exc)})
                    plan.keep.append(pid)
                    continue
                for (cid, _off, _length, raw), blob in zip(plan.copy[pid], blobs):
                    writer.add(keys, cid, blob, raw)
                rewritten.append(pid)
        new_packs = writer.finish()
    finally:
        writer.close()
    # A damaged pack stays whole; a duplicate of a chunk it owns (in a pack that would go) may be the only
    # good copy left, so the packs holding one stay too (their copies made above are duplicates, harmless).
    failed = {pid for pid in plan.rewrite if pid not in rewritten}
    if failed:
        at_risk = {e[0] for pid in failed for e in plan.copy[pid]}
        for group in (rewritten, plan.drop):
            for pid in [p for p in group if any(e[0] in at_risk for e in index.packs[p].entries)]:
                group.remove(pid)
                plan.keep.append(pid)
    report["packs_rewritten"] = len(rewritten)
    report["packs_deleted_unused"] = len(plan.drop)
    report["rewritten"] = rewritten
    report["packs_written"] = len(new_packs)
    report["blobs_copied"] = sum(len(p.entries) for p in new_packs)
    report["bytes_copied"] = sum(e[2] for p in new_packs for e in p.entries)

    # 2. the index naming what stays and the new packs; 3. the old segments
    if rewrite_index or new_packs:
        stays = [index.packs[p] for p in plan.keep + plan.lost] + new_packs
        write_index(repo, provider, stays)
        if repo.immutability is None:
            for name in list(index.segments) + list(index.other):
                repo.backend.delete(name)
        else:  # a segment still retained stays, and so does every pack it names
            _gone, kept = delete_expired(repo.backend, list(index.segments) + list(index.other), repo.immutability)
            held = {pid for k in kept for pid in index.segments.get(k["object"], ())}
            unknown = any(k["object"] in index.other for k in kept)  # a shredded epoch's: which packs, unknown
            for group in (rewritten, plan.drop, plan.orphans):
                group[:] = [p for p in group if p not in held and not (unknown and p not in index.packs)]
    # 4. the old packs, last
    for pid in rewritten + plan.drop + plan.orphans:
        try:
            repo.backend.delete(pack_name(pid))
        except RetentionActive:
            pass  # extended since it was planned: it goes later
    for t in tmp:
        repo.backend.delete_temporary(t.name)
    for lk in stale:
        delete_lock(repo.backend, lk)

    stored_after = repo.list_packs()
    segments_after = _index_objects(repo)
    report.update(packs_after=len(stored_after), pack_bytes_after=sum(stored_after.values()),
                  index_bytes_after=sum(segments_after.values()), index_segments_after=len(segments_after))
    report["bytes_after"] = report["pack_bytes_after"] + report["index_bytes_after"]
    report["bytes_freed"] = report["bytes_before"] - report["bytes_after"]
    report["duration_seconds"] = round(time.monotonic() - started, 3)
    return report


def _retained_stay(repo: Repository, plan: RepackPlan) -> None:
    """An immutable repository's plan, without the packs whose retention has not ended (they stay as they
    are, indexed: copying their live blobs would only add a copy until they may go)."""
    infos = {o.name.rsplit("/", 1)[-1]: o for o in repo.backend.list(DATA_DIR)}
    now = time.time()

    def retained(pid: str) -> bool:
        return retained_until(repo.backend, repo.immutability, infos.get(pid), now) is not None

    for group, to_keep in ((plan.rewrite, True), (plan.drop, True), (plan.orphans, False)):
        stay = [p for p in group if retained(p)]
        group[:] = [p for p in group if p not in stay]
        if to_keep:
            plan.keep.extend(stay)
    for pid in list(plan.copy):
        if pid not in plan.rewrite:
            del plan.copy[pid]


def _checked_blob(keys, pack_id: str, data: bytes, entry: tuple) -> bytes:
    """The sealed blob of ``entry`` in the pack's bytes, once it authenticates (DamagedData if not)."""
    cid, off, length, raw = entry
    blob = data[off:off + length]
    if len(blob) != length:
        raise DamagedData(f"pack {pack_name(pack_id)} is truncated (blob {cid.hex()} at offset {off} "
                          f"runs past its end)", obj=pack_name(pack_id))
    try:
        keys.open_chunk(cid, blob, raw)
    except DamagedData as exc:
        raise DamagedData(f"pack {pack_name(pack_id)}: blob {cid.hex()} at offset {off}: {exc}",
                          obj=pack_name(pack_id)) from None
    return blob


# --- rebuild-index -------------------------------------------------------------------------
def run_rebuild_index(repo: Repository, provider, *, dry_run: bool = False, lock_wait: float = 0.0,
                      progress: Progress | None = None, workers: int = 4) -> dict:
    lock = repo.lock(exclusive=True, command="rebuild-index", wait=lock_wait)
    try:
        return _rebuild_index(repo, provider, dry_run, progress or PackProgress("rebuild-index", enabled=False),
                              workers)
    finally:
        lock.release()


def _rebuild_index(repo: Repository, provider, dry_run: bool, progress: Progress, workers: int) -> dict:
    started = time.monotonic()
    old = _index_objects(repo)
    notes: list[str] = []
    try:  # only to keep what it knew of a pack whose directory is damaged
        previous = repo.load_index(provider)
    except KeyMismatch:
        raise
    except LifelineError as exc:  # an index object storage cannot give back: it is replaced all the same
        previous = Index()
        notes.append(f"the old index could not be read ({exc}); it is replaced without it")
    stored = repo.list_packs()
    progress.files_total = len(stored)
    progress.bytes_total = sum(stored.values())
    keys_lock = threading.Lock()

    def keys_for(epoch: str):
        with keys_lock:  # one unwrap per epoch, however many threads ask
            return repo.epoch_keys(epoch, provider)

    def read(pid: str):
        try:
            return pid, read_pack_info(repo.backend, pid, stored[pid], keys_for), None
        except ShreddedEpoch as exc:
            return pid, None, exc
        except KeyMismatch:
            raise  # the wrong key: every pack would fail; say so once
        except LifelineError as exc:
            return pid, None, exc

    infos: list[PackInfo] = []
    damaged: list[dict] = []
    shredded: list[str] = []
    kept_from_index: list[str] = []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="rebuild") as ex:
        for pid, info, exc in ex.map(read, sorted(stored)):
            progress.files_done += 1
            progress.bytes_done += stored[pid]
            if info is not None:
                infos.append(info)
                continue
            if isinstance(exc, ShreddedEpoch) and exc.tombstone is not None:
                shredded.append(pid)  # garbage: its key was destroyed on purpose; prune deletes it
                continue
            why = str(exc)
            if isinstance(exc, ShreddedEpoch):
                why = (f"pack {pack_name(pid)}: the key object of its epoch {exc.epoch} is gone, "
                       "and no shred recorded it")
            had = previous.packs.get(pid)
            if had is not None and had.size == stored[pid]:
                infos.append(had)
                kept_from_index.append(pid)
                why += "; kept the entries an authenticated index segment had for it"
            damaged.append({"object": pack_name(pid), "error": why})
    report = {
        "dry_run": dry_run,
        "packs_read": len(stored),
        "packs_indexed": len(infos),
        "packs_kept_from_old_index": kept_from_index,
        "packs_shredded": shredded,
        "chunks_indexed": sum(len(i.entries) for i in infos),
        "index_segments_before": len(old),
        "index_segments_damaged_before": sorted(previous.damaged),
        "damaged": damaged,
        "notes": notes,
    }
    if not dry_run:
        count, size = write_index(repo, provider, infos)  # new segments first,
        for name in old:  # then every object that was in index/ before
            try:
                repo.backend.delete(name)
            except RetentionActive:  # immutable: it goes with a prune after its retention
                notes.append(f"{name} is retained: it stays beside the new index until its retention ends")
        report.update(index_segments_written=count, index_bytes=size)
    report["duration_seconds"] = round(time.monotonic() - started, 3)
    return report
