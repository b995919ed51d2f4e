"""The append-only audit log on a repository backend (``file:///path`` or ``s3://bucket/prefix``).

Each record is its own immutable object, ``records/<seq>.json``, created with an
exclusive put (a hard link on a filesystem, ``If-None-Match: *`` on S3). Two
writers — two operator replicas, agent Jobs, a person's CLI — that race for the
same ``seq`` cannot both win: the loser reads the winner's record, links to its
hash and takes the next number. So the chain can never fork silently, and no
writer needs a lock or a leader.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any, Iterator

from lifeline.repository.backend import Backend, S3Options, open_backend
from lifeline.repository.errors import ObjectNotFound, RepositoryExists

from . import chain

log = logging.getLogger(__name__)

MARKER = "audit.json"
_MAX_RACES = 1000  # a writer that loses this many races in a row has a bug, not bad luck


def default_writer() -> str:
    """Who appends (pod or host name and pid): shown in records to explain interleavings."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}/{os.getpid()}"


def open_store(url: str, s3: S3Options | None = None, *, create: bool = True, writer: str | None = None
               ) -> "AuditStore":
    """An audit store at ``url``, the same kind of URL a BackupPolicy destination uses."""
    return AuditStore(open_backend(url, s3 or S3Options(), create=create), writer=writer)


class AuditStore:
    """Append, read and locate the head of one hash-chained audit log."""

    def __init__(self, backend: Backend, *, writer: str | None = None):
        self.backend = backend
        self.url = backend.url
        self.writer = writer or default_writer()
        self._lock = threading.Lock()
        self._head: tuple[int, str] | None = None  # (seq, hash) of the newest record known

    # ---- writing -------------------------------------------------------------------

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Store ``entry`` as the next record of the chain and return the stored record."""
        with self._lock:
            if self._head is None:
                self._head = self.find_head()
                if self._head[0] < 0:
                    self._mark()
            for _ in range(_MAX_RACES):
                seq, prev = self._head[0] + 1, self._head[1]
                record = chain.seal(entry, seq=seq, prev=prev, writer=self.writer)
                try:
                    self.backend.put(chain.record_name(seq), chain.to_bytes(record), exclusive=True)
                except RepositoryExists:
                    # Another writer took this number first: follow its record and try the next one.
                    other = self.load(seq)
                    self._head = (seq, other.get("hash", ""))
                    continue
                self._head = (seq, record["hash"])
                self._write_head_hint(seq, record["hash"])
                return record
        raise RuntimeError(f"audit store {self.url}: lost {_MAX_RACES} races for the next record in a row")

    def _mark(self) -> None:
        try:
            self.backend.put(MARKER, chain.to_bytes({"format": chain.FORMAT, "version": chain.VERSION}),
                             exclusive=True)
        except RepositoryExists:
            pass

    def _write_head_hint(self, seq: int, digest: str) -> None:
        try:
            self.backend.put(chain.HEAD, chain.to_bytes({"seq": seq, "hash": digest}))
        except Exception as exc:  # a hint; the records are what count
            log.warning("audit store %s: could not update %s: %s", self.url, chain.HEAD, exc)

    # ---- reading -------------------------------------------------------------------

    def load(self, seq: int) -> dict[str, Any]:
        return json.loads(self.backend.get(chain.record_name(seq)))

    def find_head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record; (-1, GENESIS) for an empty log.

        Starts from the head hint when it checks out (no listing of years of records),
        then follows any records written after it.
        """
        head = self._from_hint()
        if head is None:
            seqs = self.record_seqs()
            head = (seqs[-1], self.load(seqs[-1]).get("hash", "")) if seqs else (-1, chain.GENESIS)
        seq, digest = head
        while self.backend.exists(chain.record_name(seq + 1)):
            seq += 1
            digest = self.load(seq).get("hash", "")
        return seq, digest

    def _from_hint(self) -> tuple[int, str] | None:
        try:
            hint = json.loads(self.backend.get(chain.HEAD))
            seq, digest = int(hint["seq"]), str(hint["hash"])
            if self.load(seq).get("hash") == digest:
                return seq, digest
        except (ObjectNotFound, ValueError, KeyError, TypeError):
            pass
        return None

    def head_hint(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.backend.get(chain.HEAD))
        except (ObjectNotFound, ValueError):
            return None

    def record_seqs(self) -> list[int]:
        seqs = (chain.seq_of_record_name(o.name) for o in self.backend.list(chain.RECORDS_DIR))
        return sorted(s for s in seqs if s is not None)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored record, oldest first (unchecked: run :func:`lifeline.audit.verify` for that)."""
        for seq in self.record_seqs():
            try:
                yield self.load(seq)
            except (ObjectNotFound, ValueError):
                continue

    def close(self) -> None:
        self.backend.close()
