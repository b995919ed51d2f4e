"""What one stored audit record is, and how its hash is computed (pure, no I/O).

A record is a JSON object with ``seq`` (0, 1, 2, ... with no gaps), ``prev`` (the
hash of record ``seq - 1``, or :data:`GENESIS` for record 0) and ``hash``: the
SHA-256 of the record's canonical bytes without the ``hash`` field. Changing any
byte of a record changes its hash; changing its hash breaks the next record's
``prev``. That is the whole tamper evidence; immutability of the objects
themselves is the store's (and the bucket's Object Lock's) business.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

FORMAT = "lifeline-audit"
VERSION = 1
GENESIS = "0" * 64

RECORDS_DIR = "records/"
CHECKPOINTS_DIR = "checkpoints/"
HEAD = "head.json"  # a hint for writers; verify compares it, never trusts it
SEQ_DIGITS = 12
_RECORD_NAME = re.compile(r"^records/(\d{12})\.json$")
_CHECKPOINT_NAME = re.compile(r"^checkpoints/(\d{12})\.json$")


def canonical(obj: dict[str, Any]) -> bytes:
    """The one byte form that is hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical bytes, its own ``hash`` field left out."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def seal(entry: dict[str, Any], *, seq: int, prev: str, writer: str) -> dict[str, Any]:
    """A stored record from an audit entry: numbered, linked to ``prev`` and hashed."""
    # A JSON round trip first, so what is hashed is exactly what a reader will load.
    body = json.loads(canonical(entry))
    record = {"v": VERSION, "seq": seq, "prev": prev, "writer": writer, **body}
    record["hash"] = record_hash(record)
    return record


def to_bytes(obj: dict[str, Any]) -> bytes:
    """Stored form: canonical JSON plus a newline (readable with cat, hashable as is)."""
    return canonical(obj) + b"\n"


def record_name(seq: int) -> str:
    return f"{RECORDS_DIR}{seq:0{SEQ_DIGITS}d}.json"


def checkpoint_name(first_seq: int) -> str:
    return f"{CHECKPOINTS_DIR}{first_seq:0{SEQ_DIGITS}d}.json"


def seq_of_record_name(name: str) -> int | None:
    m = _RECORD_NAME.match(name)
    return int(m.group(1)) if m else None


def seq_of_checkpoint_name(name: str) -> int | None:
    m = _CHECKPOINT_NAME.match(name)
    return int(m.group(1)) if m else None


def checkpoint_digest(checkpoint: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's canonical bytes; the prune record carries it into the chain."""
    return hashlib.sha256(canonical(checkpoint)).hexdigest()
