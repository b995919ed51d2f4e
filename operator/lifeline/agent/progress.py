"""A one-line progress display on stderr when it is a terminal."""
from __future__ import annotations

import sys
import threading
import time


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

    def __init__(self, verb: str, *, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.verb = verb
        self.bytes_done = 0
        self.bytes_total: int | None = None
        self.files_done = 0
        self.files_total: int | None = None
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._width = 0

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._draw(final=True)

    def line(self) -> str:
        el = max(time.monotonic() - self.start, 1e-6)
        rate = self.bytes_done / el
        parts = [f"{self.verb} {human_bytes(self.bytes_done)}"]
        if self.bytes_total:
            parts[0] += f" / {human_bytes(self.bytes_total)}"
        files = f"{self.files_done}" + (f"/{self.files_total}" if self.files_total else "")
        parts.append(f"{files} files")
        parts.append(f"{human_bytes(rate)}/s")
        if self.bytes_total and rate > 0 and self.bytes_done < self.bytes_total:
            parts.append(f"ETA {_hms((self.bytes_total - self.bytes_done) / rate)}")
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
        while not self._stop.wait(0.5):
            self._draw()
