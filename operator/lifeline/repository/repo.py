"""The repository: config, epochs (keys), index, packs and points on a backend.

Storage is not trusted: with a key at hand, nothing is used before it is authenticated. The config
is proved whenever an epoch key is opened (:mod:`.config`), index segments by their MAC, the list of
published points by the catalogue head (:mod:`.catalogue`)."""
from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Container, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from lifeline.errors import LifelineError, UsageError

from . import catalogue
from . import config as config_auth
from .backend import Backend
from .blob_saver import BlobSaver
from .crypto import CIPHERS, DEFAULT_CIPHER, EpochKeys, MacKeys, cipher_problem
from .errors import (CipherUnavailable, DamagedData, FormatError, ObjectNotFound, PointNotFound, RepositoryExists,
                     RepositoryNotFound, ShreddedEpoch)
from .index import Index, PackInfo, decode_segment, encode_segment, segment_epoch
from .layout import (CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CONFIG, DATA_DIR, INDEX_DIR, KEYS_DIR, PACK_TARGET,
                     POINTS_DIR, SHREDDED_DIR, index_name, key_name, pack_name, parse_rfc3339, point_name, rfc3339,
                     tombstone_name)
from .locks import REPOSITORY, Lock
from .manifest import decode_header, decode_tree, encode_point
from .pack import PackBuilder


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

    @property
    def url(self) -> str:
        return self.backend.url

    # --- lifecycle ----------------------------------------------------------------
    @classmethod
    def init(cls, backend: Backend, provider, *, compression_level: int = 1,
             cipher: str = DEFAULT_CIPHER) -> "Repository":
        """Create the config (authenticated under a new anchor key) and the empty catalogue head.

        ``cipher`` (``aes-256-gcm`` or ``sm4-gcm``) is the repository's for good."""
        config_auth.check_cipher_name(cipher)
        if (problem := cipher_problem(cipher)) is not None:
            raise CipherUnavailable(f"cannot create a {cipher} repository at {backend.url}: {problem}")
        if backend.exists(CONFIG):
            raise RepositoryExists(f"a repository already exists at {backend.url}")
        config, anchor = config_auth.new(provider, compression_level=compression_level,
                                         created_at=rfc3339(time.time()), cipher=cipher)
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
        """The repository, its config read but not yet proved: that needs a key (:meth:`authenticate`)."""
        try:
            raw = backend.get(CONFIG)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no lifeline repository at {backend.url}: check --repo, or create "
                                     f"one with `lifeline agent init --repo {backend.url} --key ...`") from None
        try:
            config = json.loads(raw)
        except ValueError:
            raise DamagedData(f"repository config at {backend.url} is not valid JSON", obj=CONFIG) from None
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

    def epoch_record(self, epoch: str) -> dict:
        try:
            raw = self.backend.get(key_name(epoch))
        except ObjectNotFound:
            raise ShreddedEpoch(epoch, self.tombstone(epoch)) from None
        try:
            obj = json.loads(raw)
            base64.b64decode(obj["wrapped"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise DamagedData(f"key object keys/{epoch} is damaged", obj=key_name(epoch)) from None
        return obj

    def epoch_keys(self, epoch: str, provider) -> EpochKeys:
        """The epoch's keys (unwrapped once). Opening them proves the config: its MAC under this
        epoch's key, written when the epoch was made, must match, or nothing is read with them.
        Then the epoch must be of the config's cipher: a repository never mixes ciphers."""
        keys = self._epochs.get(epoch)
        if keys is None:
            obj = self.epoch_record(epoch)
            if provider is None:
                raise LifelineError(f"a key is needed to open epoch {epoch} of {self.url}: pass --key")
            dek = provider.unwrap(base64.b64decode(obj["wrapped"]))
            config_auth.check(self.url, self.config, MacKeys(dek), obj.get("config_mac"), key_name(epoch))
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

    def list_epochs(self) -> list[str]:
        return [o.name[len(KEYS_DIR):] for o in self.backend.list(KEYS_DIR)]

    def shred_epoch(self, epoch: str, tombstone: dict | None = None) -> None:
        """Delete the epoch's wrapped key; first record who destroyed it and when (no key material)."""
        if tombstone is not None:
            self.backend.put(tombstone_name(epoch), json.dumps(tombstone, indent=1, sort_keys=True).encode())
        self.backend.delete(key_name(epoch))
        self._epochs.pop(epoch, None)

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
    def load_index(self, provider=None, *, epochs: set[str] | None = None, strict: bool = False) -> Index:
        """Every index segment (or those of ``epochs``), each authenticated under its epoch's key.

        A segment of a crypto-shredded epoch is set aside (its packs are garbage); one whose epoch
        key is gone without a tombstone, or that fails its MAC, is damaged (raised when strict)."""
        idx = Index()
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

        with ThreadPoolExecutor(8) as ex:
            fetched = list(ex.map(fetch, names))
        for name, data, err in fetched:
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
                _epoch, packs = decode_segment(name, data, keys)
            except DamagedData as exc:
                damaged(name, exc)
                continue
            idx.add_segment(name, epoch, packs)
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
                return name, self.backend.get(name), None
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
        name = point_name(point_id)
        try:
            data = self.backend.get(name)
        except ObjectNotFound:
            raise PointNotFound(f"recovery point {point_id} not found in {self.url}") from None
        header = decode_header(name, data)
        keys = self.epoch_keys(header["epoch"], provider)
        header, entries = decode_tree(keys, name, data)
        return header, entries, keys

    def point_checksum(self, point_id: str) -> str:
        return "blake3:" + blake3.blake3(self.backend.get(point_name(point_id))).hexdigest()

    def write_point(self, keys: EpochKeys, header: dict, entries: list[dict]) -> str:
        data = encode_point(keys, header, entries)
        self.backend.put(point_name(header["id"]), data)
        return "blake3:" + blake3.blake3(data).hexdigest()

    def delete_point(self, point_id: str) -> None:
        self.backend.delete(point_name(point_id))


class PointShredded(PointNotFound):
    """The point was removed by a crypto-shred; the tombstone says when and by whom."""

    def __init__(self, spec: str, tombstone: dict):
        super().__init__(f"recovery point {spec} no longer exists: {ShreddedEpoch(tombstone.get('epoch', '?'), tombstone)}")
        self.tombstone = tombstone
