"""The catalogue head (object ``head``): which recovery points were published, so that a rollback shows.

Storage can delete objects, and a listing of ``points/`` cannot tell "never written" from "deleted":
removing the newest point(s) would make ``restore latest`` quietly take an older one. So every
publication is also recorded in one authenticated object::

    {"version": 2, "repository": <config id>, "seq": N, "updated_at": ..., "updated_by": "backup" | "prune" | "init",
     "points": {<point id>: {"seq": n, "epoch": <epoch id>, "completion_time": ...}},
     "macs": {<epoch id> | "anchor": <hex keyed BLAKE3 of the rest, canonical JSON>}}

``seq`` grows by one at every write, and a point's (authenticated) header records the ``seq`` it was
published at. The MACs are under the "catalogue" key of the publishing backup's epoch and of the
epoch that proved the previous head (two, so shredding one epoch leaves the head provable), or of
the config's anchor for the empty head ``init`` writes. One MAC that verifies proves the head; one
whose key opens but does not verify is tampering.

Writers:

* a backup, under the exclusive *head* lock (backups run side by side, they record one at a time):
  reads and authenticates the head, writes its point, then the head with the point added. A crash
  in between leaves a point the head does not list (a note), never a listed point that is missing;
* prune, under the exclusive repository lock: writes the head of the points it keeps *before* it
  deletes the others, and refuses to run on a rolled-back repository unless told to accept the loss;
* shred needs no key and does not write it: a listed point whose epoch has a tombstone and no key
  object counts as crypto-shredded, not missing, and the next prune drops it.

Limit: a rollback of the head *and* the points together to an earlier state (storage can keep old
copies of both) looks like that earlier state. ``verify`` prints the head's ``seq``: compare it with
one recorded outside the storage to see that.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field

from .crypto import MacKeys
from .errors import ObjectNotFound, ShreddedEpoch, TamperedData
from .layout import FORMAT_VERSION, HEAD, HEADS_DIR, POINTS_DIR, head_name, head_seq, key_name, rfc3339
from .locks import HEAD as HEAD_SCOPE

ANCHOR = "anchor"
HEAD_LOCK_WAIT = 60.0
_EPOCH = re.compile(r"[0-9a-f]{32}")


@dataclass
class Head:
    seq: int = 0
    points: dict[str, dict] = field(default_factory=dict)
    state: str = "verified"  # verified | missing | unverifiable (every epoch that sealed it was shredded)
    proof: str | None = None  # the epoch id (or "anchor") whose key verified it
    keys: MacKeys | None = None
    note: str = ""


@dataclass
class Findings:
    """The head against the listing: what is gone, what was shredded, what the head does not list."""

    missing: list[tuple[str, dict]] = field(default_factory=list)
    shredded: list[tuple[str, dict, dict]] = field(default_factory=list)  # (id, entry, tombstone)
    unlisted: list = field(default_factory=list)  # PointRefs a crash can explain (seq <= head seq + 1)
    # PointRefs published after the head was written (seq > head seq + 1): an older head was put back
    ahead: list = field(default_factory=list)


def entry(header: dict) -> dict:
    return {"seq": header.get("seq"), "epoch": header.get("epoch"), "completion_time": header.get("completion_time")}


def _canonical(body: dict) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "macs"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def write(repo, *, seq: int, points: dict[str, dict], sources: dict[str, MacKeys], by: str) -> None:
    body = {"version": FORMAT_VERSION, "repository": repo.config.get("id"), "seq": seq,
            "updated_at": rfc3339(time.time()), "updated_by": by, "points": points}
    data = _canonical(body)
    body["macs"] = {source: keys.mac("catalogue", data).hex() for source, keys in sources.items()}
    # an immutable repository never overwrites: each head is a new object, heads/<seq>.<random>
    name = head_name(seq, secrets.token_hex(4)) if repo.backend.write_once else HEAD
    repo.backend.put(name, json.dumps(body, indent=1, sort_keys=True).encode())


def head_objects(repo) -> list[tuple[int, str]]:
    """An immutable repository's head objects, (seq, name), newest first."""
    found = [(head_seq(o.name), o.name) for o in repo.backend.list(HEADS_DIR)]
    return sorted(((seq, name) for seq, name in found if seq is not None), reverse=True)


