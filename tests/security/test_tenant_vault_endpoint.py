"""Finding 1 of the security review, as the attack: a tenant who may write a BackupPolicy in their own
namespace points its key reference at a Vault of their choosing, hoping that the operator's key check
(its own ServiceAccount token, its own Vault token) or a Job's login goes there.

A trap server on loopback records every request; each test shows first that the same call unpinned
does reach the trap (so the test can fail), then that pinned it does not."""
from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import urllib.error

import pytest
from pydantic import ValidationError

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.recoverypoint import RecoveryPointSpec
from lifeline.controllers.common import pinned_vault_env, vault_env
from lifeline.keys import health, refs
from lifeline.keys.base import KeyProviderError
from lifeline.keys.vault import VaultTransitProvider
from tests.backup.conftest import policy


@pytest.fixture
def trap():
    """An HTTP server that answers 403 and remembers who knocked, with which headers."""
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self):
            seen.append({"path": self.path, "headers": dict(self.headers)})
            self.send_response(403)
            self.end_headers()

        do_GET = do_POST = do_PUT = do_LIST = _any

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_cached_checks():
    health.clear_cache()
    yield
    health.clear_cache()


OPERATOR_ENV = {"VAULT_ADDR": "https://vault.hospital.example:8200", "VAULT_TOKEN": "s.operator-token",
                "LIFELINE_VAULT_RETRIES": "1", "LIFELINE_VAULT_TIMEOUT": "2"}


def test_the_operators_key_check_never_goes_where_a_reference_points(trap, monkeypatch):
    url, seen = trap
    ref = f"vault-transit://his?mount=transit&addr={url}"
    health.check(ref, env=dict(OPERATOR_ENV))  # unpinned: the attack works
    assert seen and seen[0]["headers"].get("X-Vault-Token") == "s.operator-token"
    seen.clear()
    health.clear_cache()

    for name, value in OPERATOR_ENV.items():
        monkeypatch.setenv(name, value)
    status, reason, message = health.check(ref, env=pinned_vault_env())  # how the operator checks
    assert (status, reason) == ("False", "InvalidKeyReference")
    assert "sets addr" in message and "operator's settings" in message
    assert seen == [], "nothing reached the trap"


@pytest.mark.parametrize("param", ["addr", "namespace", "auth", "auth_mount", "ca"])
def test_a_pinned_provider_refuses_every_connection_setting(param):
    ref = f"vault-transit://his?mount=transit&{param}=x"
    with pytest.raises(KeyProviderError, match=f"sets {param}"):
        VaultTransitProvider(ref, env={**OPERATOR_ENV, refs.PINNED_ENV: "true"})


def test_a_role_is_taken_only_when_the_admin_allowed_it():
    env = {**OPERATOR_ENV, refs.PINNED_ENV: "true", "LIFELINE_VAULT_ROLE": "lifeline-agent",
           refs.ALLOWED_ROLES_ENV: "lifeline-his, lifeline-pacs"}
    with pytest.raises(KeyProviderError, match="Vault role 'vault-admin'.*not allowed"):
        VaultTransitProvider("vault-transit://his?role=vault-admin", env=env)
    for role in ("lifeline-his", "lifeline-pacs", "lifeline-agent"):
        assert VaultTransitProvider(f"vault-transit://his?role={role}", env=env).cfg.role == role


def test_jobs_get_the_operators_settings_pinned(trap, monkeypatch):
    """A Job's agent refuses the reference before any network call."""
    url, seen = trap
    for name, value in OPERATOR_ENV.items():
        monkeypatch.setenv(name, value)
    env = dict(vault_env())
    assert env[refs.PINNED_ENV] == "true" and env["VAULT_ADDR"] == OPERATOR_ENV["VAULT_ADDR"]
    ref = f"vault-transit://his?mount=transit&addr={url}"
    keys_check = [sys.executable, "-m", "lifeline.cli", "keys", "check", "--key", ref]
    run = subprocess.run(keys_check, env={"PATH": "/usr/bin:/bin", **env},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "sets addr" in run.stderr + run.stdout, run.stderr
    assert "Traceback" not in run.stderr
    assert seen == [], "the Job's agent sent nothing to the trap"


@pytest.mark.parametrize("addr,ok", [("https://vault.example:8200", True), ("http://127.0.0.1:8200", True),
                                     ("http://[::1]:8200", True), ("http://localhost:8200", True),
                                     ("http://vault.example:8200", False), ("http://10.0.0.5:8200", False)])
def test_plain_http_only_to_loopback(addr, ok):
    problem = refs.transport_problem(addr)
    assert (problem is None) == ok, problem
    if not ok:
        with pytest.raises(KeyProviderError, match="plain http"):
            VaultTransitProvider("vault-transit://his", env={"VAULT_ADDR": addr, "VAULT_TOKEN": "t"})


@pytest.mark.parametrize("param", ["addr=https://evil.example", "auth_mount=userpass", "ca=/etc/passwd",
                                   "namespace=other", "auth=token"])
def test_the_models_refuse_connection_settings_in_a_key_reference(param):
    body = policy()["spec"]
    body["encryption"]["keyRef"] = f"vault-transit://his?mount=transit&{param}"
    with pytest.raises(ValidationError, match="keyRef") as err:
        BackupPolicySpec.model_validate(body)
    assert "operator's settings" in str(err.value)
    with pytest.raises(ValidationError, match="keyRef"):
        RecoveryPointSpec.model_validate({"keyRef": f"vault-kv://kv/his?{param}"})


async def test_a_tenant_cannot_create_such_a_policy(kube):
    """Through the real API server and the chart's admission webhook, as dave, who has ``edit`` here."""
    kube.seed("rbac.authorization.k8s.io/v1/rolebindings", {
        "metadata": {"name": "dave-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dave"}]})
    body = policy()
    body["spec"]["encryption"]["keyRef"] = "vault-transit://his?mount=transit&addr=https://vault.evil.example"
    async with kube.operator():
        with pytest.raises(urllib.error.HTTPError) as err:
            kube.create(body, user="dave")
        assert err.value.code in (400, 403, 422)
        assert "keyRef" in str(err.value.msg) and "operator's settings" in str(err.value.msg)
        body["spec"]["encryption"]["keyRef"] = "vault-transit://his?mount=transit"
        kube.create(body, user="dave")  # the same policy naming only its key is fine
