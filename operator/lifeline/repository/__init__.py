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
from lifeline.errors import LifelineError

from .backend import S3Options, open_backend
from .layout import FORMAT_VERSION
from .repo import Repository

__all__ = ["FORMAT_VERSION", "LifelineError", "Repository", "S3Options", "open_backend"]
