"""The key that seals a Restore's approval records (:func:`lifeline.planning.restore.seal`), a point's shred
records, and a resources BackupPolicy's record of the kinds its author was checked for
(:func:`lifeline.planning.objects_reader.seal`).

Only the operator holds it, and every replica the same one, so it is derived from the admission
webhook's TLS private key, which every replica mounts and nothing else needs to read. Without a
certificate directory (kopf makes a throwaway certificate in that process) the key is a random one
of this process: the records it sealed count only until it stops, like its certificate. When the
webhook's key is rotated, approvals still pending must be given again (the Restore says so); an
objects Restore pending then must be created again (the kinds its requester was checked for cannot
be told from a forged record any more: it fails to start, ``KindsNotChecked``), and every resources
BackupPolicy backs up nothing (``KindsNotChecked``) until it is applied again. So renewals keep the
private key (the chart's cert-manager Certificate says ``rotationPolicy: Never``; the Helm-made one is
reused): the key changes only when someone rotates it on purpose.
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

_LABEL = b"lifeline restore approvals seal v1\0"
_PROCESS = secrets.token_bytes(32)


_derived: dict[tuple, bytes] = {}  # (path, mtime, size) -> key: a stat per call, a read per rotation


def seal_key(options) -> bytes:
    """Called on every Restore reconcile and approval: the key file is read again only when it changed."""
    cert_dir = getattr(options, "webhook_cert_dir", None)
    if cert_dir:
        path = Path(cert_dir) / "tls.key"
        try:
            st = path.stat()
            stamp = (str(path), st.st_mtime_ns, st.st_size)
            if stamp not in _derived:
                _derived.clear()
                _derived[stamp] = hashlib.sha256(_LABEL + path.read_bytes()).digest()
            return _derived[stamp]
        except OSError:
            pass
    return hashlib.sha256(_LABEL + _PROCESS).digest()


__all__ = ["seal_key"]
