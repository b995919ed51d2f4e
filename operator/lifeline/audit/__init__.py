"""The tamper-evident audit trail kept with the backups (see docs/audit.md).

Small modules, one job each:

* :mod:`.chain`     — record shape, canonical bytes and hashes (pure)
* :mod:`.store`     — the append-only log on a repository backend (file://, s3://)
* :mod:`.verify`    — walk the stored log and name the first record that is wrong
* :mod:`.retention` — prune from the start of the chain behind a recorded checkpoint
* :mod:`.sink`      — plugs the store into :func:`lifeline.observability.audit.record`
"""
from .chain import GENESIS, record_hash
from .store import AuditStore, open_store
from .verify import Verification, verify

__all__ = ["GENESIS", "AuditStore", "Verification", "open_store", "record_hash", "verify"]
