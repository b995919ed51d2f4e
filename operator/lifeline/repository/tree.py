"""A recovery point's tree, written and read entry by entry (the format is :mod:`.manifest`'s, unchanged).

A point's tree is ``zstd(JSON {"entries": [...]})`` sealed under the epoch's key. Held whole, as a
list of dicts, it costs ~1 KiB a file (a million files: a gigabyte); compressed it is ~60 bytes a
file. So a backup encodes each entry as it is done into a streaming zstd frame (:class:`TreeWriter`),
and restore and the next backup's change detection read entries one at a time from the compressed
tree (:class:`Tree`, which may be iterated again: a restore checks the whole tree before it writes).

The bytes are those :func:`.manifest.encode_point` writes: the same compact JSON, one zstd frame with
its content size in the header (readers that decompress in one call need it; a streaming compressor
does not know it in advance, so :func:`_with_content_size` puts it into the frame header at the
end, as RFC 8878 defines the field). A tree that is not in that compact shape (none that lifeline
writes) is parsed whole, as before.
"""
from __future__ import annotations

import codecs
import json
import os
import struct

import blake3
import zstandard

from .crypto import NONCE, TAG, EpochKeys
from .errors import DamagedData
from .layout import POINT_MAGIC
from .manifest import POINT_VERSION, _read_v2, _split, check_cipher
from .tree_text import entry_text

_OPEN = '{"entries":['
_FLUSH = 1 << 20  # JSON bytes gathered before they go to the compressor
_READ = 1 << 20  # decompressed bytes read at a time


class TreeWriter:
    """Entries in, one compressed tree out; holds the compressed bytes and ~1 MiB of JSON."""

    def __init__(self, level: int = 3):
        # (one libzstd thread compresses, without the GIL, while the backup walks on; in 1 MiB jobs,
        # as the default 8 MiB jobs cost ~30 MiB of peak memory)
        try:
            self._z = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
                level, threads=1, job_size=1 << 20)).compressobj()
        except (zstandard.ZstdError, ValueError):  # (a libzstd built without threads)
            self._z = zstandard.ZstdCompressor(level=level).compressobj()
        self._out: list[bytes] = []
        self._pending: list[str] = [_OPEN]
        self._pending_len = len(_OPEN)
        self.count = 0
        self.json_bytes = 0
        self._done: bytearray | None = None

    def add(self, entry: dict) -> None:
        self.add_text(entry_text(entry))

    def add_text(self, s: str) -> None:
        """Add an entry already encoded (compact ASCII JSON, as :meth:`add` writes it)."""
        self._append(s, 1)

    def add_texts(self, texts: list[str]) -> None:
        """Add entries already encoded, in their order: :meth:`add_text` for a run at once."""
        if texts:
            self._append(",".join(texts), len(texts))

    def _append(self, s: str, entries: int) -> None:
        """``entries`` entries' text, joined by commas (one is added before them unless they are first)."""
        if self.count:
            s = "," + s
        self.count += entries
        self._pending.append(s)
        self._pending_len += len(s)
        if self._pending_len >= _FLUSH:
            self._compress()

    def _compress(self) -> None:
        data = "".join(self._pending).encode("ascii")
        self._pending, self._pending_len = [], 0
        self.json_bytes += len(data)
        out = self._z.compress(data)
        if out:
            self._out.append(out)

    def finish(self) -> bytearray:
        """The compressed tree (one zstd frame, content size in its header); the writer is spent."""
        if self._done is None:
            self._pending.append("]}")
            self._compress()
            self._out.append(self._z.flush())
            self._z = None  # (its thread and buffers)
            self._done = _with_content_size(self._out, self.json_bytes)
        return self._done


def _with_content_size(parts: list, size: int) -> bytearray:
    """One zstd frame from a streaming compressor's output, with ``size`` as its Frame_Content_Size.
    ``parts`` is emptied as it is copied (the frame is never held twice).

    The header is magic (4) | descriptor (1) | window descriptor (1, absent in single-segment
    frames) | dictionary id (0-4) | content size (0-8). A streaming frame has no content size field;
    this sets the descriptor's size flag to 3 (8 bytes) and inserts the field. Decoders check the
    decoded size against it."""
    head = parts[0]
    desc = head[4]
    fcs_flag, single, dict_flag = desc >> 6, (desc >> 5) & 1, desc & 3
    if fcs_flag or single:  # (the size is there already)
        at, extra = 0, b""
    else:
        at = 4 + 1 + 1 + (0, 1, 2, 4)[dict_flag]
        extra = struct.pack("<Q", size)
    out = bytearray(sum(len(p) for p in parts) + len(extra))
    out[:at] = head[:at]
    if extra:
        out[4] = desc | 0xC0
    out[at:at + len(extra)] = extra
    pos = at + len(extra)
    for i, p in enumerate(parts):
        p = memoryview(p)[at:] if i == 0 else p
        out[pos:pos + len(p)] = p
        pos += len(p)
        parts[i] = None
    parts.clear()
    return out


