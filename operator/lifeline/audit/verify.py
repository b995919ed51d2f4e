"""Walk a stored audit log and say whether it is intact, or which record is wrong first.

Detected: a log that is not there at all (no records, checkpoint or head: a wrong URL or
everything deleted); a record edited (its content no longer matches its hash), edited with a
recomputed hash or replaced (the next record links to another hash), removed (a gap
in ``seq``, or records missing at the start without a checkpoint that allows it, or
at the end behind the head hint), inserted (an object the writer never makes, or a
record that breaks the link of the one after it), reordered or renamed (a record
stored under another number than its own). A checkpoint must itself be recorded in
the chain, so pruning cannot be faked by writing one.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from lifeline.clock import seconds_between
from lifeline.repository.errors import ObjectNotFound

from . import chain
from .store import AuditStore

PRUNE_ACTION = "audit-prune"


@dataclass
class Verification:
    url: str
    ok: bool
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    first_time: str | None = None
    last_time: str | None = None
    pruned_before: int | None = None  # seq below which a checkpoint allows pruning
    problem: str | None = None
    problem_kind: str | None = None  # edited, removed, inserted, reordered, checkpoint, unreadable, missing
    problem_seq: int | None = None
    checked_anchors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.ok:
            return f"audit log {self.url} is NOT intact: {self.problem}"
        pruned = f"; records before {self.pruned_before} pruned under a recorded checkpoint" \
            if self.pruned_before else ""
        anchors = f"; anchors {', '.join(self.checked_anchors)} match" if self.checked_anchors else ""
        return (f"audit log {self.url} is intact: {self.records} records, seq {self.first_seq}..{self.last_seq} "
                f"({self.first_time} .. {self.last_time}), head {self.last_seq}:{self.head_hash}{pruned}{anchors}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


class _Broken(Exception):
    def __init__(self, kind: str, seq: int | None, message: str):
        super().__init__(message)
        self.kind, self.seq, self.message = kind, seq, message


def _short(digest: str | None) -> str:
    return (digest or "")[:16] + "…" if digest else "nothing"


def verify(store: AuditStore, anchors: list[tuple[int, str]] | None = None) -> Verification:
    """Check every stored record, the checkpoints and the head hint; never raises for tampering."""
    result = Verification(url=store.url, ok=True)
    try:
        _walk(store, result, anchors or [])
    except _Broken as broken:
        result.ok, result.problem, result.problem_kind, result.problem_seq = False, broken.message, broken.kind, broken.seq
    return result


def _load(store: AuditStore, name: str, seq: int | None, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(store.backend.get(name))
    except ObjectNotFound:
        raise _Broken("removed", seq, f"{what} ({name}) disappeared while being verified") from None
    except ValueError:
        raise _Broken("edited", seq, f"{what} ({name}) was edited: it is no longer valid JSON") from None
    if not isinstance(obj, dict):
        raise _Broken("edited", seq, f"{what} ({name}) was edited: it is not a JSON object")
    return obj


def _latest_checkpoint(store: AuditStore) -> dict[str, Any] | None:
    latest = None
    for info in store.backend.list(chain.CHECKPOINTS_DIR):
        first = chain.seq_of_checkpoint_name(info.name)
        if first is None:
            raise _Broken("inserted", None, f"unexpected object {info.name} among the checkpoints: "
                                            "Lifeline never writes it (inserted by hand?)")
        cp = _load(store, info.name, None, f"checkpoint {first}")
        if cp.get("first_seq") != first:
            raise _Broken("checkpoint", first, f"checkpoint {info.name} was edited: it says first_seq "
                                               f"{cp.get('first_seq')}")
        if latest is None or first > latest["first_seq"]:
            latest = cp
    return latest


def _walk(store: AuditStore, result: Verification, anchors: list[tuple[int, str]]) -> None:
    seqs = []
    for info in store.backend.list(chain.RECORDS_DIR):
        seq = chain.seq_of_record_name(info.name)
        if seq is None:
            raise _Broken("inserted", None, f"unexpected object {info.name} among the records: "
                                            "Lifeline never writes that name (inserted by hand?)")
        seqs.append(seq)
    seqs.sort()
    checkpoint = _latest_checkpoint(store)
    floor = checkpoint["first_seq"] if checkpoint else 0
    result.pruned_before = floor or None
    if not seqs:
        if checkpoint:
            raise _Broken("removed", floor, f"every record was removed (a checkpoint says the log "
                                            f"continues at record {floor})")
        hint = store.head_hint()
        if hint:
            raise _Broken("removed", 0, f"every record was removed: {chain.HEAD} says the log was written up "
                                        f"to record {hint.get('seq')}")
        if anchors:
            seq = min(s for s, _ in anchors)
            raise _Broken("removed", seq, f"record {seq} (anchor) is gone: the log has no records at all")
        raise _Broken("missing", None, f"there is no audit log at {store.url}: no records, no checkpoint and no "
                                       f"{chain.HEAD} (a wrong URL, or the whole log was deleted)")
    if seqs[0] > floor:
        missing = _span(floor, seqs[0] - 1)
        why = "the checkpoint allows pruning only before record %d" % floor if checkpoint else \
            "no checkpoint allows pruning the start of the log"
        raise _Broken("removed", floor, f"{missing} removed from the start: {why}")

    prune_digests: dict[str, dict[str, Any]] = {}
    previous: dict[str, Any] | None = None
    before_previous: dict[str, Any] | None = None
    for seq in seqs:
        if previous is not None and seq != previous["seq"] + 1:
            raise _Broken("removed", previous["seq"] + 1, f"{_span(previous['seq'] + 1, seq - 1)} removed "
                                                           f"(the log jumps from {previous['seq']} to {seq})")
        record = _load(store, chain.record_name(seq), seq, f"record {seq}")
        if record.get("seq") != seq:
            raise _Broken("reordered", seq, f"record {seq} was reordered or renamed: {chain.record_name(seq)} "
                                            f"holds record {record.get('seq')}")
        if chain.record_hash(record) != record.get("hash"):
            raise _Broken("edited", seq, f"record {seq} was edited: its content no longer matches its hash "
                                         f"{_short(record.get('hash'))}")
        expected = _expected_prev(seq, previous, checkpoint, floor)
        if expected is not None and record.get("prev") != expected:
            if previous is not None:
                raise _broken_link(store, record, previous, before_previous)
            if seq == 0:
                raise _Broken("edited", 0, "record 0 was edited or replaced: it does not start the chain")
            raise _Broken("checkpoint", seq, f"record {seq} does not follow the checkpoint: it links to "
                                             f"{_short(record.get('prev'))}, the checkpoint to {_short(expected)}")
        if record.get("action") == PRUNE_ACTION:
            digest = (record.get("details") or {}).get("checkpoint_sha256")
            if digest:
                prune_digests[digest] = record
        before_previous, previous = previous, record
        if result.first_seq is None:
            result.first_seq, result.first_time = seq, record.get("time")
        result.records += 1
    result.last_seq, result.last_time, result.head_hash = previous["seq"], previous.get("time"), previous["hash"]

    if checkpoint:
        _check_checkpoint(checkpoint, prune_digests)
    _check_head_hint(store, result)
    for seq, digest in anchors:
        if result.first_seq is not None and seq < floor:
            result.checked_anchors.append(f"{seq} (pruned)")
            continue
        if seq > result.last_seq:
            raise _Broken("removed", seq, f"record {seq} (anchor) is gone: the log ends at {result.last_seq}")
        stored = store.load(seq).get("hash", "")
        if not stored.startswith(digest.lower()):
            raise _Broken("edited", seq, f"record {seq} was replaced: it hashes to {_short(stored)}, the anchor "
                                         f"says {_short(digest)}")
        result.checked_anchors.append(f"{seq}:{digest[:16]}")


def _broken_link(store: AuditStore, record, previous, before_previous) -> _Broken:
    """Which record to blame when record N does not link to record N-1."""
    seq = record["seq"]
    if before_previous is not None and record.get("prev") == before_previous.get("hash"):
        return _Broken("inserted", seq - 1, f"record {seq - 1} was inserted: record {seq} links straight to "
                                            f"record {seq - 2}")
    try:
        following = json.loads(store.backend.get(chain.record_name(seq + 1)))
    except (ObjectNotFound, ValueError):
        following = None
    if isinstance(following, dict) and following.get("prev") == previous["hash"]:
        return _Broken("reordered", seq, f"record {seq} was reordered or replaced: record {seq + 1} links to "
                                         f"record {seq - 1}, record {seq} links elsewhere "
                                         f"({_short(record.get('prev'))})")
    return _Broken("edited", seq - 1, f"record {seq - 1} was edited or replaced: record {seq} links to "
                                      f"{_short(record.get('prev'))} but record {seq - 1} hashes to "
                                      f"{_short(previous['hash'])}")


def _expected_prev(seq: int, previous, checkpoint, floor: int) -> str | None:
    if previous is not None:
        return previous["hash"]
    if seq == 0:
        return chain.GENESIS
    if checkpoint and seq == floor:
        return checkpoint.get("prev")
    return None  # left over from an interrupted prune, below the checkpoint: nothing to link to


def _check_checkpoint(checkpoint: dict[str, Any], prune_records: dict[str, dict[str, Any]]) -> None:
    first = checkpoint["first_seq"]
    digest = chain.checkpoint_digest(checkpoint)
    prune = prune_records.get(digest)
    if prune is None:
        raise _Broken("checkpoint", first, f"checkpoint {chain.checkpoint_name(first)} is not recorded in the "
                                           "chain (no audit-prune record carries its digest): edited or forged")
    kept = float(checkpoint.get("retention_seconds") or 0)
    newest_pruned = checkpoint.get("last_pruned_time")
    if newest_pruned and seconds_between(newest_pruned, prune.get("time")) < kept:
        raise _Broken("checkpoint", first, f"checkpoint {chain.checkpoint_name(first)} pruned a record from "
                                           f"{newest_pruned}, younger than its retention at {prune.get('time')}")


def _check_head_hint(store: AuditStore, result: Verification) -> None:
    hint = store.head_hint()
    if not hint:
        return
    try:
        seq, digest = int(hint["seq"]), str(hint["hash"])
    except (KeyError, TypeError, ValueError):
        return  # a hint, not evidence
    if seq > result.last_seq:
        raise _Broken("removed", result.last_seq + 1,
                      f"{_span(result.last_seq + 1, seq)} removed from the end: the log ends at "
                      f"{result.last_seq} but was written up to {seq} ({chain.HEAD})")
    if seq >= (result.first_seq or 0) and store.load(seq).get("hash") != digest:
        raise _Broken("edited", seq, f"record {seq} was replaced: it hashes to "
                                     f"{_short(store.load(seq).get('hash'))}, {chain.HEAD} says {_short(digest)}")


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}..{last}"
