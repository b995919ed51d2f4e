"""Progress: a one-line display on stderr when it is a terminal, and structured lines for a Job's log.

In a Job (``--progress-lines``; the restore Job's task always) the agent writes one line every
:data:`LINE_EVERY` seconds and one at the end, :data:`PREFIX` and then a JSON object::

    lifeline-progress {"bytes":1048576,"done":false,"elapsed":2.0,"eta":6,"files":3,"files_total":12,
                       "phase":"backup","rate":524288,"total":4194304}

``total`` (bytes) is known for a directory (a full backup scans the tree first; an incremental takes
its parent point's figures as an estimate, shown as no less than what is done) and for a restore
(the point's manifest), not for a dump's stream; ``eta`` (seconds) only when it is. ``lifeline backup now
--wait``, ``drill run`` and ``restore status --wait`` follow the Job's log and draw a bar from these
lines (:func:`bar_text`, :func:`plain_text`). The worker only adds to counters; the lines are written
by a thread, by time, so the hot path never waits on them.
"""
from __future__ import annotations

import json
import sys
import threading
import time

PREFIX = "lifeline-progress "
LINE_EVERY = 2.0  # seconds between structured lines
_INTS = ("files", "files_total", "bytes", "total", "rate", "eta")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _hms(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Counters updated by the worker; a thread redraws the line twice a second."""

    def __init__(self, verb: str, *, enabled: bool | None = None, stream=None, lines=None,
                 every: float = LINE_EVERY):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.lines = lines  # where the structured lines go (a Job's log), or None
        self.every = every
        self.verb = verb
        self.bytes_done = 0
        self.bytes_total: int | None = None
        self.files_done = 0
        self.files_total: int | None = None
        self.estimated = False  # (the totals are an estimate: shown as no less than what is done)
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._width = 0

    def __enter__(self) -> "Progress":
        if self.enabled or self.lines is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if self.enabled:
                self._draw(final=True)
            if self.lines is not None:
                self._emit(done=True)

    def _totals(self, done: bool = False) -> tuple[int | None, int | None]:
        """(files, bytes) to show as the totals: an estimate grows with what is done past it, and
        is what was done at the end."""
        files, size = self.files_total or None, self.bytes_total or None
        if self.estimated:
            files = (self.files_done if done else max(files or 0, self.files_done)) or None
            size = (self.bytes_done if done else max(size or 0, self.bytes_done)) or None
        return files, size

    def record(self, done: bool = False) -> dict:
        """The figures now, as a structured line carries them."""
        el = max(time.monotonic() - self.start, 1e-6)
        rate = self.bytes_done / el
        files_total, total = self._totals(done)
        eta = None
        if total:
            eta = 0 if done or self.bytes_done >= total else round((total - self.bytes_done) / rate) if rate else None
        return {"phase": self.verb, "files": self.files_done, "files_total": files_total,
                "bytes": self.bytes_done, "total": total, "rate": round(rate), "eta": eta,
                "elapsed": round(el, 1), "done": done}

    def _emit(self, done: bool = False) -> None:
        try:
            self.lines.write(format_line(self.record(done)) + "\n")
            self.lines.flush()
        except (OSError, ValueError):
            pass

    def line(self) -> str:
        el = max(time.monotonic() - self.start, 1e-6)
        rate = self.bytes_done / el
        files_total, total = self._totals()
        parts = [f"{self.verb} {human_bytes(self.bytes_done)}"]
        if total:
            parts[0] += f" / {human_bytes(total)}"
        files = f"{self.files_done}" + (f"/{files_total}" if files_total else "")
        parts.append(f"{files} files")
        parts.append(f"{human_bytes(rate)}/s")
        if total and rate > 0 and self.bytes_done < total:
            parts.append(f"ETA {_hms((total - self.bytes_done) / rate)}")
        parts.append(_hms(el))
        return "  ".join(parts)

    def _draw(self, final: bool = False) -> None:
        text = self.line()
        pad = max(0, self._width - len(text))
        self._width = len(text)
        try:
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _loop(self) -> None:
        tick = min(0.5, self.every) if self.enabled else self.every
        due = time.monotonic() + self.every
        while not self._stop.wait(tick):
            if self.enabled:
                self._draw()
            if self.lines is not None and time.monotonic() >= due:
                self._emit()
                due = time.monotonic() + self.every


# ---- the structured line, and what the CLI draws from it ----------------------------------------


def format_line(record: dict) -> str:
    return PREFIX + json.dumps(record, sort_keys=True, separators=(",", ":"))


def _word(value, limit: int) -> str | None:
    """A short name from a log line, printable and safe on a terminal, or None."""
    if not isinstance(value, str):
        return None
    text = "".join(c for c in value[:limit] if c.isalnum() or c in "-_.")
    return text or None


def parse_line(text: str) -> dict | None:
    """The record of one log line (:func:`format_line`), or None when the line is not one. A Pod's log
    is not trusted: only the known fields are kept, numbers as numbers, names printable."""
    text = text.strip()
    if not text.startswith(PREFIX.strip()):
        return None
    try:
        raw = json.loads(text[len(PREFIX.strip()):])
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    out: dict = {"phase": _word(raw.get("phase"), 32) or "progress",
                 "destination": _word(raw.get("destination"), 63), "done": raw.get("done") is True}
    for key in _INTS:
        value = raw.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1 << 62
        out[key] = int(value) if ok else None
    out["bytes"], out["files"], out["rate"] = out["bytes"] or 0, out["files"] or 0, out["rate"] or 0
    elapsed = raw.get("elapsed")
    out["elapsed"] = float(elapsed) if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool) \
        and 0 <= elapsed < 1e9 else None
    return out


def fraction(record: dict) -> float | None:
    """How far along (0..1), when the total is known."""
    total = record.get("total")
    if not total:
        return None
    return 1.0 if record.get("done") else min(1.0, record["bytes"] / total)


def _parts(record: dict) -> tuple[str, str | None, list[str]]:
    """(what, percentage, the figures) of a record."""
    what = record["phase"] + (f" {record['destination']}" if record.get("destination") else "")
    done = fraction(record)
    pct = None if done is None else f"{done * 100:3.0f}%"
    figures = human_bytes(record["bytes"]) + (f" / {human_bytes(record['total'])}" if record.get("total") else "")
    files = f"{record['files']}" + (f"/{record['files_total']}" if record.get("files_total") else "") + " files"
    parts = [figures, files, f"{human_bytes(record['rate'])}/s"]
    if record.get("eta") is not None and not record.get("done"):
        parts.append(f"ETA {_hms(record['eta'])}")
    elif record.get("elapsed") is not None:
        parts.append(_hms(record["elapsed"]))
    return what, pct, parts


def bar_text(record: dict, width: int = 80) -> str:
    """One line for a terminal ``width`` columns wide: ``backup [=====>    ]  45%  1.2 GiB / 2.6 GiB ...``.
    Without a total there is no bar: the bytes, files and rate. What does not fit is left off the end."""
    width = max(20, width) - 1  # the last column: some terminals wrap when it is written
    what, pct, parts = _parts(record)
    rest = "  ".join(([pct] if pct else []) + parts)
    room = width - len(what) - len(rest) - 4  # "what [" + "] " + rest
    done = fraction(record)
    if done is not None and room >= 10:
        size = min(room, 30)  # one size while the figures beside it change
        filled = int(done * size)
        bar = "=" * filled + (">" if filled < size else "") + " " * max(0, size - filled - 1)
        return f"{what} [{bar}] {rest}"
    text = f"{what}  {rest}"
    while len(text) > width and parts:
        parts.pop()
        text = f"{what}  " + "  ".join(([pct] if pct else []) + parts)
    return text[:width]


def plain_text(record: dict) -> str:
    """One line for a log or a pipe: ``backup: 45%, 1.2 GiB / 2.6 GiB, 310/1024 files, 52.3 MiB/s, ETA 0:00:27``."""
    what, pct, parts = _parts(record)
    return f"{what}: " + ", ".join(([pct.strip()] if pct else []) + parts)
