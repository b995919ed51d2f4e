"""How a tree's text writes a value: one definition for the tree's writer and for what renders an
entry's beginning ahead of it (a backup's read-ahead helper, which imports nothing else of the
repository's)."""
from __future__ import annotations

import json

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)  # json.dumps(..., these) per entry


def entry_text(value) -> str:
    """``value`` as a tree's text holds it (an entry, or a string in one): compact ASCII JSON."""
    return _ENCODER.encode(value)
