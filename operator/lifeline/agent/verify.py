"""`verify` (are these points restorable?) and `check` (is the repository sound?).

Both also hold the listing of points against the authenticated catalogue head: a point the head
lists that is gone from storage is damage (the newest points deleted, or storage rolled back);
one crypto-shredded, or one the head does not list yet, is a note."""
from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from lifeline.errors import LifelineError
from lifeline.repository import catalogue
from lifeline.repository.errors import DamagedData, KeyMismatch, ObjectNotFound, TamperedData
from lifeline.repository.index import Index
from lifeline.repository.layout import CONFIG, HEAD, pack_name, point_name
from lifeline.repository.immutability import audit
from lifeline.repository.layout import LOCKS_DIR
from lifeline.repository.locks import list_locks
from lifeline.repository.pack import read_directory
from lifeline.repository.repo import PointRef, Repository, ShreddedEpoch

from .progress import Progress
from .wal_retention import plan as _wal_plan  # log segments' epochs are in use too


class Report:
    def __init__(self):
        self.damaged: list[dict] = []  # {"point", "path", "chunk", "error"} or {"object", "error"}
        self.shredded: list[str] = []
        self.points_checked = 0
        self.chunks_checked = 0
        self.bytes_read = 0
        self.leftovers: dict[str, list] = {}
        self.notes: list[str] = []
        self.trees: dict = {}
        self.catalogue: dict | None = None  # the head's seq and size, to compare with a record kept elsewhere

    def as_dict(self) -> dict:
        return {"ok": not self.damaged, "damaged": self.damaged, "shredded_points": self.shredded,
                "points_checked": self.points_checked, "chunks_checked": self.chunks_checked,
                "bytes_read": self.bytes_read, "leftovers": self.leftovers, "notes": self.notes,
                "catalogue": self.catalogue}


def check_catalogue(repo: Repository, provider, points: list[PointRef], bad: dict, report: Report) -> None:
    """The listing against the catalogue head: gone points are damage, shredded and unlisted ones notes."""
    try:
        head = catalogue.read(repo, provider)
    except TamperedData as exc:
        if exc.obj != HEAD:
            raise  # the config itself: nothing is checked with it
        report.damaged.append({"object": HEAD, "error": str(exc)})
        return
    present = {p.id for p in points} | {name.rsplit("/", 1)[-1] for name in bad}
    if head.state == "missing":
        if present:
            report.damaged.append({"object": HEAD, "error": str(catalogue.missing_head(repo))})
        return
    report.catalogue = {"seq": head.seq, "points": len(head.points), "authenticated": head.state == "verified"}
    if head.state != "verified":
        report.notes.append(head.note)
        return
    found = catalogue.compare(repo, head, present, points)
    for pid, e in found.missing:
        report.damaged.append({"object": point_name(pid), "error": catalogue.describe_missing(head, pid, e)})
    if found.ahead:
        report.damaged.append({"object": HEAD, "error": catalogue.describe_ahead(head, found.ahead)})
    for pid, _e, t in found.shredded:
        report.notes.append(f"point {pid} was crypto-shredded (epoch {t.get('epoch')}, at {t.get('shredded_at')} "
                            f"by {t.get('actor')}); the catalogue head lists it until the next prune")
    report.notes.extend(catalogue.describe_unlisted(head, p) for p in found.unlisted)
    report.notes.append(f"catalogue head: seq {head.seq}, {len(head.points)} point(s), authenticated")


def catalogue_lines_for_latest(repo: Repository, provider, points: list[PointRef], chosen: PointRef) -> list[str]:
    """Warnings for `restore latest`: the head knows newer points than the one taken, or cannot be trusted."""
    try:
        head = catalogue.read(repo, provider)
    except TamperedData as exc:
        if exc.obj != HEAD:
            raise
        return [f"{exc}; cannot tell whether newer points were deleted"]
    if head.state == "missing":
        return [str(catalogue.missing_head(repo))] if points else []
    if head.state != "verified":
        return [head.note]
    found = catalogue.compare(repo, head, {p.id for p in points}, points)
    when = chosen.header.get("completion_time") or ""
    newer = [(pid, e) for pid, e in found.missing if str(e.get("completion_time") or "") > when]
    lines = []
    if newer:
        lines.append(f"the catalogue is behind the authenticated head (seq {head.seq}): "
                     + "; ".join(f"point {pid} (seq {e.get('seq')}, completed {e.get('completion_time')})"
                                 for pid, e in newer)
                     + f" {'is' if len(newer) == 1 else 'are'} newer than {chosen.id} but missing from storage "
                     "(deleted, or storage rolled back): 'latest' is the newest point that is still there")
    if found.ahead:
        lines.append(catalogue.describe_ahead(head, found.ahead))
    shredded = [pid for pid, e, _t in found.shredded if str(e.get("completion_time") or "") > when]
    if shredded:
        lines.append(f"newer point(s) {', '.join(shredded)} were crypto-shredded")
    return lines


