"""Names and constants of the on-storage format (see docs/repository-format.md)."""
from __future__ import annotations

import datetime as dt
import time
from typing import Callable

FORMAT_NAME = "lifeline-repository"
# 2: config, catalogue head and index segments are authenticated (MACs under the data keys).
# Version 1 repositories are refused: their unauthenticated config could not be told from a forged one.
FORMAT_VERSION = 2
# 3: a version 2 repository whose cipher is not AES-256-GCM (config "encryption": "sm4-gcm"). Only the
# config says 3 (points, head, index and log segments are exactly as in version 2): a lifeline from before
# SM4 then refuses the repository ("newer than this lifeline supports") instead of reading its SM4 blobs
# as damaged AES ones, or writing an AES epoch into it.
CIPHER_FORMAT_VERSION = 3
# 5: an immutable repository (config "immutable": {"mode", "days"}; docs/immutability.md), of either cipher.
# Every object is written once, with its retention: the catalogue head is a new object at every write
# (heads/), locks are records that expire, a rewrapped epoch key is a new object beside the old. A lifeline
# from before refuses it ("newer than this lifeline supports") instead of overwriting or deleting in it.
# (4 is a point's version, never a config's.)
IMMUTABLE_FORMAT_VERSION = 5

CONFIG = "config"
HEAD = "head"  # the catalogue head: which points were published (rollback detection)
KEYS_DIR = "keys/"
DATA_DIR = "data/"
INDEX_DIR = "index/"
POINTS_DIR = "points/"
LOCKS_DIR = "locks/"
SHREDDED_DIR = "shredded/"  # tombstones of crypto-shredded epochs (who, when)
HEADS_DIR = "heads/"  # immutable repositories: one catalogue head object per write (instead of HEAD)

# Chunker defaults (FastCDC, "normalized chunking" level 1).
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 1024 * 1024
CHUNK_MAX = 4 * 1024 * 1024

PACK_TARGET = 16 * 1024 * 1024  # as restic's default; one filling and one uploading bound a backup's memory

PACK_MAGIC = b"LLPACK01"
PACK_END_MAGIC = b"LLPEND01"
INDEX_MAGIC = b"LLIDX002"
POINT_MAGIC = b"LLPOINT1"


def pack_name(pack_id: str) -> str:
    return f"{DATA_DIR}{pack_id[:2]}/{pack_id}"


def _in(directory: str) -> Callable[[str], str]:
    """The naming of the objects of one directory: an object's id -> its name."""
    def name(object_id: str) -> str:
        return f"{directory}{object_id}"

    return name


index_name = _in(INDEX_DIR)
point_name = _in(POINTS_DIR)
key_name = _in(KEYS_DIR)  # by epoch id
tombstone_name = _in(SHREDDED_DIR)  # by epoch id
lock_name = _in(LOCKS_DIR)


def head_name(seq: int, suffix: str) -> str:
    """An immutable repository's catalogue head of ``seq`` (16 hex digits sort by seq; a random suffix,
    so nobody can take the name of the next head before it is written)."""
    return f"{HEADS_DIR}{seq:016x}.{suffix}"


def head_seq(name: str) -> int | None:
    """The seq a ``heads/`` object's name says, or None for a name lifeline does not write."""
    stem = name[len(HEADS_DIR):].split(".", 1)[0]
    if len(stem) != 16:
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


def rewrapped_key_name(epoch: str, suffix: str) -> str:
    """An immutable repository's rewrapped form of an epoch's key, beside ``keys/<epoch>`` (never over it)."""
    return f"{KEYS_DIR}{epoch}.{suffix}"


def key_epoch(name: str) -> str:
    """The epoch of a ``keys/`` object: ``keys/<epoch>`` or a rewrapped form ``keys/<epoch>.<suffix>``."""
    return name[len(KEYS_DIR):].split(".", 1)[0]


def rfc3339(ts: float) -> str:
    """The format's timestamps (creation, tombstones, the catalogue head): UTC, microseconds, trailing Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def parse_rfc3339(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
