"""The repository: config, epochs (keys), index, packs and points on a backend."""
from __future__ import annotations

import base64
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from .backend import Backend
from .crypto import EpochKeys
from .errors import (DamagedData, FormatError, LifelineError, ObjectNotFound, PointNotFound,
                     RepositoryExists, RepositoryNotFound, UsageError)
from .index import Index, PackInfo, decode_segment, encode_segment
from .layout import (CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, CONFIG, DATA_DIR, FORMAT_NAME, FORMAT_VERSION,
                     INDEX_DIR, KEYS_DIR, PACK_TARGET, POINTS_DIR, SHREDDED_DIR, index_name, key_name,
                     pack_name, point_name, tombstone_name)
from .locks import Lock
from .manifest import decode_header, decode_tree, encode_point
from .pack import PackBuilder


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e6):06d}Z"


def parse_rfc3339(s: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


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
        self.zstd_level = int(config.get("compression_level", 1))

    @property
    def url(self) -> str:
        return self.backend.url

    # --- lifecycle ----------------------------------------------------------------
    @classmethod
    def init(cls, backend: Backend, key_ref: str, *, compression_level: int = 1) -> "Repository":
        if not 0 <= compression_level <= 19:
            raise UsageError("compression level must be 0 (off) to 19")
        if backend.exists(CONFIG):
            raise RepositoryExists(f"a repository already exists at {backend.url}")
        config = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "id": secrets.token_hex(16),
            "created_at": rfc3339(time.time()),
            "key_ref": key_ref,
            "chunker": {"algorithm": "fastcdc-2020", "normalized": 1,
                        "min": CHUNK_MIN, "avg": CHUNK_AVG, "max": CHUNK_MAX},
            "pack_target": PACK_TARGET,
            "compression": "zstd",
            "compression_level": compression_level,
            "encryption": "aes-256-gcm",
            "chunk_id": "blake3-keyed",
        }
        try:
            backend.put(CONFIG, json.dumps(config, indent=1, sort_keys=True).encode(), exclusive=True)
        except RepositoryExists:
            raise RepositoryExists(f"a repository already exists at {backend.url}") from None
        return cls(backend, config)

    @classmethod
    def open(cls, backend: Backend) -> "Repository":
        try:
            raw = backend.get(CONFIG)
        except ObjectNotFound:
            raise RepositoryNotFound(f"no lifeline repository at {backend.url}: check --repo, or create "
                                     f"one with `lifeline agent init --repo {backend.url} --key ...`") from None
        try:
            config = json.loads(raw)
        except ValueError:
            raise DamagedData(f"repository config at {backend.url} is not valid JSON", obj=CONFIG) from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise FormatError(f"{backend.url} is not a lifeline repository")
        if int(config.get("version", 0)) > FORMAT_VERSION:
            raise FormatError(f"repository format version {config['version']} is newer than this "
                              f"lifeline supports ({FORMAT_VERSION}): upgrade lifeline")
        return cls(backend, config)

    def lock(self, *, exclusive: bool, command: str, wait: float = 0.0) -> Lock:
        return Lock(self.backend, exclusive=exclusive, command=command).acquire(wait)

    # --- chunker parameters ------------------------------------------------------
    @property
    def chunk_params(self) -> dict:
        c = self.config.get("chunker", {})
        return {"min_size": c.get("min", CHUNK_MIN), "avg_size": c.get("avg", CHUNK_AVG),
                "max_size": c.get("max", CHUNK_MAX)}

    @property
    def pack_target(self) -> int:
        return int(self.config.get("pack_target", PACK_TARGET))

    # --- epochs -----------------------------------------------------------------------
    def new_epoch(self, provider) -> EpochKeys:
        epoch = secrets.token_hex(16)
        dek, wrapped = provider.new_data_key()
        obj = {"version": 1, "epoch": epoch, "key_ref": provider.ref,
               "wrapped": base64.b64encode(wrapped).decode(), "created_at": rfc3339(time.time())}
        self.backend.put(key_name(epoch), json.dumps(obj, indent=1).encode())
        keys = EpochKeys(epoch, dek, zstd_level=self.zstd_level)
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
        keys = self._epochs.get(epoch)
        if keys is None:
            obj = self.epoch_record(epoch)
            dek = provider.unwrap(base64.b64decode(obj["wrapped"]))
            keys = self._epochs[epoch] = EpochKeys(epoch, dek, zstd_level=self.zstd_level)
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
            return json.loads(self.backend.get(tombstone_name(epoch)))
        except (ObjectNotFound, ValueError):
            return None

    def tombstones(self) -> list[dict]:
        out = []
        for o in self.backend.list(SHREDDED_DIR):
            t = self.tombstone(o.name[len(SHREDDED_DIR):])
            if isinstance(t, dict):
                out.append(t)
        return out

    # --- index ------------------------------------------------------------------------
    def load_index(self, *, strict: bool = False) -> Index:
        idx = Index()
        names = [o.name for o in self.backend.list(INDEX_DIR)]

        def fetch(name):
            try:
                return name, self.backend.get(name), None
            except ObjectNotFound:
                return name, None, None  # removed by a concurrent prune: ignore
            except LifelineError as exc:
                return name, None, exc

        with ThreadPoolExecutor(8) as ex:
            for name, data, err in ex.map(fetch, names):
                if err is not None:
                    raise err
                if data is None:
                    continue
                try:
                    epoch, packs = decode_segment(name, data)
                except DamagedData as exc:
                    if strict:
                        raise
                    idx.damaged[name] = str(exc)
                    continue
                idx.add_segment(name, epoch, packs)
        return idx

    def write_index_segment(self, epoch: str, packs: list[PackInfo]) -> str:
        name = index_name(secrets.token_hex(16))
        self.backend.put(name, encode_segment(epoch, packs))
        return name

    # --- packs ------------------------------------------------------------------------
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


class ShreddedEpoch(LifelineError):
    """The epoch's wrapped key is gone: its points are unreadable by design."""

    exit_code = 3

    def __init__(self, epoch: str, tombstone: dict | None = None):
        when = ""
        if tombstone:
            when = (f" at {tombstone.get('shredded_at', '?')} by {tombstone.get('actor', '?')}"
                    + (f" (reason: {tombstone['reason']})" if tombstone.get("reason") else ""))
        super().__init__(f"the data key of epoch {epoch} was destroyed (crypto-shredded){when}; "
                         "points of this epoch cannot be read")
        self.epoch = epoch
        self.tombstone = tombstone


class PointShredded(PointNotFound):
    """The point was removed by a crypto-shred; the tombstone says when and by whom."""

    def __init__(self, spec: str, tombstone: dict):
        super().__init__(f"recovery point {spec} no longer exists: {ShreddedEpoch(tombstone.get('epoch', '?'), tombstone)}")
        self.tombstone = tombstone