def _read_raw(repo) -> bytes | None:
    """The head's bytes (None: there is none). An immutable repository's is its highest-seq head object."""
    if not repo.backend.write_once:
        try:
            return repo.backend.get(HEAD)
        except ObjectNotFound:
            return None
    for seq, name in head_objects(repo):
        try:
            raw = repo.backend.get(name)
        except ObjectNotFound:
            continue
        try:
            said = json.loads(raw).get("seq")
        except (ValueError, AttributeError):
            said = None
        if said != seq:
            raise _tampered(repo, f"object {name} says seq {said!r} where its name says {seq}")
        return raw
    return None


def _tampered(repo, why: str) -> TamperedData:
    return TamperedData(f"the catalogue head ({HEAD}) of {repo.url} {why}: storage changed it or put back another; "
                        "the list of published points cannot be trusted", obj=HEAD)


def _parse(repo, raw: bytes) -> tuple[dict, int, dict, dict]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise _tampered(repo, "is not valid JSON") from None
    if not isinstance(body, dict):
        raise _tampered(repo, "is not a JSON object")
    seq, points, macs = body.get("seq"), body.get("points"), body.get("macs")
    if type(seq) is not int or seq < 0 or not isinstance(points, dict) or not isinstance(macs, dict) \
            or not all(isinstance(e, dict) for e in points.values()):
        raise _tampered(repo, "is malformed")
    if body.get("repository") != repo.config.get("id"):
        raise _tampered(repo, f"belongs to another repository ({body.get('repository')!r})")
    return body, seq, points, macs


def read(repo, provider) -> Head:
    """The head, authenticated. Raises TamperedData when it fails; ``state`` says when it is missing,
    or cannot be checked because every epoch that sealed it was crypto-shredded."""
    raw = _read_raw(repo)
    if raw is None:
        return Head(state="missing")
    body, seq, points, macs = _parse(repo, raw)
    data = _canonical(body)
    shredded = []
    # keys already open first: proving the head then costs no unwrap
    for source in sorted(macs, key=lambda s: not repo.has_keys(s)):
        if source == ANCHOR:
            keys = repo.anchor_keys(provider)
        elif not _EPOCH.fullmatch(source):
            raise _tampered(repo, f"names an unknown sealing key {source!r}")
        else:
            try:
                keys = repo.epoch_keys(source, provider).macs
            except ShreddedEpoch as exc:
                shredded.append((source, exc.tombstone))
                continue
        if not keys.verify("catalogue", data, macs[source]):
            raise _tampered(repo, f"failed authentication (checked with the key of {_where(source)})")
        return Head(seq, points, "verified", source, keys)
    if shredded and all(t is not None for _s, t in shredded):
        return Head(seq, points, "unverifiable",
                    note=f"the catalogue head (seq {seq}) cannot be authenticated: every epoch that sealed it "
                         f"({', '.join(s for s, _t in shredded)}) was crypto-shredded; the next backup or prune "
                         "seals it again")
    raise _tampered(repo, "carries no MAC that can be checked" + (
        f" (the key objects of {', '.join(s for s, _t in shredded)} are gone without a shred tombstone)"
        if shredded else ""))


def _where(source: str) -> str:
    return "the config's anchor" if source == ANCHOR else key_name(source)


def missing_head(repo) -> TamperedData:
    return TamperedData(
        f"the catalogue head ({HEAD}) of {repo.url} is missing although the repository has recovery points: "
        "storage deleted it (which would hide a rollback), or the very first backup stopped between its point "
        "and the head. Check with `lifeline agent check`; `lifeline agent prune --accept-missing` writes a new "
        "head from the points that are there", obj=HEAD)


