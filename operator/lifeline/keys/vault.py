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
import logging
import os
import threading
import time
import urllib.parse
from typing import Callable, Mapping

from . import register_scheme
from .base import KeyMismatch, KeyProviderError

log = logging.getLogger("lifeline.keys.vault")

SCHEME = "vault-transit"
DEFAULT_SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
_KNOWN_PARAMS = {"mount", "addr", "namespace", "auth", "role", "auth_mount", "ca", "timeout"}


class VaultUnreachable(KeyProviderError):
    """Vault could not be reached (network, DNS, TLS, sealed, 5xx after retries)."""


class VaultPermissionDenied(KeyProviderError):
    def __init__(self, message: str, *, path: str, capability: str):
        super().__init__(message)
        self.path = path
        self.capability = capability


class VaultKeyMissing(KeyProviderError):
    pass


class VaultKeyUnusable(KeyProviderError):
    pass


class VaultAuthError(KeyProviderError):
    pass


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for n in names:
        v = env.get(n)
        if v:
            return v
    return None


def _read_secret_file(path: str, what: str) -> str:
    try:
        with open(path) as f:
            value = f.read().strip()
    except FileNotFoundError:
        raise VaultAuthError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise VaultAuthError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if not value:
        raise VaultAuthError(f"{what} file {path} is empty")
    return value