def seal_tree(keys: EpochKeys, header: dict, tree) -> tuple[list, str]:
    """The point object (as a list of buffers: prefix, sealed tree) and its checksum, as
    :func:`.manifest.encode_point` would make it from the entries ``tree`` compresses; the sealed
    tree is written into one buffer, with no copy of the tree beside it."""
    hdr = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    prefix = POINT_MAGIC + struct.pack("<I", len(hdr)) + hdr
    nonce = os.urandom(NONCE)
    sealed = bytearray(NONCE + len(tree) + TAG)
    sealed[:NONCE] = nonce
    keys.aead.encrypt_into(nonce, tree, keys._label + prefix, memoryview(sealed)[NONCE:])
    h = blake3.blake3(prefix)
    h.update(sealed)
    return [prefix, sealed], "blake3:" + h.hexdigest()


def open_tree(keys: EpochKeys, name: str, data, *, pieces: bool = False) -> tuple[dict, Tree]:
    """Authenticate a point object and return its header and tree (not yet decoded): as
    :func:`.manifest.decode_tree`, without a copy of the object or the whole tree decoded; with
    ``pieces``, the tree in pieces (see :class:`Tree`)."""
    n = len(POINT_MAGIC)
    if len(data) < n + 4 or data[:n] != POINT_MAGIC:
        raise DamagedData(f"point {name}: bad header magic", obj=name)
    (hlen,) = struct.unpack_from("<I", data, n)
    end = n + 4 + hlen
    if end > len(data):
        raise DamagedData(f"point {name}: truncated header", obj=name)
    prefix, header, _rest = _split(name, bytes(data[:end]))
    check_cipher(keys, name, header)
    opened = keys.open_object_pieces if pieces else keys.open_object
    plain = opened(memoryview(data)[end:], prefix, f"point {name}")
    return header, Tree(name, plain, header.get("version", 0))


class _Pieces:
    """A reader (``read``) of bytes held in pieces; with ``consume``, each piece is let go (its slot
    in the list set to None) once read past: one pass that holds less and less."""

    def __init__(self, pieces: list, consume: bool):
        self._pieces, self._consume, self._i, self._at = pieces, consume, 0, 0

    def read(self, n: int = -1) -> bytes:
        out, pieces = [], self._pieces
        while n != 0 and self._i < len(pieces):
            p = pieces[self._i]
            take = len(p) - self._at if n < 0 else min(n, len(p) - self._at)
            out.append(p[self._at:self._at + take])
            self._at += take
            n -= take if n > 0 else 0
            if self._at == len(p):
                if self._consume:
                    pieces[self._i] = None
                self._i, self._at = self._i + 1, 0
        return b"".join(out)