def _load_trees(repo: Repository, provider, points: list[PointRef], report: Report):
    """Decrypt each point's tree; damaged/shredded ones are reported and skipped."""
    trees = {}
    for p in points:
        try:
            _h, entries, keys = repo.load_point(p.id, provider)
        except ShreddedEpoch:
            report.shredded.append(p.id)
            continue
        except DamagedData as exc:
            report.damaged.append({"point": p.id, "path": None, "chunk": None, "error": str(exc)})
            continue
        except KeyMismatch as exc:
            if "wrong key" in str(exc):
                raise
            report.damaged.append({"point": p.id, "path": None, "chunk": None, "error": str(exc)})
            continue
        trees[p.id] = (entries, keys)
        report.points_checked += 1
    return trees


def verify_points(repo: Repository, provider, points: list[PointRef], *, read_data: bool,
                  report: Report | None = None, progress: Progress | None = None, index=None) -> Report:
    report = report or Report()
    progress = progress or Progress("verify", enabled=False)
    trees = _load_trees(repo, provider, points, report)
    report.trees.update(trees)
    index = index or repo.load_index(provider, epochs={keys.epoch_id for _e, keys in trees.values()})
    for name, why in index.damaged.items():
        report.damaged.append({"object": name, "error": why})
    users: dict[bytes, list[tuple[str, str]]] = defaultdict(list)
    epoch_of: dict[bytes, object] = {}
    for pid, (entries, keys) in trees.items():
        for e in entries:
            for c in e.get("chunks", ()):
                cid = bytes.fromhex(c)
                users[cid].append((pid, e["path"]))
                epoch_of[cid] = keys
    bad: dict[bytes, str] = {}
    by_pack: dict[str, list[bytes]] = defaultdict(list)
    for cid in users:
        ref = index.get(cid)
        if ref is None:
            bad[cid] = "chunk is missing from the index"
        else:
            by_pack[ref.pack_id].append(cid)
    packs_present = repo.list_packs()
    for pack_id, cids in by_pack.items():
        if pack_id not in packs_present:
            for cid in cids:
                bad[cid] = f"pack {pack_id} is missing"
    if read_data:
        progress.bytes_total = sum(packs_present.get(p, 0) for p in by_pack)

        def check_pack(pack_id: str):
            errs: dict[bytes, str] = {}
            pack_errs: list[str] = []
            try:
                data = repo.backend.get(pack_name(pack_id))
            except ObjectNotFound:
                return errs, pack_errs, 0  # already reported as missing
            except LifelineError as exc:
                for cid in by_pack[pack_id]:
                    errs[cid] = f"cannot read pack {pack_id}: {exc}"
                return errs, pack_errs, 0
            keys = epoch_of[by_pack[pack_id][0]]
            for cid in by_pack[pack_id]:
                ref = index.get(cid)
                blob = data[ref.offset:ref.offset + ref.length]
                try:
                    keys.open_chunk(cid, blob, ref.raw_len)
                except DamagedData as exc:
                    errs[cid] = f"{exc} (pack {pack_id} offset {ref.offset})"
            try:
                read_directory(keys, pack_id, data)
            except DamagedData as exc:
                pack_errs.append(str(exc))
            return errs, pack_errs, len(data)

        with ThreadPoolExecutor(2) as ex:
            for errs, pack_errs, n in ex.map(check_pack, list(by_pack)):
                bad.update(errs)
                for pe in pack_errs:
                    report.damaged.append({"object": pe.split(":")[0], "error": pe + " (no file affected)"})
                report.bytes_read += n
                progress.bytes_done += n
        report.chunks_checked += len(users)
    for cid, why in bad.items():
        for pid, path in users[cid]:
            report.damaged.append({"point": pid, "path": path, "chunk": cid.hex(), "error": why})
    return report