class TransitRef:
    """The parsed reference plus the environment-provided settings."""

    def __init__(self, ref: str, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
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
        unknown = set(q) - _KNOWN_PARAMS
        if unknown:
            raise KeyProviderError(f"key reference {ref!r}: unknown parameter(s) {', '.join(sorted(unknown))} "
                                   f"(known: {', '.join(sorted(_KNOWN_PARAMS))})")
        self.ref = ref
        self.key = key
        self.mount = q.get("mount", "transit").strip("/") or "transit"
        self.addr = (q.get("addr") or _env(env, "VAULT_ADDR", "BAO_ADDR") or "").rstrip("/")
        if not self.addr:
            raise KeyProviderError(f"no Vault address for {ref!r}: set VAULT_ADDR (e.g. "
                                   "https://vault.example:8200) or add ?addr=... to the key reference")
        self.namespace = q.get("namespace") or _env(env, "VAULT_NAMESPACE", "BAO_NAMESPACE")
        self.ca = q.get("ca") or _env(env, "VAULT_CACERT", "BAO_CACERT")
        try:
            self.timeout = float(q.get("timeout") or env.get("LIFELINE_VAULT_TIMEOUT") or 10)
        except ValueError:
            raise KeyProviderError(f"key reference {ref!r}: timeout must be a number of seconds") from None
        self.retries = int(env.get("LIFELINE_VAULT_RETRIES") or 4)
        self.role = q.get("role") or env.get("LIFELINE_VAULT_ROLE")
        auth = q.get("auth") or env.get("LIFELINE_VAULT_AUTH")
        if not auth:
            auth = "kubernetes" if self.role else ("approle" if env.get("VAULT_ROLE_ID") else "token")
        if auth not in ("token", "approle", "kubernetes"):
            raise KeyProviderError(f"key reference {ref!r}: auth must be token, approle or kubernetes")
        self.auth = auth
        self.auth_mount = (q.get("auth_mount") or auth).strip("/")
        self.env = env

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


class VaultTransitProvider:
    """A :class:`~lifeline.keys.KeyProvider` backed by the transit engine."""

    def __init__(self, ref: str, *, env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, client_factory=None):
        self.cfg = TransitRef(ref, env)
        self.ref = ref
        self._sleep = sleep
        self._client_factory = client_factory
        self._client = None
        self._lock = threading.RLock()
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self.identity: str | None = None  # display name of the token (for audit records)

    # --- client and authentication -----------------------------------------------------
    def _new_client(self):
        import hvac

        cfg = self.cfg
        verify = cfg.ca if cfg.ca else True
        if cfg.ca and not os.path.exists(cfg.ca):
            raise KeyProviderError(f"Vault CA bundle {cfg.ca} does not exist (VAULT_CACERT or ?ca=)")
        factory = self._client_factory or hvac.Client
        return factory(url=cfg.addr, verify=verify, timeout=cfg.timeout, namespace=cfg.namespace)

    def client(self):
        with self._lock:
            if self._client is None:
                c = self._new_client()
                self._login(c)
                self._client = c
                self._start_renewer()
            return self._client

    def _login(self, c) -> None:
        cfg = self.cfg
        if cfg.auth == "token":
            token = _env(cfg.env, "VAULT_TOKEN", "BAO_TOKEN")
            if not token and cfg.env.get("LIFELINE_VAULT_TOKEN_FILE"):
                token = _read_secret_file(cfg.env["LIFELINE_VAULT_TOKEN_FILE"], "Vault token")
            if not token:
                raise VaultAuthError(
                    f"no Vault token for {cfg.ref}: set VAULT_TOKEN, or LIFELINE_VAULT_TOKEN_FILE to a file "
                    "holding one, or use AppRole (VAULT_ROLE_ID/VAULT_SECRET_ID) or Kubernetes auth (?role=)")
            c.token = token
            return
        if cfg.auth == "approle":
            role_id = cfg.env.get("VAULT_ROLE_ID")
            secret_id = cfg.env.get("VAULT_SECRET_ID")
            if not secret_id and cfg.env.get("LIFELINE_VAULT_SECRET_ID_FILE"):
                secret_id = _read_secret_file(cfg.env["LIFELINE_VAULT_SECRET_ID_FILE"], "AppRole secret id")
            if not role_id or not secret_id:
                raise VaultAuthError("AppRole auth needs VAULT_ROLE_ID and VAULT_SECRET_ID "
                                     "(or LIFELINE_VAULT_SECRET_ID_FILE)")
            where = f"auth/{cfg.auth_mount}/login"
            self._call(lambda: c.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                                    mount_point=cfg.auth_mount), where, "login", c=c)
            return
        # kubernetes
        if not cfg.role:
            raise VaultAuthError("Kubernetes auth needs a role: add ?role=<vault role> to the key reference "
                                 "or set LIFELINE_VAULT_ROLE")
        jwt_path = cfg.env.get("LIFELINE_VAULT_SA_TOKEN_PATH") or DEFAULT_SA_TOKEN
        jwt = _read_secret_file(jwt_path, "service-account token")
        where = f"auth/{cfg.auth_mount}/login"
        self._call(lambda: c.auth.kubernetes.login(role=cfg.role, jwt=jwt, mount_point=cfg.auth_mount),
                   where, "login", c=c)

    def _start_renewer(self) -> None:
        """Keep the token alive for long backups: renew at half its TTL while the process runs."""
        c = self._client
        try:
            info = c.auth.token.lookup_self()["data"]
        except Exception:  # noqa: BLE001 - lookup may be denied; renewal is best effort
            return
        self.identity = info.get("display_name") or info.get("entity_id") or None
        ttl = int(info.get("ttl") or 0)
        if ttl <= 0 or not info.get("renewable"):
            return

        def loop(ttl=ttl):
            while not self._stop.wait(max(1.0, ttl / 2)):
                try:
                    r = c.auth.token.renew_self()
                    ttl = int(r["auth"]["lease_duration"] or ttl)
                    log.debug("renewed Vault token, ttl %ss", ttl)
                except Exception as exc:  # noqa: BLE001
                    log.warning("could not renew the Vault token (%s); will log in again on next use",
                                type(exc).__name__)
                    with self._lock:
                        self._client = None
                    return

        self._renewer = threading.Thread(target=loop, name="vault-token-renewer", daemon=True)
        self._renewer.start()

    def close(self) -> None:
        self._stop.set()

    # --- calls with retries and clear errors ------------------------------------------
    def _call(self, fn, path: str, op: str, *, c=None):
        import hvac.exceptions as hx
        import requests

        cfg = self.cfg
        delay = 0.2
        for attempt in range(1, max(1, cfg.retries) + 1):
            try:
                return fn()
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if isinstance(exc, requests.exceptions.SSLError):
                    raise VaultUnreachable(
                        f"TLS to Vault at {cfg.addr} failed ({_short(exc)}): set VAULT_CACERT (or ?ca=) to the "
                        "CA bundle that signed Vault's certificate") from None
                last = VaultUnreachable(
                    f"cannot reach Vault at {cfg.addr} ({_short(exc)}) after {attempt} attempt(s): check VAULT_ADDR "
                    "(or ?addr= in the key reference), the network path and that Vault is running")
            except (hx.VaultDown, hx.InternalServerError, hx.BadGateway, hx.RateLimitExceeded) as exc:
                sealed = isinstance(exc, hx.VaultDown)
                last = VaultUnreachable(
                    f"Vault at {cfg.addr} is {'sealed or in standby' if sealed else 'failing'} "
                    f"({_errs(exc)}) after {attempt} attempt(s)")
            except hx.Forbidden as exc:
                raise self._denied(path, op, exc, c) from None
            except hx.InvalidPath as exc:
                raise self._not_found(path, op, exc) from None
            except hx.InvalidRequest as exc:
                if op == "login":
                    raise self._denied(path, op, exc, c) from None
                raise self._invalid(path, op, exc) from None
            except hx.Unauthorized as exc:
                raise VaultAuthError(f"Vault at {cfg.addr} refused the credentials for {path} "
                                     f"({_errs(exc)})") from None
            except hx.VaultError as exc:
                raise KeyProviderError(f"Vault at {cfg.addr} answered {path} with an error: {_errs(exc)}") from None
            if attempt < cfg.retries:
                self._sleep(delay)
                delay = min(delay * 2.5, 5.0)
        raise last

    def _denied(self, path: str, op: str, exc, c) -> KeyProviderError:
        cfg = self.cfg
        if op == "login":
            role = f" role {cfg.role!r}" if cfg.role else ""
            return VaultAuthError(f"Vault refused the {cfg.auth} login at {path}{role}: {_errs(exc)}. Check "
                                  "the role's bound service account/namespace (Kubernetes) or the "
                                  "role id/secret id (AppRole)")
        if path == "sys/capabilities-self":
            return VaultAuthError(f"Vault at {cfg.addr} rejected the token ({_errs(exc)}): it is invalid, "
                                  "expired or revoked; provide a fresh one")
        need = _CAPABILITY[op]
        have = ""
        try:
            client = c or self._client
            data = client.adapter.post("/v1/sys/capabilities-self", json={"paths": [path]})
            if not isinstance(data, dict):
                data = data.json()
            data = data.get("data", data)
            have = ", ".join(data.get(path) or data.get("capabilities") or [])
        except Exception:  # noqa: BLE001 - best effort detail only
            pass
        have_txt = f" (this token has: {have})" if have else ""
        ns = f" in namespace {cfg.namespace!r}" if cfg.namespace else ""
        return VaultPermissionDenied(
            f"permission denied by Vault at {cfg.addr}{ns}: the token's policy lacks the {need!r} capability "
            f"on path {path!r}{have_txt}. Add to its policy: path \"{path}\" {{ capabilities = [\"{need}\"] }}",
            path=path, capability=need)

    def _not_found(self, path: str, op: str, exc) -> KeyProviderError:
        cfg = self.cfg
        if "no handler for route" in _errs(exc):
            return VaultKeyMissing(
                f"Vault at {cfg.addr} has no transit engine at mount {cfg.mount!r} ({path} has no handler). "
                f"Enable it with: bao secrets enable -path={cfg.mount} transit, or fix ?mount= in the key "
                "reference")
        return VaultKeyMissing(
            f"Vault at {cfg.addr} has no transit key {cfg.key!r} at mount {cfg.mount!r} (or the mount is not "
            f"enabled) — {path}: {_errs(exc)}. Create it with: bao write -f {cfg.mount}/keys/{cfg.key} "
            "type=aes256-gcm96")

    def _invalid(self, path: str, op: str, exc) -> KeyProviderError:
        cfg = self.cfg
        msg = _errs(exc)
        low = msg.lower()
        if "not found" in low or "no existing key" in low:
            return self._not_found(path, op, exc)
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

    def capabilities(self, paths: list[str]) -> dict[str, list[str]]:
        c = self.client()
        r = self._call(lambda: c.adapter.post("/v1/sys/capabilities-self", json={"paths": paths}),
                       "sys/capabilities-self", "read")
        data = r if isinstance(r, dict) else r.json()
        data = data.get("data", data)
        return {p: list(data.get(p, [])) for p in paths}


def _errs(exc) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(str(e) for e in errors)
    return str(exc) or type(exc).__name__


def _short(exc) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host",
                   "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def _factory(ref: str) -> VaultTransitProvider:
    return VaultTransitProvider(ref)


register_scheme(SCHEME, _factory)
