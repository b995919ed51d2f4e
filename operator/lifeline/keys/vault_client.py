"""What every Vault-backed key provider shares: settings, login, renewal, retries and errors.

A provider (transit, KV) parses its own part of the reference (mount, key or path) and
hands the rest of the query to :class:`VaultSettings`; :class:`VaultSession` then gives it
an authenticated hvac client and :meth:`VaultSession.call`, which retries transient
failures with backoff and turns every other Vault answer into an error that says what
to fix. Providers override :meth:`VaultSession.not_found` and :meth:`VaultSession.invalid`
for the messages only they can word.

Common reference parameters (all optional; the reference is recorded in the repository,
so it never holds a secret): ``addr``, ``namespace``, ``auth`` (``token|approle|kubernetes``),
``role``, ``auth_mount``, ``ca``, ``timeout``. Secrets come from the environment or files
only (see docs/vault.md).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Mapping

from . import refs
from .base import KeyProviderError

log = logging.getLogger("lifeline.keys.vault")

DEFAULT_SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
COMMON_PARAMS = frozenset({"addr", "namespace", "auth", "role", "auth_mount", "ca", "timeout"})


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


def env_first(env: Mapping[str, str], *names: str) -> str | None:
    for n in names:
        v = env.get(n)
        if v:
            return v
    return None


def read_secret_file(path: str, what: str) -> str:
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


def errs(exc) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        return "; ".join(str(e) for e in errors)
    return str(exc) or type(exc).__name__


def short(exc) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host",
                   "certificate verify failed"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__


def check_params(ref: str, query: Mapping[str, str], own: frozenset[str] | set[str]) -> None:
    known = set(own) | COMMON_PARAMS
    unknown = set(query) - known
    if unknown:
        raise KeyProviderError(f"key reference {ref!r}: unknown parameter(s) {', '.join(sorted(unknown))} "
                               f"(known: {', '.join(sorted(known))})")


class VaultSettings:
    """Address, TLS, namespace, timeouts and the auth method: from the query, then the environment."""

    def __init__(self, ref: str, q: Mapping[str, str], env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.ref = ref
        problem = refs.pinned_problem(ref, env)  # a tenant's reference: the operator's settings only
        if problem:
            raise KeyProviderError(problem)
        self.addr = (q.get("addr") or env_first(env, "VAULT_ADDR", "BAO_ADDR") or "").rstrip("/")
        if not self.addr:
            raise KeyProviderError(f"no Vault address for {ref!r}: set VAULT_ADDR (e.g. "
                                   "https://vault.example:8200) or add ?addr=... to the key reference")
        problem = refs.transport_problem(self.addr)
        if problem:
            raise KeyProviderError(problem)
        self.namespace = q.get("namespace") or env_first(env, "VAULT_NAMESPACE", "BAO_NAMESPACE")
        self.ca = q.get("ca") or env_first(env, "VAULT_CACERT", "BAO_CACERT")
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


class VaultSession:
    """An authenticated hvac client with renewal, retries and errors that name path and capability.

    Subclasses name the ``settings`` class that parses their reference into ``cfg`` (a
    :class:`VaultSettings`) and may override :meth:`not_found` / :meth:`invalid`.
    """

    settings: Callable[[str, Mapping[str, str] | None], VaultSettings]
    cfg: VaultSettings

    def __init__(self, ref: str, *, env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, client_factory=None):
        self.cfg = self.settings(ref, env)
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
            token = env_first(cfg.env, "VAULT_TOKEN", "BAO_TOKEN")
            if not token and cfg.env.get("LIFELINE_VAULT_TOKEN_FILE"):
                token = read_secret_file(cfg.env["LIFELINE_VAULT_TOKEN_FILE"], "Vault token")
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
                secret_id = read_secret_file(cfg.env["LIFELINE_VAULT_SECRET_ID_FILE"], "AppRole secret id")
            if not role_id or not secret_id:
                raise VaultAuthError("AppRole auth needs VAULT_ROLE_ID and VAULT_SECRET_ID "
                                     "(or LIFELINE_VAULT_SECRET_ID_FILE)")
            where = f"auth/{cfg.auth_mount}/login"
            self.call(lambda: c.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                                   mount_point=cfg.auth_mount), where, "login", c=c)
            return
        # kubernetes
        if not cfg.role:
            raise VaultAuthError("Kubernetes auth needs a role: add ?role=<vault role> to the key reference "
                                 "or set LIFELINE_VAULT_ROLE")
        jwt_path = cfg.env.get("LIFELINE_VAULT_SA_TOKEN_PATH") or DEFAULT_SA_TOKEN
        jwt = read_secret_file(jwt_path, "service-account token")
        where = f"auth/{cfg.auth_mount}/login"
        self.call(lambda: c.auth.kubernetes.login(role=cfg.role, jwt=jwt, mount_point=cfg.auth_mount),
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
    def call(self, fn, path: str, op: str, *, c=None, capability: str = "update"):
        """``fn()`` with retries on transient failures; ``path``/``capability`` word a denial."""
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
                        f"TLS to Vault at {cfg.addr} failed ({short(exc)}): set VAULT_CACERT (or ?ca=) to the "
                        "CA bundle that signed Vault's certificate") from None
                last = VaultUnreachable(
                    f"cannot reach Vault at {cfg.addr} ({short(exc)}) after {attempt} attempt(s): check VAULT_ADDR "
                    "(or ?addr= in the key reference), the network path and that Vault is running")
            except (hx.VaultDown, hx.InternalServerError, hx.BadGateway, hx.RateLimitExceeded) as exc:
                sealed = isinstance(exc, hx.VaultDown)
                last = VaultUnreachable(
                    f"Vault at {cfg.addr} is {'sealed or in standby' if sealed else 'failing'} "
                    f"({errs(exc)}) after {attempt} attempt(s)")
            except hx.Forbidden as exc:
                raise self.denied(path, op, exc, c, capability) from None
            except hx.InvalidPath as exc:
                raise self.not_found(path, op, exc) from None
            except hx.InvalidRequest as exc:
                if op == "login":
                    raise self.denied(path, op, exc, c, capability) from None
                raise self.invalid(path, op, exc) from None
            except hx.Unauthorized as exc:
                raise VaultAuthError(f"Vault at {cfg.addr} refused the credentials for {path} "
                                     f"({errs(exc)})") from None
            except hx.VaultError as exc:
                raise KeyProviderError(f"Vault at {cfg.addr} answered {path} with an error: {errs(exc)}") from None
            if attempt < cfg.retries:
                self._sleep(delay)
                delay = min(delay * 2.5, 5.0)
        raise last

    def denied(self, path: str, op: str, exc, c, need: str) -> KeyProviderError:
        cfg = self.cfg
        if op == "login":
            role = f" role {cfg.role!r}" if cfg.role else ""
            return VaultAuthError(f"Vault refused the {cfg.auth} login at {path}{role}: {errs(exc)}. Check "
                                  "the role's bound service account/namespace (Kubernetes) or the "
                                  "role id/secret id (AppRole)")
        if path == "sys/capabilities-self":
            return VaultAuthError(f"Vault at {cfg.addr} rejected the token ({errs(exc)}): it is invalid, "
                                  "expired or revoked; provide a fresh one")
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

    def not_found(self, path: str, op: str, exc) -> KeyProviderError:
        return VaultKeyMissing(f"Vault at {self.cfg.addr} has nothing at {path}: {errs(exc)}")

    def invalid(self, path: str, op: str, exc) -> KeyProviderError:
        return KeyProviderError(f"Vault at {self.cfg.addr} rejected {path}: {errs(exc)}")

    def capabilities(self, paths: list[str]) -> dict[str, list[str]]:
        c = self.client()
        r = self.call(lambda: c.adapter.post("/v1/sys/capabilities-self", json={"paths": paths}),
                      "sys/capabilities-self", "read", capability="read")
        data = r if isinstance(r, dict) else r.json()
        data = data.get("data", data)
        return {p: list(data.get(p, [])) for p in paths}