def run_verify(repo: Repository, provider, specs: list[str] | None, *, read_data: bool,
               progress: Progress | None = None) -> Report:
    points, bad = repo.list_points()
    report = Report()
    for name, why in bad.items():
        report.damaged.append({"object": name, "error": why})
    if specs:
        chosen = []
        for s in specs:
            p = repo.resolve_point(s, points)
            if p not in chosen:
                chosen.append(p)
    else:
        chosen = points
    lock = repo.lock(exclusive=False, command="verify")
    try:
        check_catalogue(repo, provider, points, bad, report)
        return verify_points(repo, provider, chosen, read_data=read_data, report=report, progress=progress)
    finally:
        lock.release()


def run_check(repo: Repository, provider, *, read_data: bool = False,
              progress: Progress | None = None) -> Report:
    """Structure, reachability and leftovers; with read_data, every referenced chunk too."""
    report = Report()
    try:
        repo.backend.get(CONFIG)
    except LifelineError as exc:
        report.damaged.append({"object": CONFIG, "error": str(exc)})
    points, bad = repo.list_points()
    for name, why in bad.items():
        report.damaged.append({"object": name, "error": why})
    if provider is not None:
        check_catalogue(repo, provider, points, bad, report)
    index = repo.load_index(provider) if provider is not None else Index()  # no key: nothing to prove it with
    stored = repo.list_packs()
    for pid, info in index.packs.items():
        if pid not in stored:
            continue  # reported per point/file by verify_points if referenced
        if stored[pid] != info.size:
            report.damaged.append({"object": pack_name(pid),
                                   "error": f"size {stored[pid]} but the index says {info.size}"})
    if provider is None:
        report.notes.append("no key given: point trees and chunk reachability were not checked")
    else:
        verify_points(repo, provider, points, read_data=read_data, report=report, progress=progress,
                      index=index)
    # --- leftovers -----------------------------------------------------------------
    left: dict[str, list] = {}
    tmp = repo.backend.list_temporaries()
    if tmp:
        left["temporary_files"] = [t.name for t in tmp]
    all_locks = list_locks(repo.backend)
    stale = [lk for lk in all_locks if lk.is_stale()]
    live = [lk for lk in all_locks if not lk.is_stale()]
    if live:
        report.notes.append("another process is using the repository (" + "; ".join(lk.describe() for lk in live[:3])
                            + "): packs it is writing show up as unindexed until it finishes")
    if stale:
        left["stale_locks"] = [lk.describe() for lk in stale]
    orphans = sorted(set(stored) - set(index.packs)) if provider is not None else []
    if orphans:
        left["unindexed_packs"] = orphans
    if provider is not None and not any("point" in d for d in report.damaged) and not bad:
        live = {bytes.fromhex(c) for entries, _k in report.trees.values()
                for e in entries for c in e.get("chunks", ())}
        unused = [pid for pid, info in index.packs.items()
                  if pid in stored and not any(e[0] in live for e in info.entries)]
        if unused:
            left["unreferenced_packs"] = sorted(unused)
    used_epochs = {p.header.get("epoch") for p in points}
    used_epochs |= _wal_plan(repo, [])["keep_epochs"]
    unused_epochs = sorted(set(repo.list_epochs()) - used_epochs
                           - {info.epoch for info in index.packs.values()})
    if unused_epochs:
        left["unused_epoch_keys"] = unused_epochs
    report.leftovers = left
    if repo.immutability is not None:
        check_retention(repo, report)
    return report


def check_retention(repo: Repository, report: Report) -> None:
    """An immutable repository's objects must each be locked, in its mode, for ``days`` after they were
    written (lock records, which expire in hours, aside): any other is damage, since whoever holds the
    credentials could delete it sooner than the repository promises."""
    imm = repo.immutability
    infos = [o for o in repo.backend.list("") if not o.name.startswith(LOCKS_DIR)]
    short = audit(repo.backend, infos, imm)
    for s in short:
        report.damaged.append({"object": s["object"], "error": (
            f"retention {s['mode'] or 'none'} until {s['until'] or '(none)'}, shorter than the repository's "
            f"({s['expected']}): whoever holds the bucket's credentials could delete it sooner")})
    report.notes.append(f"immutable repository ({imm.describe()}): retention of {len(infos)} objects checked, "
                        f"{len(short)} shorter than the repository says")
