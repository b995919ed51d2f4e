"""On-storage format of Lifeline repositories (see docs/repository-format.md).

Small modules, one job each:

* :mod:`.layout`   — object names and constants (format version)
* :mod:`.backend_base` (the interface), :mod:`.backend` (by URL), :mod:`.backend_file`, :mod:`.backend_s3` — where bytes live
* :mod:`.chunker`  — content-defined chunking (FastCDC)
* :mod:`.crypto`   — per-epoch keys, keyed chunk ids, sealed blobs (zstd + AES-256-GCM or SM4-GCM)
* :mod:`.pack`     — pack objects
* :mod:`.index`    — index segments
* :mod:`.blob_saver` — the door for new chunks: packs them, stores packs and their index segment
* :mod:`.manifest` — recovery point objects
* :mod:`.locks`    — shared/exclusive locks
* :mod:`.repo`     — the repository that ties them together
"""
from __future__ import annotations

import importlib

from lifeline.errors import LifelineError

# Imported when first asked for: a process that needs one module of the package (a restore's writer,
# for the keys) does not pay for the backends and the repository (~0.15 s at start).
_FROM = {"S3Options": ".backend", "open_backend": ".backend", "FORMAT_VERSION": ".layout", "Repository": ".repo"}

__all__ = ["FORMAT_VERSION", "LifelineError", "Repository", "S3Options", "open_backend"]


def __getattr__(name: str):
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_FROM[name], __name__), name)
    globals()[name] = value
    return value