def compare(repo, head: Head, present: set[str], points: list) -> Findings:
    """``present``: ids of every point object there (readable or not); ``points``: the readable ones."""
    out = Findings()
    gone_epochs: dict[str, dict | None] = {}
    for pid, e in sorted(head.points.items(), key=lambda kv: str(kv[1].get("completion_time") or "")):
        if pid in present:
            continue
        epoch = e.get("epoch")
        epoch = epoch if isinstance(epoch, str) and _EPOCH.fullmatch(epoch) else None
        if epoch is not None and epoch not in gone_epochs:
            t = repo.tombstone(epoch)
            # an immutable repository keeps a shredded epoch's key object until its retention ends
            gone_epochs[epoch] = t if t is not None and (not repo.backend.exists(key_name(epoch)) or (
                repo.backend.write_once and "mac" in t)) else None
        tomb = gone_epochs.get(epoch) if epoch is not None else None
        if tomb is not None:
            out.shredded.append((pid, e, tomb))
        else:
            out.missing.append((pid, e))
    for p in points:
        if p.id not in head.points:
            seq = p.header.get("seq")
            (out.ahead if type(seq) is int and seq > head.seq + 1 else out.unlisted).append(p)
    return out


def describe_missing(head: Head, pid: str, e: dict) -> str:
    return (f"recovery point {pid} (seq {e.get('seq')}, completed {e.get('completion_time')}) is missing: the "
            f"authenticated catalogue head (seq {head.seq}) lists it. It was deleted from storage, or storage "
            "was rolled back")


def describe_unlisted(head: Head, p) -> str:
    return (f"point {p.id} (seq {p.header.get('seq')}) is not in the catalogue head (seq {head.seq}): its "
            "backup stopped before recording it (or the head was put back by one step); the next prune records it")


def describe_ahead(head: Head, ahead: list) -> str:
    newest = max(ahead, key=lambda p: p.header.get("seq"))
    return (f"the catalogue head (seq {head.seq}) is older than the points in storage (point {newest.id} has seq "
            f"{newest.header.get('seq')}; {len(ahead)} point(s) are not in it): an older copy of the head was put "
            "back, which hides the deletion of any point published since")


def publish(repo, provider, keys, header: dict, entries: list[dict], *, lock_wait: float = 0.0) -> str:
    """Write a backup's point and record it in the head, under the head lock; returns the point's checksum."""
    # held for two small writes: always worth waiting for (a stale one clears like any lock)
    lock = repo.lock(exclusive=True, scope=HEAD_SCOPE, command=f"backup: recording point {header['id']}",
                     wait=max(lock_wait, HEAD_LOCK_WAIT))
    try:
        head = read(repo, provider)
        if head.state == "missing" and repo.backend.list(POINTS_DIR):
            raise missing_head(repo)
        header["seq"] = head.seq + 1
        checksum = repo.write_point(keys, header, entries)
        sources = {keys.epoch_id: keys.macs}
        if head.keys is not None and head.proof not in (None, ANCHOR, keys.epoch_id):
            sources[head.proof] = head.keys  # a second seal: shredding one epoch leaves the head provable
        write(repo, seq=header["seq"], points={**head.points, header["id"]: entry(header)}, sources=sources,
              by="backup")
        return checksum
    finally:
        lock.release()


def seal_sources(kept: list[tuple[dict, object]]) -> dict[str, MacKeys]:
    """The keys prune seals a new head with: the two epochs of the newest kept points."""
    out: dict[str, MacKeys] = {}
    for header, keys in sorted(kept, key=lambda hk: str(hk[0].get("completion_time") or ""), reverse=True):
        out.setdefault(keys.epoch_id, keys.macs)
        if len(out) == 2:
            break
    return out
