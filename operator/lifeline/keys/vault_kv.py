"""Vault / OpenBao KV provider: ``vault-kv://<path>?mount=secret&field=key`` — the weaker choice.

For teams that insist on a stored key: the KV secret's ``field`` holds a 256-bit
key-encryption key (64 hex digits, or base64 of 32 bytes) that this process reads and
uses to wrap each epoch's data key locally with AES-256-GCM. Unlike transit, the key
leaves Vault: whoever can read the secret can unwrap every data key wrapped under it.

Wrapped form (stored in ``keys/<epoch>``, no key material)::

    lifeline-kv:v<N>:<base64(nonce 12 | AES-GCM(data key))>

``N`` is the KV version whose key wrapped it (``0`` on a KV v1 mount), and the AES-GCM
associated data binds mount, path, field and version, so a data key wrapped under
another secret is named as such. Semantics per KV version:

* rotation (``lifeline keys rotate``, KV v2 only) writes a new random key as a new version
  (check-and-set, other fields of the secret kept); new epochs wrap under the newest version;
  old epochs keep naming the version that wrapped them until rewrapped;
* retiring (``--min-decryption-version N``) *destroys* versions below N (``kv destroy``,
  irreversible — refused while an epoch still needs one);
* shredding a version (``lifeline keys shred --destroy-key-version``) destroys the version an
  epoch was wrapped under, refused while another epoch of the repository still needs it.

Parameters: ``mount`` (default ``secret``), ``field`` (default ``key``), ``kv`` (``2`` default,
or ``1``), plus the common Vault ones (:mod:`.vault_client`).
"""
from __future__ import annotations

import base64
import binascii
import os
import secrets
import urllib.parse
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import register_scheme
from .base import KeyMismatch, KeyProviderError
from .vault_client import (VaultKeyMissing, VaultKeyUnusable, VaultSession, VaultSettings, check_params,
                          errs)

SCHEME = "vault-kv"
PREFIX = b"lifeline-kv:v"
_OWN_PARAMS = frozenset({"mount", "field", "kv"})


class VaultKeyDestroyed(KeyMismatch):
    """The KV version that wrapped a data key was destroyed (or deleted): crypto-shredded."""


class KVRef(VaultSettings):
    def __init__(self, ref: str, env: Mapping[str, str] | None = None):
        p = urllib.parse.urlparse(ref)
        if p.scheme != SCHEME:
            raise KeyProviderError(f"not a {SCHEME}:// reference: {ref!r}")
        if p.username or p.password:
            raise KeyProviderError("do not put credentials in the key reference; use VAULT_TOKEN, "
                                   "LIFELINE_VAULT_TOKEN_FILE, AppRole or Kubernetes auth")
        path = urllib.parse.unquote(p.netloc + p.path).strip("/")
        if not path or ".." in path.split("/"):
            raise KeyProviderError(f"key reference {ref!r}: expected {SCHEME}://<secret path>?mount=secret&field=key")
        q = dict(urllib.parse.parse_qsl(p.query, keep_blank_values=True))
        check_params(ref, q, _OWN_PARAMS)
        self.path = path
        self.mount = q.get("mount", "secret").strip("/") or "secret"
        self.field = q.get("field") or "key"
        self.kv = q.get("kv") or "2"
        if self.kv not in ("1", "2"):
            raise KeyProviderError(f"key reference {ref!r}: kv must be 1 or 2")
        super().__init__(ref, q, env)

    @property
    def v2(self) -> bool:
        return self.kv == "2"

    @property
    def data_path(self) -> str:
        return f"{self.mount}/data/{self.path}" if self.v2 else f"{self.mount}/{self.path}"

    @property
    def metadata_path(self) -> str:
        return f"{self.mount}/metadata/{self.path}"

    @property
    def destroy_path(self) -> str:
        return f"{self.mount}/destroy/{self.path}"

    def aad(self, version: int) -> bytes:
        return f"lifeline vault-kv v1|{self.mount}|{self.path}|{self.field}|{version}".encode()


