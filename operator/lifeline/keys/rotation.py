"""Key rotation: rotate the transit key, rewrap every ``keys/<epoch>`` to its newest version.

Only the small ``keys/<epoch>`` objects are rewritten (each with one atomic put); packs,
index segments and points are never touched, because the data key itself does not
change — only the form in which Vault wraps it. Vault's ``rewrap`` endpoint does this
without the plaintext data key ever leaving Vault.

Order (crash-safe): rotate → rewrap each epoch (the old wrapped form keeps working until
the old version is retired) → only when every epoch is on a version ≥ N, set the key's
``min_decryption_version`` to N.
"""
from __future__ import annotations

import base64
import time

from lifeline.errors import LifelineError, UsageError
from lifeline.repository.repo import Repository, rfc3339

from .base import KeyProviderError


def rotate(repo: Repository, provider, *, rotate_key: bool = True, min_decryption_version: int | None = None,
           actor: str = "", lock_wait: float = 0.0) -> dict:
    if not hasattr(provider, "rewrap"):
        raise UsageError(f"key provider {provider.ref} does not support rotation (use a vault-transit:// or vault-kv:// key)")
    lock = repo.lock(exclusive=True, command="keys rotate", wait=lock_wait)
    try:
        latest = provider.rotate() if rotate_key else provider.key_info()["latest_version"]
        if min_decryption_version is not None and not 1 <= min_decryption_version <= latest:
            raise UsageError(f"--min-decryption-version {min_decryption_version} must be between 1 and the "
                             f"latest version {latest}")
        rewrapped, skipped, versions = [], [], {}
        for epoch in sorted(repo.list_epochs()):
            rec = repo.epoch_record(epoch)
            if rec.get("key_ref") and _key_id(rec["key_ref"]) != _key_id(provider.ref):
                skipped.append({"epoch": epoch, "key_ref": rec["key_ref"]})
                continue
            old = base64.b64decode(rec["wrapped"])
            before = provider.version_of(old)
            if before >= latest:
                versions[epoch] = before
                continue
            new = provider.rewrap(old)
            rec = {**rec, "wrapped": base64.b64encode(new).decode(), "rewrapped_at": rfc3339(time.time()),
                   "rewrapped_by": actor, "rewrapped_from_version": before}
            repo.write_epoch_record(epoch, rec)  # over keys/<epoch>; beside it in an immutable repository
            versions[epoch] = provider.version_of(new)
            rewrapped.append({"epoch": epoch, "from_version": before, "to_version": versions[epoch]})
        result = {"key_ref": provider.ref, "latest_version": latest, "rewrapped": rewrapped,
                  "epochs": len(versions), "skipped": skipped, "min_decryption_version": None,
                  "actor": actor, "time": rfc3339(time.time())}
        if min_decryption_version is not None:
            low = {e: v for e, v in versions.items() if v < min_decryption_version}
            if low:
                raise KeyProviderError(f"not retiring versions below {min_decryption_version}: epochs "
                                       f"{', '.join(sorted(low))} are still wrapped under older versions")
            provider.set_min_decryption_version(min_decryption_version)
            result["min_decryption_version"] = min_decryption_version
        return result
    finally:
        lock.release()


def _key_id(ref: str) -> tuple:
    """What names the key-encryption key: (mount, key) for transit, (mount, path, field) for KV."""
    import urllib.parse

    p = urllib.parse.urlparse(ref)
    q = dict(urllib.parse.parse_qsl(p.query))
    if p.scheme == "vault-kv":
        return ("kv", q.get("mount", "secret").strip("/"), (p.netloc + p.path).strip("/"), q.get("field") or "key")
    if p.scheme != "vault-transit":
        return (ref,)
    return (q.get("mount", "transit").strip("/"), (p.netloc + p.path).strip("/"))


class RotationError(LifelineError):
    exit_code = 4
