"""The parent point's entries, read alongside a backup's walk: how an incremental finds what it can reuse.

An unchanged file is most of an incremental backup, so it costs no decoding: the walk renders the
beginning its entry would have (:func:`lifeline.agent.attributes.file_head`: path, mode, owner,
times, size, inode, change time), and if the parent's entry begins with exactly that, its text is
copied into the new point as it is. The change time moves with any change of a file's data, mode,
owner or extended attributes (the kernel sets it; no one can set it back), so an equal one says the
rest of the entry (attributes, chunks) still holds. The rest is checked for shape before it is copied
(:func:`reused_chunks`), so a parent cut in the wrong place, which lifeline does not write, is never
copied, only not reused.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable

_STRING = r'"(?:[ !#-\[\]-~]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'  # a JSON string, in ASCII
_BASE64 = r'"[A-Za-z0-9+/=]*"'
_CHUNK = r'"[0-9a-f]{64}"'
# What follows the head in a file's entry as lifeline writes it: its extended attributes, if any, and
# its chunk ids, the entry's last field.
_FILE_TAIL = re.compile(rf'(?:"xattrs":\{{{_STRING}:{_BASE64}(?:,{_STRING}:{_BASE64})*\}},)?'
                        rf'"chunks":\[((?:{_CHUNK}(?:,{_CHUNK})*)?)\]\}}')
_LAZY = object()  # (a key not worked out yet)


_ONE_CHUNK = len('"chunks":[""]}') + 64


def reused_chunks(text: str, head: str) -> bytes | None:
    """The chunk ids (32 bytes each, one after another) of a parent's file entry ``text`` that begins
    with ``head``, if the rest of it is in the shape lifeline writes; else None."""
    at = len(head)
    if len(text) - at == _ONE_CHUNK and text.startswith('"chunks":["', at) and text.endswith('"]}'):
        # (most files: one chunk, no extended attributes; 64 hex digits in lower case, as the
        # pattern says, checked without it: fromhex takes upper case and skips spaces)
        digits = text[at + 11:at + 75]
        try:
            ids = bytes.fromhex(digits)
        except ValueError:
            return None
        return ids if len(ids) == 32 and ids.hex() == digits else None
    m = _FILE_TAIL.fullmatch(text, at)
    if m is None:
        return None
    return bytes.fromhex(m.group(1).replace('"', "").replace(",", ""))


class ParentCursor:
    """The parent point's file entries, found by path in the order a walk meets the paths.

    A walk and a point's tree list paths in the same order (a directory, then its entries by name,
    depth first: path components compared in turn), so one pass over the parent's tree alongside
    the walk finds each file's old entry, and the parent's tree is never held whole. ``entries`` are
    (entry, its text) pairs, or a tree's entry reader, whose entries are decoded only when needed.

    A path the parent lists as a hard link to a name that is gone (the group's first name was
    deleted) gets the entry of that name if it was among the last :data:`GONE_MAX` files the cursor
    passed (matched by inode; the backup checks the rest); else the file is read again (its chunks
    are stored already: nothing new is written). A parent tree in another order only finds fewer
    entries."""

    GONE_MAX = 4096

    def __init__(self, entries: Iterable[tuple[dict, str | None]]):
        self._next_text = getattr(entries, "next_text", None)  # (only the text, decoded when needed)
        self._it = iter(entries) if self._next_text is None else None
        self._cur: dict | None = None
        self._text: str | None = None
        self._key = None
        self._gone: OrderedDict[int, dict] = OrderedDict()  # inode -> a passed file entry of the parent
        self.text: str | None = None  # the JSON text of the entry find returned last, if known
        self._next()

    def _next(self) -> None:
        if self._next_text is not None:
            text = self._next_text()
            self._cur, self._text, self._key = None, text, (None if text is None else _LAZY)
            return
        for e, text in self._it:
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                self._cur, self._key = e, e["path"].split("/")
                self._text = text if text is None or text.isascii() else None  # (copied only as ASCII)
                return
        self._cur = self._key = self._text = None

    def _current_key(self) -> list[str] | None:
        """The current entry's path, split; an entry that cannot be decoded, or has no path, is passed."""
        while self._key is _LAZY:
            try:
                e = json.loads(self._text)
            except ValueError:
                e = None
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                self._cur, self._key = e, e["path"].split("/")
                if not self._text.isascii():
                    self._text = None
            else:
                self._next()
        return self._key

    def _seek(self, key: list[str]) -> bool:
        """Pass over the entries before ``key``; True if the next one is at ``key``."""
        while (k := self._current_key()) is not None and k < key:
            e = self._cur
            if e.get("type") == "file" and type(e.get("ino")) is int:
                self._gone[e["ino"]] = e
                if len(self._gone) > self.GONE_MAX:
                    self._gone.popitem(last=False)
            self._next()
        return k is not None and k == key

    def find(self, path: str, ino) -> dict | None:
        """The parent's entry for the file at ``path`` (inode ``ino`` now), if it has one; its text is
        then :attr:`text`, where known."""
        self.text = None
        if not self._seek(path.split("/")):
            return None
        e, text = self._cur, self._text
        self._next()
        if e.get("type") == "file":
            self.text = text
            return e
        if e.get("type") == "hardlink":
            return self._gone.get(ino)
        return None

    def same_text(self, path: str, head: str) -> str | None:
        """The parent's entry for the file at ``path``, as text, passed over, if it begins with
        ``head`` (the entry's beginning as the walk sees it now: nothing there changed); else None,
        and :meth:`find` still finds it."""
        text = self._text
        if text is None or not text.startswith(head):
            if not self._seek(path.split("/")) or self._text is None or not self._text.startswith(head):
                return None
            text = self._text
        self._next()
        return text