def parse_key(value, where: str) -> bytes:
    """The 32-byte key from a field's text (64 hex digits or base64); errors say what is wrong, never the value."""
    if not isinstance(value, str) or not value.strip():
        raise VaultKeyUnusable(f"field {where} is empty or not text: it must hold a 256-bit key as 64 hex "
                               "digits (e.g. `openssl rand -hex 32`)")
    text = value.strip()
    key = b""
    if len(text) == 64:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
    if not key:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
    if len(key) != 32:
        raise VaultKeyUnusable(f"field {where} does not hold a 256-bit key ({len(text)} characters, "
                               f"{len(key) or 'no'} decodable bytes): it must be 64 hex digits or the base64 of "
                               "32 bytes; write one with `openssl rand -hex 32`")
    return key


def _read_version(c, cfg: KVRef, version: int | None) -> dict:
    """KV v2 read that returns (rather than raises) the 404 of a deleted or destroyed version."""
    import hvac.exceptions as hx

    try:
        return c.secrets.kv.v2.read_secret_version(path=cfg.path, version=version, mount_point=cfg.mount,
                                                   raise_on_deleted_version=True)
    except hx.InvalidPath as exc:
        body = getattr(exc, "json", None)
        meta = ((body or {}).get("data") or {}).get("metadata") if isinstance(body, dict) else None
        if meta and (meta.get("destroyed") or meta.get("deletion_time")):
            return body
        raise


