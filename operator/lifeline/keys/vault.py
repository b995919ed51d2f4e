"""Vault / OpenBao transit provider: ``vault-transit://<key>?mount=transit``.

Envelope encryption: ``new_data_key`` asks transit for a fresh 256-bit data key
(``POST <mount>/datakey/plaintext/<key>``) and gets it back in the clear *and* wrapped
(``vault:v<N>:...``); the repository stores only the wrapped form. ``unwrap`` sends the
wrapped form to ``<mount>/decrypt/<key>``. The key-encryption key never leaves Vault.

Reference query parameters (all optional; the reference is recorded in the repository,
so it never holds a secret):

* ``mount`` — transit mount path (default ``transit``)
* ``addr`` — Vault address (default: env ``VAULT_ADDR`` / ``BAO_ADDR``)
* ``namespace`` — Vault Enterprise namespace (default: env ``VAULT_NAMESPACE`` / ``BAO_NAMESPACE``)
* ``auth`` — ``token`` | ``approle`` | ``kubernetes`` (default: env ``LIFELINE_VAULT_AUTH``, else
  ``kubernetes`` when ``role`` is given, ``approle`` when ``VAULT_ROLE_ID`` is set, else ``token``)
* ``role`` — Kubernetes auth role (or env ``LIFELINE_VAULT_ROLE``)
* ``auth_mount`` — auth method mount (default ``kubernetes`` / ``approle``)
* ``ca`` — CA bundle path (default: env ``VAULT_CACERT`` / ``BAO_CACERT``)
* ``timeout`` — seconds per request (default 10)

Secrets come from the environment or files only:

* token: ``VAULT_TOKEN`` / ``BAO_TOKEN``, or a file named by ``LIFELINE_VAULT_TOKEN_FILE``
  (a mounted Secret);
* AppRole: ``VAULT_ROLE_ID`` and ``VAULT_SECRET_ID`` (or ``LIFELINE_VAULT_SECRET_ID_FILE``);
* Kubernetes: the projected service-account token at ``LIFELINE_VAULT_SA_TOKEN_PATH``
  (default ``/var/run/secrets/kubernetes.io/serviceaccount/token``).
"""
from __future__ import annotations

import base64
import urllib.parse
from typing import Mapping

from . import register_scheme
from .base import KeyMismatch, KeyProviderError
from .vault_client import (DEFAULT_SA_TOKEN, VaultAuthError, VaultKeyMissing, VaultKeyUnusable,  # noqa: F401
                           VaultPermissionDenied, VaultSession, VaultSettings, VaultUnreachable, check_params,
                           errs)

SCHEME = "vault-transit"
_OWN_PARAMS = frozenset({"mount"})


class TransitRef(VaultSettings):
    """The parsed reference plus the environment-provided settings."""

    def __init__(self, ref: str, env: Mapping[str, str] | None = None):
        p = urllib.parse.urlparse(ref)
        if p.scheme != SCHEME:
            raise KeyProviderError(f"not a {SCHEME}:// reference: {ref!r}")
        key = urllib.parse.unquote(p.netloc + p.path).strip("/")
        if not key or "/" in key:
            raise KeyProviderError(f"key reference {ref!r}: expected {SCHEME}://<key name>?mount=transit")
        if p.username or p.password:
            raise KeyProviderError("do not put credentials in the key reference; use VAULT_TOKEN, "
                                   "LIFELINE_VAULT_TOKEN_FILE, AppRole or Kubernetes auth")
        q = dict(urllib.parse.parse_qsl(p.query, keep_blank_values=True))
        check_params(ref, q, _OWN_PARAMS)
        self.key = key
        self.mount = q.get("mount", "transit").strip("/") or "transit"
        super().__init__(ref, q, env)

    # transit paths, for messages and capability checks
    def path(self, op: str) -> str:
        return {"datakey": f"{self.mount}/datakey/plaintext/{self.key}",
                "decrypt": f"{self.mount}/decrypt/{self.key}",
                "rewrap": f"{self.mount}/rewrap/{self.key}",
                "rotate": f"{self.mount}/keys/{self.key}/rotate",
                "config": f"{self.mount}/keys/{self.key}/config",
                "read": f"{self.mount}/keys/{self.key}"}[op]


_CAPABILITY = {"datakey": "update", "decrypt": "update", "rewrap": "update", "rotate": "update",
               "config": "update", "read": "read"}


