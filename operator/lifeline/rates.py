"""Transfer rates as people write them (``50MiB``, ``800KiB``, ``2M``, ``1.5GB/s``): bytes per second.

Below the API models, the job plans and the storage layer alike: a BackupPolicy destination's
``bandwidth`` is checked with :data:`PATTERN` and :func:`parse_rate`, the plan carries the text, the
agent's ``--limit-upload`` / ``--limit-download`` parse it (docs/storage.md, "Bandwidth").

Units: none or ``B`` (bytes); ``k``/``K``/``KB``, ``M``/``MB``, ``G``/``GB`` (powers of 1000);
``Ki``/``KiB``, ``Mi``/``MiB``, ``Gi``/``GiB`` (powers of 1024); an optional ``/s``. Always bytes,
never bits: a link of 100 Mbit/s carries about ``12MB``.
"""
from __future__ import annotations

import re

# What the CRD's schema checks too (the API server refuses anything else before the operator sees it).
PATTERN = r"^[0-9]+(\.[0-9]+)?([kKMG]i?B?|B)?(/s)?$"
MIN_RATE = 1024  # bytes per second: anything slower would never finish a backup
MAX_RATE = 1 << 40

_UNITS = {"": 1, "B": 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3,
          "ki": 1024, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}
_RATE = re.compile(r"(?P<number>[0-9]+(\.[0-9]+)?)(?P<unit>[kKMG]i?B?|B)?(/s)?")


def parse_rate(text: str) -> int:
    """Bytes per second; ValueError saying what is wrong (and what is right)."""
    raw = str(text).strip()
    m = _RATE.fullmatch(raw)
    if m is None:
        raise ValueError(f"{raw!r} is not a rate: write bytes per second, for example 50MiB, 800KiB or 12MB")
    unit = m.group("unit") or ""
    if unit != "B":
        unit = unit.removesuffix("B")
    value = int(float(m.group("number")) * _UNITS[unit])
    if value < MIN_RATE:
        raise ValueError(f"{raw!r} is {value} bytes per second: at least {MIN_RATE} (1KiB), or leave the limit out")
    if value > MAX_RATE:
        raise ValueError(f"{raw!r} is more than 1TiB per second: leave the limit out instead")
    return value


def format_rate(value: float) -> str:
    """``52428800`` -> ``50MiB/s``: the largest binary unit that keeps one decimal at most."""
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if value >= size:
            return f"{value / size:.1f}".removesuffix(".0") + f"{unit}/s"
    return f"{int(value)}B/s"
