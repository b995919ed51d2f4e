"""TLS with a CA bundle, and Vault namespaces, against real OpenBao servers."""
from __future__ import annotations

import os
import secrets
import subprocess

import hvac
import pytest
import requests

from lifeline.keys.vault import VaultKeyMissing, VaultTransitProvider, VaultUnreachable
from tests.realparts.ports import free_port, wait_for
from tests.realparts.tools import bao_path


def test_namespace(openbao):
    root = openbao.client()
    ns = "his" + secrets.token_hex(3)
    root.sys.create_namespace(path=ns)
    inner = hvac.Client(url=openbao.addr, token=openbao.token, namespace=ns)
    inner.sys.enable_secrets_engine("transit", path="transit")
    inner.secrets.transit.create_key(name="k", mount_point="transit")
    env = {"VAULT_ADDR": openbao.addr, "VAULT_TOKEN": openbao.token}
    p = VaultTransitProvider(f"vault-transit://k?namespace={ns}", env=env)
    dek, w = p.new_data_key()
    assert p.unwrap(w) == dek
    p = VaultTransitProvider("vault-transit://k", env={**env, "VAULT_NAMESPACE": ns})
    assert p.unwrap(w) == dek
    with pytest.raises(VaultKeyMissing):  # the same key name outside the namespace does not exist
        VaultTransitProvider("vault-transit://k", env=env).new_data_key()


@pytest.fixture
def tls_openbao(openbao, tmp_path):
    port = free_port()
    certs = tmp_path / "certs"
    certs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    proc = subprocess.Popen([bao_path(), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={certs}",
                             "-dev-root-token-id=root", f"-dev-listen-address=127.0.0.1:{port}",
                             "-dev-no-store-token"], env={**env, "HOME": str(tmp_path)}, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    addr = f"https://127.0.0.1:{port}"
    ca = certs / "vault-ca.pem"

    def ready():
        return ca.exists() and requests.get(f"{addr}/v1/sys/health", verify=str(ca), timeout=2).ok

    try:
        wait_for(ready, 30, f"OpenBao with TLS on {addr}", abort=lambda: None if proc.poll() is None else "exited")
        c = hvac.Client(url=addr, token="root", verify=str(ca))
        c.sys.enable_secrets_engine("transit")
        c.secrets.transit.create_key(name="k")
        yield addr, str(ca)
    finally:
        proc.terminate()
        proc.wait(10)


def test_tls_with_ca_bundle(tls_openbao, monkeypatch):
    addr, ca = tls_openbao
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    env = {"VAULT_ADDR": addr, "VAULT_TOKEN": "root", "LIFELINE_VAULT_RETRIES": "1"}
    with pytest.raises(VaultUnreachable, match=f"TLS to Vault at {addr} failed .*VAULT_CACERT"):
        VaultTransitProvider("vault-transit://k", env=env).new_data_key()
    p = VaultTransitProvider("vault-transit://k", env={**env, "VAULT_CACERT": ca})
    dek, w = p.new_data_key()
    assert p.unwrap(w) == dek
    assert VaultTransitProvider(f"vault-transit://k?ca={ca}", env=env).unwrap(w) == dek