class VaultKVProvider(VaultSession):
    """A :class:`~lifeline.keys.KeyProvider` whose key-encryption key is a KV secret field."""

    settings = KVRef

    def __init__(self, ref: str, **options):
        super().__init__(ref, **options)
        self._keys: dict[int, bytes] = {}  # version -> key, for this process only

    # --- errors ---------------------------------------------------------------------------
    def not_found(self, path: str, op: str, exc) -> KeyProviderError:
        cfg = self.cfg
        if "no handler for route" in errs(exc):
            return VaultKeyMissing(
                f"Vault at {cfg.addr} has no KV engine at mount {cfg.mount!r} ({path} has no handler). Enable "
                f"it with: bao secrets enable -path={cfg.mount} -version={cfg.kv} kv, or fix ?mount=")
        return VaultKeyMissing(
            f"Vault at {cfg.addr} has no KV secret at {path!r}. Write one with: bao kv put -mount={cfg.mount} "
            f"{cfg.path} {cfg.field}=$(openssl rand -hex 32)")

    # --- reading the key -------------------------------------------------------------------
    def _read(self, version: int | None) -> tuple[int, bytes]:
        """(version, key) — the latest when ``version`` is None."""
        if version is not None and version in self._keys:
            return version, self._keys[version]
        c = self.client()
        cfg = self.cfg
        where = cfg.data_path
        if cfg.v2:
            r = self.call(lambda: _read_version(c, cfg, version or None), where, "read", capability="read")
            data = (r or {}).get("data") or {}
            meta = data.get("metadata") or {}
            got = int(meta.get("version") or version or 0)
            fields = data.get("data")
            if fields is None:
                state = "destroyed" if meta.get("destroyed") else "deleted"
                when = f" at {meta['deletion_time']}" if meta.get("deletion_time") else ""
                raise VaultKeyDestroyed(
                    f"version {got} of KV secret {where!r} was {state}{when}: the data keys wrapped under it "
                    "are gone (crypto-shredded)" + ("" if state == "destroyed" else
                                                    f"; `bao kv undelete -mount={cfg.mount} -versions={got} "
                                                    f"{cfg.path}` brings a deleted version back"))
        else:
            if version:
                raise KeyMismatch(f"this data key was wrapped under version {version} of a KV v2 secret, but "
                                  f"{cfg.ref} names a KV v1 mount (kv=1)")
            r = self.call(lambda: c.secrets.kv.v1.read_secret(path=cfg.path, mount_point=cfg.mount),
                          where, "read", capability="read")
            fields, got = (r or {}).get("data") or {}, 0
        if cfg.field not in fields:
            have = ", ".join(sorted(fields)) or "none"
            raise VaultKeyMissing(f"KV secret {where!r} (version {got}) has no field {cfg.field!r} (fields: {have}); "
                                  f"set ?field= in the key reference or write the key into field {cfg.field!r}")
        key = parse_key(fields[cfg.field], f"{cfg.field!r} of KV secret {where!r} (version {got})")
        self._keys[got] = key
        return got, key

    # --- KeyProvider ------------------------------------------------------------------------
    def new_data_key(self) -> tuple[bytes, bytes]:
        version, kek = self._read(None)
        dek = os.urandom(32)
        nonce = os.urandom(12)
        sealed = AESGCM(kek).encrypt(nonce, dek, self.cfg.aad(version))
        return dek, PREFIX + str(version).encode() + b":" + base64.b64encode(nonce + sealed)

    def unwrap(self, wrapped: bytes) -> bytes:
        version = self.version_of(wrapped)
        body = base64.b64decode(wrapped.split(b":", 2)[2])
        _v, kek = self._read(version if self.cfg.v2 else None)
        try:
            dek = AESGCM(kek).decrypt(body[:12], body[12:], self.cfg.aad(version))
        except InvalidTag:
            raise KeyMismatch(f"this data key does not open with version {version} of KV secret "
                              f"{self.cfg.data_path!r} field {self.cfg.field!r}: it was wrapped under another "
                              "secret (mount/path/field), or the key at that version was overwritten") from None
        return dek

    # --- rotation / retirement / shredding --------------------------------------------------
    def version_of(self, wrapped: bytes) -> int:
        if not wrapped.startswith(PREFIX):
            raise KeyMismatch(f"this data key was not wrapped by a Vault KV key (use the key provider the "
                              f"repository was created with, not {self.ref})")
        try:
            return int(wrapped[len(PREFIX):].split(b":", 1)[0])
        except ValueError:
            raise KeyMismatch("damaged Vault KV wrapped key (no version)") from None

    def _need_v2(self, what: str) -> None:
        if not self.cfg.v2:
            raise KeyProviderError(f"{what} needs KV versions, which a KV v1 mount does not have: move the key to "
                                   f"a KV v2 mount (bao secrets enable -version=2 kv) or use vault-transit://")

    def key_info(self) -> dict:
        if not self.cfg.v2:
            return {"latest_version": 0}
        version, _ = self._read(None)
        return {"latest_version": version}

    def rotate(self) -> int:
        """Write a fresh random key as a new KV version (check-and-set; other fields kept)."""
        self._need_v2("rotating a vault-kv key")
        c = self.client()
        cfg = self.cfg
        r = self.call(lambda: _read_version(c, cfg, None), cfg.data_path, "read", capability="read")
        data = (r or {}).get("data") or {}
        current = int((data.get("metadata") or {}).get("version") or 0)
        fields = dict(data.get("data") or {})
        fields[cfg.field] = secrets.token_hex(32)
        w = self.call(lambda: c.secrets.kv.v2.create_or_update_secret(
            path=cfg.path, secret=fields, cas=current, mount_point=cfg.mount), cfg.data_path, "write",
            capability="update")
        return int(w["data"]["version"])

    def rewrap(self, wrapped: bytes) -> bytes:
        """Unwrap under its own version, wrap under the newest (the data key stays in this process)."""
        dek = self.unwrap(wrapped)
        version, kek = self._read(None)
        nonce = os.urandom(12)
        return PREFIX + str(version).encode() + b":" + base64.b64encode(
            nonce + AESGCM(kek).encrypt(nonce, dek, self.cfg.aad(version)))

    def destroy_versions(self, versions: list[int]) -> None:
        """``kv destroy``: the key at these versions is gone for good (needs ``update`` on the destroy path)."""
        self._need_v2("destroying a vault-kv key version")
        if not versions:
            return
        c = self.client()
        cfg = self.cfg
        self.call(lambda: c.secrets.kv.v2.destroy_secret_versions(
            path=cfg.path, versions=sorted(versions), mount_point=cfg.mount), cfg.destroy_path, "destroy",
            capability="update")
        for v in versions:
            self._keys.pop(v, None)

    def set_min_decryption_version(self, version: int) -> None:
        """Retire versions below ``version`` — for KV that means destroying them."""
        self.destroy_versions(list(range(1, version)))


def _factory(ref: str) -> VaultKVProvider:
    return VaultKVProvider(ref)


register_scheme(SCHEME, _factory)
