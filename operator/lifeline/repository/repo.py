"""The repository: config, epochs (keys), index, packs and points on a backend.

Storage is not trusted: with a key at hand, nothing is used before it is authenticated. The config
is proved whenever an epoch key is opened (:mod:`.config`), index segments by their MAC, the list of
published points by the catalogue head (:mod:`.catalogue`)."""
from __future__ import annotations

import base64
import json
import secrets
import time
from collections import deque
from collections.abc import Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from lifeline.errors import LifelineError, UsageError

from . import catalogue
from . import config as config_auth
from . import immutability
from .backend import Backend
from .blob_saver import BlobSaver
from .crypto import CIPHERS, DEFAULT_CIPHER, EpochKeys, MacKeys, cipher_problem
from .errors import (BackendError, CipherUnavailable, DamagedData, FormatError, ObjectNotFound, PointNotFound,
                     RepositoryExists, RepositoryNotFound, RetentionActive, ShreddedEpoch)
from .index import Index, PackInfo, encode_segment, segment_epoch, segment_packs
from .layout import (CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CONFIG, DATA_DIR, INDEX_DIR, KEYS_DIR, PACK_TARGET,
                     POINTS_DIR, SHREDDED_DIR, index_name, key_epoch, key_name, pack_name, parse_rfc3339, point_name,
                     rewrapped_key_name, rfc3339, tombstone_name)
from .locks import REPOSITORY, Lock
from .manifest import decode_header, encode_point, header_end
from .pack import PackBuilder
from .tree import Tree, TreeWriter, open_tree, seal_tree

POINT_HEAD_READ = 16 << 10  # bytes of a point read to list it: its header (~1 KiB), little of its tree


@dataclass
class PointRef:
    name: str
    header: dict

    @property
    def id(self) -> str:
        return self.header["id"]


