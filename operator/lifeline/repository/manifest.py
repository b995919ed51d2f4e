"""Recovery point objects (``points/<id>``): a clear header and a sealed file tree.

Layout::

    "LLPOINT1" | header length (u32 LE) | header (UTF-8 JSON) | sealed tree

The header holds what the catalogue needs without the key (id, type, parent, epoch,
times, sizes, tags, source, cipher). The tree is zstd-compressed JSON sealed with the
epoch's key in the repository's cipher; the AAD is everything before it, so the header is
authenticated too and cannot be edited without detection on restore/verify.

Tree entries (one per path, parents before children; ``""`` is the root)::

    {"path": "a/b.txt", "type": "file", "mode": 0o644, "uid": 0, "gid": 0,
     "mtime_ns": ..., "size": 123, "chunks": ["<64 hex>", ...]}

Types: ``file``, ``dir``, ``symlink`` (``target``), ``fifo``, ``chardev``/``blockdev``
(``rdev``), ``socket``. Files may also carry ``ino``/``ctime_ns`` (used only to skip
unchanged files on the next backup).

Point (tree) format versions, the header's ``version``:

* 2: the entries above;
* 4 (:data:`POINT_VERSION`, written since): every entry may also carry ``atime_ns``, ``user`` and
  ``group`` (owner names, next to the ids), ``xattrs`` (``{name: base64 value}``, POSIX ACLs included
  as their ``system.posix_acl_access`` / ``system.posix_acl_default`` attributes); and a second or
  later name of a hard-linked file is an entry ``{"path": ..., "type": "hardlink", "target": <path of
  the group's first file entry>}`` with no data of its own (the inode's attributes are the target's).

Version 3 is only ever a config's (an SM4 repository): no point says 3. A reader of version 4 reads
version 2 points as they are: without the new fields a restore sets the atime to the mtime, owners
by id, no extended attributes, and every name of a hard-linked file as a file of its own (version 2
recorded them so). A reader of version 2 refuses a version 4 point ("upgrade lifeline") rather than
restore it without its hard links.
"""
from __future__ import annotations

import json
import struct

import zstandard

from .crypto import DEFAULT_CIPHER, EpochKeys
from .errors import DamagedData, FormatError
from .layout import POINT_MAGIC

POINT_VERSION = 4  # the tree format points are written in (above)
_V4_FIELDS = ("atime_ns", "user", "group", "xattrs")


def encode_point(keys: EpochKeys, header: dict, entries: list[dict]) -> bytes:
    hdr = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    prefix = POINT_MAGIC + struct.pack("<I", len(hdr)) + hdr
    tree = json.dumps({"entries": entries}, separators=(",", ":"), ensure_ascii=True).encode()
    sealed = keys.seal_object(zstandard.ZstdCompressor(level=3).compress(tree), prefix)
    return prefix + sealed


def _split(name: str, data: bytes) -> tuple[bytes, dict, bytes]:
    end = header_end(data)
    if end is None:
        raise DamagedData(f"point {name}: bad header magic", obj=name)
    if end > len(data):
        raise DamagedData(f"point {name}: truncated header", obj=name)
    try:
        header = json.loads(data[len(POINT_MAGIC) + 4:end])
    except ValueError:
        raise DamagedData(f"point {name}: header is not valid JSON", obj=name) from None
    if not isinstance(header, dict):
        raise DamagedData(f"point {name}: header is not an object", obj=name)
    version = header.get("version", 0)
    if type(version) is not int or version > POINT_VERSION:
        raise FormatError(f"point {name} uses format version {version!r}; this "
                          f"lifeline reads up to {POINT_VERSION}: upgrade lifeline")
    return data[:end], header, data[end:]


def decode_header(name: str, data: bytes) -> dict:
    return _split(name, data)[1]


def header_end(data: bytes) -> int | None:
    """How many bytes from its start a point needs to hold its whole header, going by its first
    bytes (``data``); None if they are too few to say, or not a point's (decode_header says why)."""
    start = len(POINT_MAGIC) + 4
    if len(data) < start or data[:len(POINT_MAGIC)] != POINT_MAGIC:
        return None
    return start + struct.unpack_from("<I", data, len(POINT_MAGIC))[0]


def check_cipher(keys: EpochKeys, name: str, header: dict) -> None:
    """Refuse a point whose header names another cipher than the repository's (it never mixes them)."""
    claimed = header.get("cipher", DEFAULT_CIPHER)  # points written before SM4: AES
    if claimed != keys.cipher:
        raise DamagedData(f"point {name} says it is encrypted with {claimed!r}, but this repository encrypts "
                          f"with {keys.cipher} (a repository never mixes ciphers): it was changed or put here "
                          "from another repository", obj=name)


def decode_tree(keys: EpochKeys, name: str, data: bytes) -> tuple[dict, list[dict]]:
    prefix, header, sealed = _split(name, data)
    check_cipher(keys, name, header)
    plain = keys.open_object(sealed, prefix, f"point {name}")
    try:
        tree = json.loads(zstandard.ZstdDecompressor().decompress(plain))
    except (ValueError, zstandard.ZstdError) as exc:
        raise DamagedData(f"point {name}: tree cannot be decoded: {exc}", obj=name) from None
    entries = tree["entries"]
    if header.get("version", 0) < POINT_VERSION and isinstance(entries, list):
        _read_v2(name, header.get("version", 0), entries)
    return header, entries


def _read_v2(name: str, version, entries: list) -> None:
    """A version 2 tree is read as version 2 wrote it: one that holds what only version 4 writes
    (a hard link entry, attributes) was not made by a version 2 writer, whatever its header says."""
    for e in entries:
        if isinstance(e, dict) and (e.get("type") == "hardlink" or any(k in e for k in _V4_FIELDS)):
            raise DamagedData(f"point {name}: its header says format version {version!r}, but its tree holds "
                              f"what only version {POINT_VERSION} writes ({e.get('path')!r}): it was forged or "
                              "damaged", obj=name)