class Tree:
    """A point's entries (dicts, in the order stored), decoded while iterated; iterable again.
    :meth:`with_text` also gives each entry's JSON text, which a backup copies for an unchanged file.

    ``compressed`` is the compressed tree, or a list of its pieces (:func:`open_tree` with
    ``pieces``): then a reader of :meth:`entry_reader` with ``consume`` lets each piece go as it
    passes it, and the tree is read no more."""

    def __init__(self, name: str, compressed: bytes | list[bytes], version=POINT_VERSION):
        self.name = name
        self.compressed = compressed
        self.version = version
        self._spent = False

    def _source(self, consume: bool = False):
        """What a decompressor reads: the bytes, or a reader of the pieces."""
        if self._spent:
            raise RuntimeError(f"point {self.name}: its tree was read once, as it was opened to be")
        if isinstance(self.compressed, list):
            self._spent = consume
            return _Pieces(self.compressed, consume)
        return self.compressed

    @property
    def _older(self) -> bool:
        """A point written by an older version (its entries are read by that version's rules)."""
        return isinstance(self.version, int) and self.version < POINT_VERSION

    def __iter__(self):
        v2 = self._older
        for e, _text in self._entries(with_text=False):
            if v2:
                _read_v2(self.name, self.version, [e])
            yield e

    def with_text(self):
        """(entry, its JSON text) for each entry; the text is None where it is not in this version's
        compact ASCII form (an older point's entries are checked by the older version's rules, so
        their text is not copied into a point of this version)."""
        if self._older:
            for e in self:
                yield e, None
            return
        for e, text in self._entries(with_text=True):
            yield e, text if text is not None and text.isascii() else None

    def _damaged(self, why) -> DamagedData:
        return DamagedData(f"point {self.name}: tree cannot be decoded: {why}", obj=self.name)

    @property
    def _first_piece(self) -> bytes:
        """The compressed tree, or its first piece (where the frame's header is)."""
        return self.compressed[0] if isinstance(self.compressed, list) else self.compressed

    def _whole(self) -> list:
        source = self._source()
        try:
            compressed = source.read() if isinstance(source, _Pieces) else source
            entries = json.loads(zstandard.ZstdDecompressor().decompress(compressed))["entries"]
        except (ValueError, zstandard.ZstdError, TypeError, KeyError) as exc:
            raise self._damaged(exc) from None
        if not isinstance(entries, list):
            raise self._damaged("its entries are not a list")
        return entries

    def _entries(self, with_text: bool):
        reader = _EntryReader(self, with_text)
        if not reader.compact:  # not lifeline's compact shape: parse it whole, as before
            for e in self._whole():
                yield e, None
            return
        yield from reader

    def halfway(self) -> int | None:
        """The byte offset of an entry's start near the middle of this version's compact tree (the
        ``,`` before it), to check the two halves apart; None for an older point, a tree in another
        shape or without its size in the frame header, or text before it that is not ASCII."""
        try:
            size = zstandard.frame_content_size(self._first_piece)
        except zstandard.ZstdError:  # (not a frame: reading it whole says so, as DamagedData)
            return None
        reader = self.entry_reader(with_text=False) if size > 0 else None
        return reader._seek(size // 2, exact=False) if reader is not None else None

    def entries_from(self, at: int):
        """The entries from byte offset ``at`` on (a :meth:`halfway` offset), decoded; None when no
        entry begins there."""
        reader = self.entry_reader(with_text=False) if at > len(_OPEN) else None
        if reader is None or reader._seek(at, exact=True) is None:
            return None
        return (e for e, _text in reader)

    def entry_reader(self, *, with_text: bool = True, consume: bool = False) -> _EntryReader | None:
        """This version's compact tree as an :class:`_EntryReader` (entries decoded, with their text
        or not, or only their text); None for an older point or a tree in another shape. With
        ``consume``, a tree in pieces lets each go as the reader passes it (see the class's doc)."""
        if self._older:
            return None
        if consume and isinstance(self.compressed, list):  # (in the shape read in one pass? Looked at first)
            head = zstandard.ZstdDecompressor().stream_reader(self._source()).read(len(_OPEN))
            if head != _OPEN.encode():
                return None
        reader = _EntryReader(self, with_text, consume)
        return reader if reader.compact else None


_NEXT = ',{"path":"'  # what begins every entry but the first (a quote in a string is escaped: only here)


class _EntryReader:
    """(entry, its text) for each entry of a compact tree, decoded from ~1 MiB of text at a time; or,
    with :meth:`next_text`, only each entry's text: a backup decodes the parent's entries it needs."""

    def __init__(self, tree: Tree, with_text: bool, consume: bool = False):
        self._tree = tree
        self._with_text = with_text
        self._reader = zstandard.ZstdDecompressor().stream_reader(tree._source(consume))
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._scan = json.decoder.JSONDecoder().scan_once
        self._eof = False
        self._base = 0  # characters read before the buffer
        self._ascii = True  # so far: then a character's offset is its byte's
        self._buf = self._more()
        while not self._eof and len(self._buf) < len(_OPEN):
            self._buf += self._more()
        self.compact = self._buf.startswith(_OPEN)
        self._pos = len(_OPEN)
        self._first = True
        self._done = False
        self._ready: list[str] = []  # (whole entries' texts cut by next_text, last first)

    def _more(self) -> str:
        try:
            raw = self._reader.read(_READ)
            self._eof = not raw
            self._ascii = self._ascii and raw.isascii()
            return self._text.decode(raw, final=self._eof)
        except (zstandard.ZstdError, UnicodeDecodeError) as exc:
            raise self._tree._damaged(exc) from None

    def _extend(self) -> None:
        """More text after what is left from the position on."""
        self._base += self._pos
        self._buf = self._buf[self._pos:] + self._more()
        self._pos = 0

    @property
    def offset(self) -> int | None:
        """The byte offset in the tree's JSON where the next entry (or the list's end) begins: its
        ``,`` after the first; None once a byte that is not ASCII was read (bytes and characters
        part)."""
        return self._base + self._pos if self._ascii else None

    def _seek(self, at: int, *, exact: bool) -> int | None:
        """Move to the first ``,{"path":"`` at byte ``at`` or after (``exact``: at ``at`` itself),
        dropping what is before; its offset, or None where there is none (or a byte before it is not
        ASCII). A reader moved there reads the entries from there on."""
        while True:
            found = self._buf.find(_NEXT, max(self._pos, at - self._base))
            if found >= 0 and (not exact or found == at - self._base):
                break
            if self._eof or (exact and at - self._base + len(_NEXT) <= len(self._buf)):
                return None
            self._pos = max(self._pos, min(at - self._base, len(self._buf) - len(_NEXT) + 1))
            self._extend()
        self._pos, self._first = found, False
        return self.offset

    def __iter__(self):
        return self

    def _to_entry(self) -> bool:
        """Move to where the next entry begins; False after the last (the rest of the tree checked)."""
        if self._done:
            return False
        # at pos: (a first entry or "]") or ("," and an entry, or "]")
        while len(self._buf) - self._pos < 2 and not self._eof:
            self._extend()
        if self._buf.startswith("]", self._pos):
            self._finish()
            return False
        if not self._first:
            if not self._buf.startswith(",", self._pos):
                raise self._tree._damaged("expected ',' or ']' after an entry")
            self._pos += 1
        self._first = False
        return True

    def __next__(self) -> tuple:
        if self._ready:  # (cut by next_text already)
            text = self._ready.pop()
            try:
                e, end = self._scan(text, 0)
            except (StopIteration, json.JSONDecodeError) as exc:
                raise self._tree._damaged(f"an entry that is no JSON value: {exc}") from None
            if end != len(text):
                raise self._tree._damaged("an entry with more after its JSON value")
            return e, (text if self._with_text else None)
        if not self._to_entry():
            raise StopIteration
        while True:
            try:
                e, end = self._scan(self._buf, self._pos)
            except (StopIteration, json.JSONDecodeError) as exc:
                if self._eof:
                    raise self._tree._damaged(exc if isinstance(exc, json.JSONDecodeError)
                                              else "it ends, or holds no JSON value, where an entry should be") from None
                self._extend()
                continue
            if end == len(self._buf) and not self._eof and not isinstance(e, (dict, list, str)):
                self._extend()  # a number or literal may go on in the next piece
                continue
            break
        text = self._buf[self._pos:end] if self._with_text else None
        self._pos = end
        return e, text

    def _finish(self) -> None:
        self._done = True
        rest = self._buf[self._pos + 1:]
        while not self._eof:
            rest += self._more()
        if rest.strip() != "}":
            raise self._tree._damaged("unexpected bytes after the entries")

    def next_text(self) -> str | None:
        """The next entry's text, not decoded; None after the last. Entries are told apart by how the
        next one begins (``,{"path":"``: a string cannot hold that, its quotes are escaped), so a tree
        not written by lifeline may be cut elsewhere: a reader checks what it uses. The entries
        complete in the text read so far are cut apart at once (one split, not a search each);
        ``__next__`` takes those first, but :attr:`offset` and :meth:`_seek` do not count them (a
        reader that seeks is not read by this)."""
        if self._ready:
            return self._ready.pop()
        if not self._to_entry():
            return None
        last = self._buf.rfind(_NEXT)  # (every entry before the last one begun here is whole)
        if last > self._pos:
            first, *rest = self._buf[self._pos:last].split(_NEXT)
            self._pos = last
            self._ready = [_NEXT[1:] + t for t in reversed(rest)]
            return first
        search = self._pos + 1
        while (end := self._buf.find(_NEXT, search)) < 0 and not self._eof:
            search = max(len(self._buf) - len(_NEXT) + 1, self._pos + 1) - self._pos  # (where _extend puts it)
            self._extend()
        if end < 0:  # the last entry: it ends where the list does
            end = self._buf.rfind("]")
            if end <= self._pos:
                raise self._tree._damaged("it ends where an entry should be")
        text, self._pos = self._buf[self._pos:end], end
        return text