class Repository:
    def __init__(self, backend: Backend, config: dict):
        self.backend = backend
        self.config = config
        self._epochs: dict[str, EpochKeys] = {}
        self._anchor: MacKeys | None = None
        self.config_proved = False  # by a key: the anchor or an epoch's config_mac
        self.zstd_level = int(config.get("compression_level", 1))
        # immutable (docs/immutability.md): the backend writes every name once, with its retention
        self.immutability = immutability.from_config(backend.url, config)
        if self.immutability is not None and not backend.write_once:
            raise FormatError(f"the repository at {backend.url} is immutable ({self.immutability.describe()}), "
                              "which this lifeline keeps on s3:// (Object Lock) only")

    @property
    def url(self) -> str:
        return self.backend.url

    # --- lifecycle ----------------------------------------------------------------
    @classmethod
    def init(cls, backend: Backend, provider, *, compression_level: int = 1,
             cipher: str = DEFAULT_CIPHER, immutable: immutability.Immutability | None = None) -> "Repository":
        """Create the config (authenticated under a new anchor key) and the empty catalogue head.

        ``cipher`` (``aes-256-gcm`` or ``sm4-gcm``) is the repository's for good; so is ``immutable``
        (every object then written once, with that retention: an s3:// bucket with Object Lock)."""
        config_auth.check_cipher_name(cipher)
        if (problem := cipher_problem(cipher)) is not None:
            raise CipherUnavailable(f"cannot create a {cipher} repository at {backend.url}: {problem}")
        if immutable is not None:
            if not hasattr(backend, "write_once_view"):
                raise UsageError(f"cannot make {backend.url} immutable: lifeline sets and extends retention on "
                                 "s3:// repositories (S3 Object Lock) only so far; docs/immutability.md says how to "
                                 "set up Azure and Google Cloud Storage, and what is missing")
            backend = backend.write_once_view(immutable)
            backend.check_bucket()
        if backend.exists(CONFIG):
            raise RepositoryExists(f"a repository already exists at {backend.url}")
        config, anchor = config_auth.new(provider, compression_level=compression_level,
                                         created_at=rfc3339(time.time()), cipher=cipher,
                                         immutable=immutable.as_config() if immutable is not None else None)
        try:
            backend.put(CONFIG, json.dumps(config, indent=1, sort_keys=True).encode(), exclusive=True)
        except RepositoryExists:
            raise RepositoryExists(f"a repository already exists at {backend.url}") from None
        repo = cls(backend, config)
        repo._anchor, repo.config_proved = anchor, True
        catalogue.write(repo, seq=0, points={}, sources={catalogue.ANCHOR: anchor}, by="init")
        return repo

    @classmethod
    def open(cls, backend: Backend) -> "Repository":
        """The repository, its config read but not yet proved: that needs a key (:meth:`authenticate`).

        An immutable repository is read through its backend's write-once view (the first version of
        every name): when the config says so, and when it is missing or unreadable where such a view
        exists (an attacker may have deleted or overwritten it: its first version is still there)."""
        try:
            raw = backend.get(CONFIG)
        except ObjectNotFound:
            raw = None
        config = _parse_config(raw)
        if hasattr(backend, "write_once_view") and not backend.write_once and (
                not isinstance(config, dict) or "immutable" in config):
            view, first = _first_config(backend)
            if isinstance(first, dict) and "immutable" in first:
                config_auth.check_format(backend.url, first)
                view.immutability = immutability.from_config(backend.url, first)
                backend, raw, config = view, b"", first
        if raw is None:
            raise RepositoryNotFound(f"no lifeline repository at {backend.url}: check --repo, or create "
                                     f"one with `lifeline agent init --repo {backend.url} --key ...`")
        if config is None:
            raise DamagedData(f"repository config at {backend.url} is not valid JSON", obj=CONFIG)
        config_auth.check_format(backend.url, config)
        return cls(backend, config)

    # --- proving the config ---------------------------------------------------------
    def authenticate(self, provider) -> None:
        """Prove the config with the key: through the first epoch key that opens, else the anchor."""
        if self.config_proved:
            return
        for epoch in self.list_epochs():
            try:
                self.epoch_keys(epoch, provider)  # checks the epoch's config_mac
                return
            except ShreddedEpoch:
                continue  # deleted since the listing
        self.anchor_keys(provider)

    def anchor_keys(self, provider) -> MacKeys:
        """The MAC keys of the config's anchor (unwrapped once); proves the config on the way."""
        if self._anchor is None:
            macs = MacKeys(provider.unwrap(config_auth.wrapped_anchor(self.config)))
            config_auth.check(self.url, self.config, macs, self.config.get("mac"), "the config's anchor")
            self._anchor, self.config_proved = macs, True
        return self._anchor

    def has_keys(self, source: str) -> bool:
        """Whether the keys of an epoch (or "anchor") are open already."""
        return source in self._epochs or (source == catalogue.ANCHOR and self._anchor is not None)

    def lock(self, *, exclusive: bool, command: str, wait: float = 0.0, scope: str = REPOSITORY) -> Lock:
        return Lock(self.backend, exclusive=exclusive, command=command, scope=scope).acquire(wait)

    # --- chunker parameters ------------------------------------------------------
    @property
    def chunk_params(self) -> dict:
        c = self.config.get("chunker", {})
        return {"min_size": c.get("min", CHUNK_MIN), "avg_size": c.get("avg", CHUNK_AVG),
                "max_size": c.get("max", CHUNK_MAX)}

    @property
    def pack_target(self) -> int:
        return int(self.config.get("pack_target", PACK_TARGET))

    # --- the cipher (chosen at init; the config MAC covers it) ----------------------
    @property
    def cipher(self) -> str:
        """The repository's cipher, once this lifeline is known to run it (CipherUnavailable if not).

        Read from the config: use it only after the config was proved (epoch_keys checks first)."""
        name = self.config.get("encryption", DEFAULT_CIPHER)
        if name not in CIPHERS:
            raise FormatError(f"the repository at {self.url} encrypts with {name!r}, a cipher this lifeline does "
                              f"not know (it knows {', '.join(CIPHERS)}): upgrade lifeline")
        if (problem := cipher_problem(name)) is not None:
            raise CipherUnavailable(f"the repository at {self.url} encrypts with {name} "
                                    f"({CIPHERS[name].what}), which this lifeline cannot do: {problem}")
        return name

    # --- epochs -----------------------------------------------------------------------
    def new_epoch(self, provider) -> EpochKeys:
        """A new key epoch; its key object carries the MAC of the (proved) config under its key."""
        self.authenticate(provider)
        cipher = self.cipher
        epoch = secrets.token_hex(16)
        dek, wrapped = provider.new_data_key()
        keys = EpochKeys(epoch, dek, zstd_level=self.zstd_level, cipher=cipher)
        obj = {"version": 1, "epoch": epoch, "key_ref": provider.ref, "cipher": cipher,
               "wrapped": base64.b64encode(wrapped).decode(), "created_at": rfc3339(time.time()),
               "config_mac": keys.macs.mac("config", config_auth.canonical(self.config)).hex()}
        self.backend.put(key_name(epoch), json.dumps(obj, indent=1).encode())
        self._epochs[epoch] = keys
        return keys

    def epoch_key_objects(self, epoch: str) -> list[str]:
        """The objects holding the epoch's wrapped key, newest form first: ``keys/<epoch>`` and, in an
        immutable repository, the rewrapped forms written beside it (``keys/<epoch>.<time>-<random>``)."""
        if not self.backend.write_once:
            return [key_name(epoch)]
        forms = [o.name for o in self.backend.list(key_name(epoch)) if key_epoch(o.name) == epoch]
        rewrapped = sorted((n for n in forms if n != key_name(epoch)), reverse=True)
        return rewrapped + [n for n in forms if n == key_name(epoch)]

    def _read_epoch_record(self, epoch: str, name: str) -> dict:
        try:
            obj = json.loads(self.backend.get(name))
            base64.b64decode(obj["wrapped"], validate=True)
            if self.backend.write_once and obj.get("epoch") != epoch:  # a form added under another name
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise DamagedData(f"key object {name} is damaged", obj=name) from None
        return obj

    def epoch_records(self, epoch: str) -> list[tuple[str, dict | Exception]]:
        """(object, record or why it cannot be read) of every form of the epoch's key, newest first;
        ShreddedEpoch when there is none."""
        out: list[tuple[str, dict | Exception]] = []
        for name in self.epoch_key_objects(epoch):
            try:
                out.append((name, self._read_epoch_record(epoch, name)))
            except ObjectNotFound:
                continue
            except DamagedData as exc:
                out.append((name, exc))
        if not out:
            raise ShreddedEpoch(epoch, self.tombstone(epoch))
        return out

    def epoch_record(self, epoch: str) -> dict:
        """The newest readable form of the epoch's wrapped key."""
        records = self.epoch_records(epoch)
        for _name, rec in records:
            if isinstance(rec, dict):
                return rec
        raise records[0][1]

    def write_epoch_record(self, epoch: str, record: dict) -> str:
        """Store a rewrapped form of the epoch's key (``keys rotate``): over ``keys/<epoch>``, or beside it
        in an immutable repository, which never overwrites. Returns the object's name."""
        name = key_name(epoch)
        if self.backend.write_once:
            name = rewrapped_key_name(epoch, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-"
                                      + secrets.token_hex(4))
        self.backend.put(name, json.dumps(record, indent=1).encode())
        return name

    def epoch_keys(self, epoch: str, provider) -> EpochKeys:
        """The epoch's keys (unwrapped once). Opening them proves the config: its MAC under this
        epoch's key, written when the epoch was made, must match, or nothing is read with them.
        Then the epoch must be of the config's cipher: a repository never mixes ciphers."""
        keys = self._epochs.get(epoch)
        if keys is None:
            records = self.epoch_records(epoch)
            if provider is None:
                raise LifelineError(f"a key is needed to open epoch {epoch} of {self.url}: pass --key")
            obj, dek = self._unwrap_first(epoch, records, provider)
            if self.immutability is not None and (t := self.tombstone(epoch)) is not None \
                    and shred_proved(t, MacKeys(dek)):
                raise ShreddedEpoch(epoch, t)  # shredded; its key object is retained until its retention ends
            self.config_proved = True
            cipher = self.cipher  # proved, and runnable here
            claimed = obj.get("cipher", DEFAULT_CIPHER)  # key objects written before SM4: AES
            if claimed != cipher:
                raise DamagedData(f"key object {key_name(epoch)} says its epoch encrypts with {claimed!r}, but the "
                                  f"repository's authenticated config says {cipher}: a repository never mixes "
                                  "ciphers; storage changed that object or put it here from elsewhere",
                                  obj=key_name(epoch))
            keys = EpochKeys(epoch, dek, zstd_level=self.zstd_level, cipher=cipher)
            self._epochs[epoch] = keys
        return keys

    def _unwrap_first(self, epoch: str, records: list, provider) -> tuple[dict, bytes]:
        """The first form (newest first) that unwraps and proves the config; else the first form's error.
        A mutable repository has one form; an immutable one keeps every rewrapped form, and a form
        somebody else added under a name of its own fails here without hiding the good ones."""
        first: Exception | None = None
        for name, obj in records:
            try:
                if isinstance(obj, Exception):
                    raise obj
                dek = provider.unwrap(base64.b64decode(obj["wrapped"]))
                config_auth.check(self.url, self.config, MacKeys(dek), obj.get("config_mac"), name)
                return obj, dek
            except LifelineError as exc:
                first = first or exc
                if len(records) == 1:
                    raise
        raise first  # type: ignore[misc]

    def list_epochs(self) -> list[str]:
        return sorted({key_epoch(o.name) for o in self.backend.list(KEYS_DIR)})

    def shred_epoch(self, epoch: str, tombstone: dict | None = None, keys: EpochKeys | None = None) -> list[dict]:
        """Delete the epoch's wrapped key; first record who destroyed it and when (no key material).

        In an immutable repository the key objects stay until their retention ends (returned:
        [{"object", "until"}]); the tombstone, sealed under the epoch's own key (``keys``) so that nobody
        without it can fake a shred, then makes lifeline treat the epoch as shredded meanwhile."""
        if tombstone is not None:
            if self.backend.write_once and keys is not None:
                tombstone = {**tombstone, "mac": keys.macs.mac("shred", _tombstone_canonical(tombstone)).hex()}
            self.backend.put(tombstone_name(epoch), json.dumps(tombstone, indent=1, sort_keys=True).encode())
        retained = []
        for name in self.epoch_key_objects(epoch):
            try:
                self.backend.delete(name)
            except RetentionActive as exc:
                retained.append({"object": name, "until": rfc3339(exc.until) if exc.until else None})
        self._epochs.pop(epoch, None)
        return retained

    def tombstone(self, epoch: str) -> dict | None:
        try:
            t = json.loads(self.backend.get(tombstone_name(epoch)))
        except (ObjectNotFound, ValueError):
            return None
        return t if isinstance(t, dict) else None

    def tombstones(self) -> list[dict]:
        out = []
        for o in self.backend.list(SHREDDED_DIR):
            t = self.tombstone(o.name[len(SHREDDED_DIR):])
            if isinstance(t, dict):
                out.append(t)
        return out

    # --- index ------------------------------------------------------------------------
    def load_index(self, provider=None, *, epochs: set[str] | None = None, strict: bool = False,
                   pack_entries: bool = True, ids_only: bool = False) -> Index:
        """Every index segment (or those of ``epochs``), each authenticated under its epoch's key.

        A segment of a crypto-shredded epoch is set aside (its packs are garbage); one whose epoch
        key is gone without a tombstone, or that fails its MAC, is damaged (raised when strict).
        ``pack_entries=False``: for readers that only look chunks up; ``ids_only``: for a backup, which
        only asks whether a chunk is stored (see :class:`~.index.Index`).
        Segments are fetched a few at a time and each is dropped once merged, so loading holds one
        segment's bytes beside the index, not every segment's."""
        idx = Index(pack_entries=pack_entries, ids_only=ids_only)
        names = [o.name for o in self.backend.list(INDEX_DIR)]

        def fetch(name):
            try:
                return name, self.backend.get(name), None
            except ObjectNotFound:
                return name, None, None  # removed by a concurrent prune: ignore
            except LifelineError as exc:
                return name, None, exc

        def damaged(name: str, exc: DamagedData) -> None:
            if strict:
                raise exc
            idx.damaged[name] = str(exc)

        def fetched():
            with ThreadPoolExecutor(8) as ex:
                window = deque(ex.submit(fetch, n) for n in names[:8])
                for n in names[8:] + [None] * len(window):
                    fut = window.popleft()
                    if n is not None:
                        window.append(ex.submit(fetch, n))
                    yield fut.result()

        for name, data, err in fetched():
            if err is not None:
                raise err
            if data is None:
                continue
            try:
                epoch = segment_epoch(name, data)
            except DamagedData as exc:
                damaged(name, exc)
                continue
            if epochs is not None and epoch not in epochs:
                idx.other[name] = epoch
                continue
            try:
                keys = self.epoch_keys(epoch, provider)
            except ShreddedEpoch as exc:
                if exc.tombstone is not None:
                    idx.other[name] = epoch
                else:
                    damaged(name, DamagedData(f"index segment {name}: the key object of its epoch {epoch} is "
                                              "gone, and no shred recorded it", obj=name))
                continue
            try:
                packs = segment_packs(name, data, keys)
            except DamagedData as exc:
                damaged(name, exc)
                continue
            del data
            idx.add_segment(name, epoch, packs)
            del packs
        return idx

    def write_index_segment(self, keys: EpochKeys, packs: list[PackInfo]) -> int:
        """Store one (authenticated) segment for ``packs`` of ``keys``' epoch; returns its size."""
        data = encode_segment(keys, packs)
        self.backend.put(index_name(secrets.token_hex(16)), data)
        return len(data)

    def rewrite_index(self, index: Index, keep: Iterable[PackInfo], provider, *, force: bool = False) -> int:
        """Replace every segment of ``index`` (loaded or set aside) by one per epoch naming only ``keep``:
        when ``force`` (packs are about to be deleted) or when that merges segments. The new segments are
        stored before any old one goes, so a crash leaves duplicates, never a pack no index names.
        Returns how many old segments were replaced (0: nothing was rewritten)."""
        old = list(index.segments) + list(index.other)
        by_epoch: dict[str, list[PackInfo]] = {}
        for info in keep:
            by_epoch.setdefault(info.epoch, []).append(info)
        if not force and len(old) <= len(by_epoch):
            return 0
        for epoch, infos in by_epoch.items():
            self.write_index_segment(self.epoch_keys(epoch, provider), infos)
        for name in old:
            self.backend.delete(name)
        return len(old)

    # --- packs ------------------------------------------------------------------------
    def blob_saver(self, keys: EpochKeys, known: Container[bytes], *, workers: int) -> BlobSaver:
        """The door for new chunks of ``keys``' epoch (``known``: ids stored already); see :mod:`.blob_saver`."""
        return BlobSaver(self, keys, known, workers=workers)

    def store_pack(self, builder: PackBuilder) -> PackInfo:
        parts = builder.finish()
        self.backend.put(pack_name(builder.pack_id), parts)
        return PackInfo(builder.pack_id, builder.keys.epoch_id, builder.size, builder.entries)

    def list_packs(self) -> dict[str, int]:
        return {o.name.rsplit("/", 1)[-1]: o.size for o in self.backend.list(DATA_DIR)}

    def read_blob(self, pack_id: str, offset: int, length: int) -> bytes:
        return self.backend.get_range(pack_name(pack_id), offset, length)

    # --- points -----------------------------------------------------------------------
    def list_points(self) -> tuple[list[PointRef], dict[str, str]]:
        """All points (sorted by start time) and the names of unreadable ones with reasons."""
        names = [o.name for o in self.backend.list(POINTS_DIR)]
        points, bad = [], {}

        def fetch(name):
            try:
                return name, self._point_head(name), None
            except ObjectNotFound:
                return name, None, None
            except LifelineError as exc:
                return name, None, exc

        with ThreadPoolExecutor(8) as ex:
            for name, data, err in ex.map(fetch, names):
                if err is not None:
                    bad[name] = str(err)
                    continue
                if data is None:
                    continue
                try:
                    points.append(PointRef(name, decode_header(name, data)))
                except (DamagedData, FormatError) as exc:
                    bad[name] = str(exc)
        points.sort(key=lambda p: (p.header.get("start_time", ""), p.id))
        return points, bad

    def _point_head(self, name: str) -> bytes:
        """The first bytes of a point, as many as its header needs (more only if it says so): a
        point's tree is megabytes for a large source, and listing the points needs none of it. (Not
        bounded by the size a listing gives: storage may give a wrong one; a read past an object's
        end returns what it holds.)"""
        data = self.backend.get_range(name, 0, POINT_HEAD_READ)
        end = header_end(data)
        if end is not None and len(data) == POINT_HEAD_READ < end:
            data = self.backend.get_range(name, 0, end)
        return data

    def resolve_point(self, spec: str, points: list[PointRef] | None = None) -> PointRef:
        if points is None:
            points, _ = self.list_points()
        if not spec:
            raise UsageError("no recovery point given")
        if spec == "latest":
            if not points:
                raise PointNotFound(f"the repository {self.url} has no recovery points yet")
            return max(points, key=lambda p: p.header.get("completion_time", ""))
        matches = [p for p in points if p.id.startswith(spec)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            for t in self.tombstones():
                if any(str(pid).startswith(spec) for pid in t.get("points", ())):
                    raise PointShredded(spec, t)
            raise PointNotFound(f"no recovery point {spec!r} in {self.url}; list them with "
                                f"`lifeline agent points --repo {self.url}`")
        raise UsageError(f"recovery point prefix {spec!r} is ambiguous ({len(matches)} match); give more characters")

    def load_point(self, point_id: str, provider) -> tuple[dict, list[dict], EpochKeys]:
        """The point's header, its whole tree as a list, and its epoch's keys (see :meth:`open_point`)."""
        header, tree, keys = self.open_point(point_id, provider)
        return header, list(tree), keys

    def open_point(self, point_id: str, provider, *, pieces: bool = False) -> tuple[dict, Tree, EpochKeys]:
        """The point's header, its tree (authenticated; entries decoded as they are iterated: see
        :mod:`.tree`; in pieces a single pass may let go of, with ``pieces``) and its epoch's keys."""
        name = point_name(point_id)
        try:
            data = self.backend.get(name)
        except ObjectNotFound:
            raise PointNotFound(f"recovery point {point_id} not found in {self.url}") from None
        header = decode_header(name, data)
        keys = self.epoch_keys(header["epoch"], provider)
        header, tree = open_tree(keys, name, data, pieces=pieces)
        return header, tree, keys

    def point_checksum(self, point_id: str) -> str:
        return "blake3:" + blake3.blake3(self.backend.get(point_name(point_id))).hexdigest()

    def write_point(self, keys: EpochKeys, header: dict, entries: list[dict] | TreeWriter) -> str:
        """Store the point (``entries``: a list, or a :class:`~.tree.TreeWriter` they were added to);
        returns its checksum."""
        if isinstance(entries, TreeWriter):
            data, checksum = seal_tree(keys, header, entries.finish())
        else:
            data = encode_point(keys, header, entries)
            checksum = "blake3:" + blake3.blake3(data).hexdigest()
        self.backend.put(point_name(header["id"]), data)
        return checksum

    def delete_point(self, point_id: str) -> None:
        self.backend.delete(point_name(point_id))


class PointShredded(PointNotFound):
    """The point was removed by a crypto-shred; the tombstone says when and by whom."""

    def __init__(self, spec: str, tombstone: dict):
        super().__init__(f"recovery point {spec} no longer exists: {ShreddedEpoch(tombstone.get('epoch', '?'), tombstone)}")
        self.tombstone = tombstone


def _parse_config(raw: bytes | None):
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _first_config(backend) -> tuple[Backend | None, dict | None]:
    """The config's first version, through the backend's write-once view (None where that cannot be read)."""
    try:
        view = backend.write_once_view()
        return view, _parse_config(view.get(CONFIG))
    except (BackendError, UsageError):  # no versions, no permission to list them, no boto3: a plain repository
        return None, None


def _tombstone_canonical(tombstone: dict) -> bytes:
    return json.dumps({k: v for k, v in tombstone.items() if k != "mac"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def shred_proved(tombstone: dict, macs: MacKeys) -> bool:
    """Whether an immutable repository's tombstone was written by whoever held the epoch's key."""
    return macs.verify("shred", _tombstone_canonical(tombstone), tombstone.get("mac"))
