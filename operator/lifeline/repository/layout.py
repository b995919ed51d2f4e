"""Names and constants of the on-storage format (see docs/repository-format.md)."""
from __future__ import annotations

FORMAT_NAME = "lifeline-repository"
# 2: config, catalogue head and index segments are authenticated (MACs under the data keys).
# Version 1 repositories are refused: their unauthenticated config could not be told from a forged one.
FORMAT_VERSION = 2
# 3: a version 2 repository whose cipher is not AES-256-GCM (config "encryption": "sm4-gcm"). Only the
# config says 3 (points, head, index and log segments are exactly as in version 2): a lifeline from before
# SM4 then refuses the repository ("newer than this lifeline supports") instead of reading its SM4 blobs
# as damaged AES ones, or writing an AES epoch into it.
CIPHER_FORMAT_VERSION = 3

CONFIG = "config"
HEAD = "head"  # the catalogue head: which points were published (rollback detection)
KEYS_DIR = "keys/"
DATA_DIR = "data/"
INDEX_DIR = "index/"
POINTS_DIR = "points/"
LOCKS_DIR = "locks/"
SHREDDED_DIR = "shredded/"  # tombstones of crypto-shredded epochs (who, when)

# Chunker defaults (FastCDC, "normalized chunking" level 1).
CHUNK_MIN = 256 * 1024
CHUNK_AVG = 1024 * 1024
CHUNK_MAX = 4 * 1024 * 1024

PACK_TARGET = 32 * 1024 * 1024

PACK_MAGIC = b"LLPACK01"
PACK_END_MAGIC = b"LLPEND01"
INDEX_MAGIC = b"LLIDX002"
POINT_MAGIC = b"LLPOINT1"


def pack_name(pack_id: str) -> str:
    return f"{DATA_DIR}{pack_id[:2]}/{pack_id}"


def index_name(index_id: str) -> str:
    return f"{INDEX_DIR}{index_id}"


def point_name(point_id: str) -> str:
    return f"{POINTS_DIR}{point_id}"


def key_name(epoch_id: str) -> str:
    return f"{KEYS_DIR}{epoch_id}"


def tombstone_name(epoch_id: str) -> str:
    return f"{SHREDDED_DIR}{epoch_id}"


def lock_name(lock_id: str) -> str:
    return f"{LOCKS_DIR}{lock_id}"
