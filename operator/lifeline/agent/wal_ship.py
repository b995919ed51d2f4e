"""``lifeline agent ship --dir DIR``: stream closed log segments to every destination.

The workload (PostgreSQL's archive_command, or any program that closes append-only files)
puts closed segments into DIR — written elsewhere and renamed in, so a file that is there
is complete. The shipper polls DIR and ships each new segment *in order* to every
destination, straight from DIR. A segment that some destination could not take is copied
into a bounded local queue (in ``--state``, which survives a restart, so the workload may
delete its file meanwhile): the other destinations go on, the queue holds what the lagging
one still needs (up to ``--queue-max`` segments; ``queue_near_full`` from 80 %, and when
full no new segment is taken until there is room), and when it comes back it receives the
backlog oldest first. A segment leaves the queue when every destination has it.

Progress is one JSON status line per change on stdout (and ``<state>/status.json``), and
optionally Prometheus metrics on ``--metrics-port``: newest shipped segment and its close
time per destination, lag (now minus the close time of the oldest segment a destination
still lacks), backlog, queue fill.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

from lifeline.errors import LifelineError
from lifeline.repository.segments import parse_name

from .wal import Destination, open_store

QUEUE = "queue"
STATE_FILE = "state.json"
STATUS_FILE = "status.json"
NEAR_FULL = 0.8
MAX_BACKOFF = 5.0


def _order(name: str) -> tuple:
    sn = parse_name(name)
    return (0, sn.seq, sn.stream, name) if sn.seq is not None else (1, 0, "", name)


@dataclass
class DestState:
    dest: Destination
    shipped: set = field(default_factory=set)  # queued names this destination already holds
    newest: str | None = None
    newest_closed_at: float | None = None
    newest_shipped_at: float | None = None
    last_lag: float | None = None
    up: bool = True
    error: str = ""
    retry_at: float = 0.0
    failures: int = 0
    store: object = None


class Shipper:
    def __init__(self, directory: str, dests: list[Destination], key_ref: str | None, state_dir: str, *,
                 pattern: str = "*", queue_max: int = 256, create: bool = False, delete_shipped: bool = False,
                 clock=time.time, out=None, cipher: str = "aes-256-gcm"):
        if queue_max < 1:
            raise LifelineError("--queue-max must be at least 1")
        self.dir, self.pattern, self.queue_max = directory, pattern, queue_max
        self.key_ref, self.create, self.delete_shipped = key_ref, create, delete_shipped
        self.cipher = cipher  # of the repositories --create makes
        self.state_dir = state_dir
        self.queue_dir = os.path.join(state_dir, QUEUE)
        os.makedirs(self.queue_dir, exist_ok=True)
        self.clock = clock
        self.out = out if out is not None else sys.stdout
        self.dests = [DestState(d) for d in dests]
        self.queue: list[str] = []  # names taken but not yet at every destination, oldest first
        self.copied: set[str] = set()  # those with a local copy in the queue directory
        self.closed_at: dict[str, float] = {}
        self.watermark: tuple | None = None  # order key of the newest segment taken from DIR
        self.aux_taken: set[str] = set()
        self.queue_full = False
        self.lags: list[float] = []  # per shipped segment and destination: shipped_at - closed_at
        self._load()
        self._last_status: str = ""

    # --- persistence ---------------------------------------------------------------
    def _load(self) -> None:
        try:
            with open(os.path.join(self.state_dir, STATE_FILE)) as f:
                st = json.load(f)
        except FileNotFoundError:
            st = {}
        self.copied = {n for n in st.get("queue", []) if os.path.exists(os.path.join(self.queue_dir, n))}
        self.queue = [n for n in st.get("queue", []) if n in self.copied or os.path.exists(os.path.join(self.dir, n))]
        self.closed_at = {n: float(t) for n, t in st.get("closed_at", {}).items() if n in self.queue}
        self.watermark = tuple(st["watermark"]) if st.get("watermark") else None
        self.aux_taken = set(st.get("aux_taken", []))
        by_url = st.get("destinations", {})
        for d in self.dests:
            s = by_url.get(d.dest.url, {})
            d.shipped = set(s.get("shipped", [])) & set(self.queue)
            d.newest, d.newest_closed_at = s.get("newest"), s.get("newest_closed_at")
            d.newest_shipped_at = s.get("newest_shipped_at")
            # A destination added later must receive what is queued; older segments are its history gap.

    def _save(self) -> None:
        st = {"queue": self.queue, "closed_at": self.closed_at,
              "watermark": list(self.watermark) if self.watermark else None, "aux_taken": sorted(self.aux_taken),
              "destinations": {d.dest.url: {"shipped": sorted(d.shipped), "newest": d.newest,
                                            "newest_closed_at": d.newest_closed_at,
                                            "newest_shipped_at": d.newest_shipped_at} for d in self.dests}}
        _write_atomic(os.path.join(self.state_dir, STATE_FILE), json.dumps(st, sort_keys=True).encode())

    # --- one round -----------------------------------------------------------------
    def _candidates(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n.startswith(".") or n.endswith((".tmp", ".partial.tmp")) or not fnmatch.fnmatch(n, self.pattern):
                continue
            if not os.path.isfile(os.path.join(self.dir, n)):
                continue
            try:
                key = _order(n)
            except LifelineError:
                continue
            if key[0] == 1:
                if n not in self.aux_taken:
                    out.append(n)
            elif self.watermark is None or key > self.watermark:
                out.append(n)
        return sorted(out, key=_order)

    def take(self) -> int:
        """Copy new closed segments from DIR into the local queue (bounded)."""
        taken = 0
        self.queue_full = False
        for n in self._candidates():
            if len(self.queue) >= self.queue_max:
                self.queue_full = True
                break
            try:
                closed = os.stat(os.path.join(self.dir, n)).st_mtime
            except FileNotFoundError:
                continue  # removed by the workload after the listing
            self.queue.append(n)
            self.closed_at[n] = closed
            key = _order(n)
            if key[0] == 1:
                self.aux_taken.add(n)
            else:
                self.watermark = key
            taken += 1
        if taken:
            self._save()
        return taken

    def _store(self, d: DestState):
        if d.store is None:
            d.store = open_store(d.dest, self.key_ref, create=self.create, cipher=self.cipher)
        return d.store

    def ship(self) -> int:
        """Ship queued segments in order to every destination that is up (or due for a retry)."""
        shipped, vanished = 0, []
        now = self.clock()
        for d in self.dests:
            if not d.up and now < d.retry_at:
                continue
            for n in self.queue:
                if n in d.shipped or n in vanished:
                    continue
                if not os.path.exists(self._path(n)):  # the workload deleted it: not this destination's fault
                    vanished.append(n)
                    continue
                try:
                    self._store(d).push(self._path(n), n)
                except (LifelineError, OSError) as exc:
                    d.store = None
                    d.failures += 1
                    d.up, d.error = False, str(exc)
                    d.retry_at = self.clock() + min(MAX_BACKOFF, 0.5 * 2 ** min(d.failures, 8))
                    print(f"lifeline agent ship: {d.dest.label}: {exc}; {self.backlog(d)} segment(s) queued, "
                          "retrying", file=sys.stderr, flush=True)
                    break
                t = self.clock()
                d.shipped.add(n)
                d.up, d.error, d.failures = True, "", 0
                closed = self.closed_at.get(n)
                if parse_name(n).seq is not None:
                    d.newest, d.newest_closed_at, d.newest_shipped_at = n, closed, t
                if closed is not None:
                    d.last_lag = max(0.0, t - closed)
                    self.lags.append(d.last_lag)
                shipped += 1
        self._drop(vanished)
        self._retire()
        copied = self._keep_locally()
        if shipped or copied:
            self._save()
        return shipped

    def _path(self, name: str) -> str:
        return os.path.join(self.queue_dir if name in self.copied else self.dir, name)

    def _keep_locally(self) -> int:
        """Copy what some destination still lacks into the queue (the workload may delete its file)."""
        n_copied, lost = 0, []
        for n in self.queue:
            if n in self.copied:
                continue
            try:
                _copy_atomic(os.path.join(self.dir, n), os.path.join(self.queue_dir, n), self.closed_at[n])
            except FileNotFoundError:
                lost.append(n)
                continue
            self.copied.add(n)
            n_copied += 1
        self._drop(lost)
        return n_copied + len(lost)

    def _drop(self, names: list[str]) -> None:
        """Nothing left to ship of these: the destinations that lack them will show the gap."""
        for n in names:
            print(f"lifeline agent ship: {n} vanished from {self.dir} before every destination had it; "
                  "`lifeline agent wal-list` names the gap", file=sys.stderr, flush=True)
            self.queue.remove(n)
            self.closed_at.pop(n, None)
            for d in self.dests:
                d.shipped.discard(n)

    def _retire(self) -> None:
        keep = []
        for n in self.queue:
            if all(n in d.shipped for d in self.dests):
                if n in self.copied:
                    self.copied.discard(n)
                    try:
                        os.unlink(os.path.join(self.queue_dir, n))
                    except FileNotFoundError:
                        pass
                if self.delete_shipped:
                    try:
                        os.unlink(os.path.join(self.dir, n))
                    except OSError:
                        pass
                for d in self.dests:
                    d.shipped.discard(n)
                self.closed_at.pop(n, None)
            else:
                keep.append(n)
        self.queue = keep

    def step(self) -> int:
        return self.take() + self.ship()

    # --- reporting -----------------------------------------------------------------
    def backlog(self, d: DestState) -> int:
        return sum(1 for n in self.queue if n not in d.shipped)

    def lag(self, d: DestState, now: float) -> float:
        pending = [self.closed_at[n] for n in self.queue if n not in d.shipped and n in self.closed_at]
        return round(max(0.0, now - min(pending)), 3) if pending else 0.0

    def status(self) -> dict:
        now = self.clock()
        return {
            "time": round(now, 3),
            "queue": len(self.queue), "queued_locally": len(self.copied), "queue_max": self.queue_max,
            "queue_near_full": len(self.queue) >= NEAR_FULL * self.queue_max, "queue_full": self.queue_full,
            "destinations": [{
                "repository": d.dest.label, "up": d.up, "error": d.error, "backlog": self.backlog(d),
                "lag_seconds": self.lag(d, now), "last_segment_lag_seconds": d.last_lag,
                "newest_shipped": d.newest, "newest_closed_at": d.newest_closed_at,
                "newest_shipped_at": d.newest_shipped_at,
            } for d in self.dests],
        }

    def report(self, force: bool = False) -> dict:
        st = self.status()
        key = json.dumps({k: v for k, v in st.items() if k != "time"} | {"destinations": [
            {k: v for k, v in d.items() if k != "lag_seconds"} for d in st["destinations"]]}, sort_keys=True)
        if force or key != self._last_status:
            self._last_status = key
            line = json.dumps(st, sort_keys=True)
            print(line, file=self.out, flush=True)
            _write_atomic(os.path.join(self.state_dir, STATUS_FILE), line.encode())
        return st

    # --- the loop ------------------------------------------------------------------
    def run(self, *, interval: float = 0.5, status_every: float = 10.0, once: bool = False, metrics=None,
            stop=None) -> int:
        last_forced = 0.0
        while True:
            self.step()
            now = time.monotonic()
            force = now - last_forced >= status_every
            st = self.report(force=force)
            if force:
                last_forced = now
            if metrics is not None:
                metrics.update(st)
            if once and not any(d["backlog"] for d in st["destinations"]) and not self._candidates():
                return 0
            if once and not all(d.up for d in self.dests):
                return 1
            if stop is not None and stop():
                return 0
            time.sleep(interval)  # polling the directory: the workload closes segments on its own clock


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _copy_atomic(src: str, dst: str, mtime: float) -> None:
    tmp = f"{dst}.tmp"
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
        fo.flush()
        os.fsync(fo.fileno())
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, dst)


class Metrics:
    """Prometheus gauges on a private registry, served on ``--metrics-port``."""

    def __init__(self, port: int, host: str = "0.0.0.0"):
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry()
        lbl = ["repository"]
        self.lag = Gauge("lifeline_wal_shipping_lag_seconds",
                         "Now minus the close time of the oldest segment this destination still lacks",
                         lbl, registry=self.registry)
        self.backlog = Gauge("lifeline_wal_backlog_segments", "Segments queued for this destination",
                             lbl, registry=self.registry)
        self.newest = Gauge("lifeline_wal_last_shipped_segment_closed_timestamp_seconds",
                            "Close time of the newest segment this destination holds", lbl, registry=self.registry)
        self.up = Gauge("lifeline_wal_destination_up", "1 when the last push to this destination succeeded",
                        lbl, registry=self.registry)
        self.queue = Gauge("lifeline_wal_queue_segments", "Segments in the local queue", registry=self.registry)
        self.capacity = Gauge("lifeline_wal_queue_capacity_segments", "Bound of the local queue",
                              registry=self.registry)
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)

    def update(self, st: dict) -> None:
        self.queue.set(st["queue"])
        self.capacity.set(st["queue_max"])
        for d in st["destinations"]:
            r = d["repository"]
            self.lag.labels(r).set(d["lag_seconds"])
            self.backlog.labels(r).set(d["backlog"])
            self.up.labels(r).set(1 if d["up"] else 0)
            if d["newest_closed_at"] is not None:
                self.newest.labels(r).set(d["newest_closed_at"])

    def close(self) -> None:
        self.server.shutdown()
