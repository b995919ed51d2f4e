"""The key that seals a Restore's approval records (:func:`lifeline.planning.restore.seal`).

Only the operator holds it, and every replica the same one, so it is derived from the admission
webhook's TLS private key, which every replica mounts and nothing else needs to read. Without a
certificate directory (kopf makes a throwaway certificate in that process) the key is a random one
of this process: the records it sealed count only until it stops, like its certificate. When the
webhook's key is rotated, approvals still pending must be given again (the Restore says so).
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

_LABEL = b"lifeline restore approvals seal v1\0"
_PROCESS = secrets.token_bytes(32)


def seal_key(options) -> bytes:
    cert_dir = getattr(options, "webhook_cert_dir", None)
    material = _PROCESS
    if cert_dir:
        try:
            material = (Path(cert_dir) / "tls.key").read_bytes()
        except OSError:
            pass
    return hashlib.sha256(_LABEL + material).digest()


__all__ = ["seal_key"]