class VaultTransitProvider(VaultSession):
    """A :class:`~lifeline.keys.KeyProvider` backed by the transit engine."""

    settings = TransitRef

    def _call(self, fn, path: str, op: str, *, c=None):
        return self.call(fn, path, op, c=c, capability=_CAPABILITY.get(op, "update"))

    def not_found(self, path: str, op: str, exc) -> KeyProviderError:
        cfg = self.cfg
        if "no handler for route" in errs(exc):
            return VaultKeyMissing(
                f"Vault at {cfg.addr} has no transit engine at mount {cfg.mount!r} ({path} has no handler). "
                f"Enable it with: bao secrets enable -path={cfg.mount} transit, or fix ?mount= in the key "
                "reference")
        return VaultKeyMissing(
            f"Vault at {cfg.addr} has no transit key {cfg.key!r} at mount {cfg.mount!r} (or the mount is not "
            f"enabled) — {path}: {errs(exc)}. Create it with: bao write -f {cfg.mount}/keys/{cfg.key} "
            "type=aes256-gcm96")

    def invalid(self, path: str, op: str, exc) -> KeyProviderError:
        cfg = self.cfg
        msg = errs(exc)
        low = msg.lower()
        if "not found" in low or "no existing key" in low:
            return self.not_found(path, op, exc)
        if "too old" in low or "disallowed by policy" in low or "min_decryption_version" in low or \
                "archived" in low:
            return KeyMismatch(f"Vault transit key {cfg.key!r} refuses to decrypt this wrapped data key: {msg}. "
                               "Its version was retired (min_decryption_version) or destroyed")
        if "not supported" in low or "does not support" in low or "convergent" in low or "context" in low or "derived" in low:
            return VaultKeyUnusable(
                f"Vault transit key {cfg.key!r} at {cfg.mount!r} cannot be used for data keys: {msg}. Use a "
                "key of type aes256-gcm96 (or chacha20-poly1305) without derivation")
        if "decrypt" in low or "cipher" in low or "authentication" in low:
            return KeyMismatch(f"Vault transit key {cfg.key!r} could not unwrap this data key ({msg}): "
                               "was it wrapped by another key?")
        return KeyProviderError(f"Vault at {cfg.addr} rejected {path}: {msg}")

    # --- KeyProvider ---------------------------------------------------------------------
    def new_data_key(self) -> tuple[bytes, bytes]:
        c = self.client()
        cfg = self.cfg
        r = self._call(lambda: c.secrets.transit.generate_data_key(
            name=cfg.key, key_type="plaintext", bits=256, mount_point=cfg.mount),
            cfg.path("datakey"), "datakey")
        data = r["data"]
        dek = base64.b64decode(data["plaintext"])
        if len(dek) != 32:
            raise VaultKeyUnusable(f"Vault returned a {len(dek)}-byte data key; expected 32")
        return dek, data["ciphertext"].encode()

    def unwrap(self, wrapped: bytes) -> bytes:
        if not wrapped.startswith(b"vault:v"):
            raise KeyMismatch(f"this data key was not wrapped by Vault transit (use the key provider the "
                              f"repository was created with, not {self.ref})")
        c = self.client()
        cfg = self.cfg
        r = self._call(lambda: c.secrets.transit.decrypt_data(
            name=cfg.key, ciphertext=wrapped.decode(), mount_point=cfg.mount), cfg.path("decrypt"), "decrypt")
        dek = base64.b64decode(r["data"]["plaintext"])
        if len(dek) != 32:
            raise KeyMismatch("the unwrapped data key is not 32 bytes: wrapped by another kind of key?")
        return dek

    # --- rotation helpers ------------------------------------------------------------------
    @staticmethod
    def version_of(wrapped: bytes) -> int:
        try:
            return int(wrapped.split(b":", 2)[1][1:])
        except (IndexError, ValueError):
            raise KeyMismatch("not a Vault transit ciphertext") from None

    def rewrap(self, wrapped: bytes) -> bytes:
        c = self.client()
        cfg = self.cfg
        r = self._call(lambda: c.secrets.transit.rewrap_data(
            name=cfg.key, ciphertext=wrapped.decode(), mount_point=cfg.mount), cfg.path("rewrap"), "rewrap")
        return r["data"]["ciphertext"].encode()

    def rotate(self) -> int:
        c = self.client()
        cfg = self.cfg
        self._call(lambda: c.secrets.transit.rotate_key(name=cfg.key, mount_point=cfg.mount),
                   cfg.path("rotate"), "rotate")
        return self.key_info()["latest_version"]

    def key_info(self) -> dict:
        c = self.client()
        cfg = self.cfg
        r = self._call(lambda: c.secrets.transit.read_key(name=cfg.key, mount_point=cfg.mount),
                       cfg.path("read"), "read")
        return r["data"]

    def set_min_decryption_version(self, version: int) -> None:
        c = self.client()
        cfg = self.cfg
        self._call(lambda: c.secrets.transit.update_key_configuration(
            name=cfg.key, min_decryption_version=version, mount_point=cfg.mount), cfg.path("config"), "config")


def _factory(ref: str) -> VaultTransitProvider:
    return VaultTransitProvider(ref)


register_scheme(SCHEME, _factory)
