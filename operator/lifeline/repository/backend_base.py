"""The storage backend interface: a tiny object store, implemented by :mod:`.backend_file` and the
object-store backends; :mod:`.backend` picks one for a URL.

A backend stores named objects ("data/ab/abcd...", "points/..."). Every ``put`` is
atomic: a reader sees the whole object or nothing. That property, plus writing the
point manifest last, is what makes an interrupted backup publish nothing.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass
class ObjectInfo:
    name: str
    size: int
    mtime: float | None = None


class Backend(abc.ABC):
    """Minimal object-store operations used by the repository."""

    #: URL shown to people and written into summaries (never holds credentials).
    url: str
    #: An immutable repository's backend (:mod:`.backend_s3_locked`): every name is written once, with its
    #: retention; a name's first version is the object (later versions and delete markers are ignored);
    #: ``delete`` removes every version of a name once its retention has ended (RetentionActive before).
    write_once: bool = False
    immutability = None  # its settings (:class:`.immutability.Immutability`)

    @abc.abstractmethod
    def put(self, name: str, data, *, exclusive: bool = False, durable: bool = True) -> None:
        """Store ``data`` (a buffer or a list of buffers) under ``name`` atomically.

        ``exclusive`` fails with RepositoryExists if the object exists. ``durable=False``
        (locks) lets a local backend skip fsync."""

    @abc.abstractmethod
    def get(self, name: str) -> bytes: ...

    @abc.abstractmethod
    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]: ...

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Delete ``name``; deleting a missing object is not an error."""

    @abc.abstractmethod
    def stat(self, name: str) -> ObjectInfo | None: ...

    def exists(self, name: str) -> bool:
        return self.stat(name) is not None

    def retention(self, name: str):
        """The object's retention (:class:`.immutability.Retention`), or None where storage keeps none."""
        return None

    def extend_retention(self, name: str, until: float, current=None) -> None:
        """Make the object retained until ``until`` (never shorter than it is: storage refuses that)."""
        raise NotImplementedError(f"{self.url} keeps no retention")

    def list_temporaries(self) -> list[ObjectInfo]:
        """Half-written objects left by a killed writer (backend specific)."""
        return []

    def delete_temporary(self, name: str) -> None:  # pragma: no cover - trivial
        pass

    def close(self) -> None:
        pass


@dataclass
class S3Options:
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    allow_http: bool | None = None
    extra: dict = field(default_factory=dict)
