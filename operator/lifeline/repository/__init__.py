"""On-storage format of Lifeline repositories (see docs/repository-format.md).

Small modules, one job each:

* :mod:`.layout`   — object names and constants (format version)
* :mod:`.backend`, :mod:`.backend_file`, :mod:`.backend_s3` — where bytes live
* :mod:`.chunker`  — content-defined chunking (FastCDC)
* :mod:`.crypto`   — per-epoch keys, keyed chunk ids, sealed blobs (zstd + AES-256-GCM or SM4-GCM)
* :mod:`.pack`     — pack objects
* :mod:`.index`    — index segments
* :mod:`.manifest` — recovery point objects
* :mod:`.locks`    — shared/exclusive locks
* :mod:`.repo`     — the repository that ties them together
"""
from .backend import S3Options, open_backend
from .errors import LifelineError
from .layout import FORMAT_VERSION
from .repo import Repository

__all__ = ["FORMAT_VERSION", "LifelineError", "Repository", "S3Options", "open_backend"]
