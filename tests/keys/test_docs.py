"""docs/vault.md: every `sh` block runs as written against a fresh `bao server -dev`."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from lifeline.keys import health
from lifeline.keys.vault import VaultPermissionDenied, VaultTransitProvider
from lifeline.keys.vault_kv import VaultKeyDestroyed, VaultKVProvider
from tests.realparts.openbao import OpenBaoServer
from tests.realparts.tools import bao_path

DOC = Path(__file__).resolve().parents[2] / "docs" / "vault.md"


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)


@pytest.fixture
def fresh_openbao(openbao):
    with OpenBaoServer() as server:
        yield server


def test_docs_commands_work_as_written(fresh_openbao, tmp_path):
    blocks = shell_blocks(DOC.read_text())
    assert len(blocks) >= 4
    script = "set -euo pipefail\n" + "\n".join(blocks)
    env = {**os.environ, **fresh_openbao.env(), "HOME": os.environ.get("HOME", "/tmp"),
           "PATH": f"{Path(bao_path()).parent}:{os.environ['PATH']}"}
    # the page's one prerequisite: the cluster's CA certificate saved as k8s-ca.crt
    (tmp_path / "k8s-ca.crt").write_bytes(_self_signed_ca())
    p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert p.returncode == 0, f"docs/vault.md commands failed:\n{p.stdout}\n{p.stderr}"

    # the result is what the page promises: the agent policy can wrap and unwrap, nothing more
    c = fresh_openbao.client()
    token = c.auth.token.create(policies=["lifeline-his"], ttl="5m")["auth"]["client_token"]
    env = {"VAULT_ADDR": fresh_openbao.addr, "VAULT_TOKEN": token}
    ref = "vault-transit://lifeline-his?mount=transit"
    p = VaultTransitProvider(ref, env=env)
    dek, wrapped = p.new_data_key()
    assert p.unwrap(wrapped) == dek
    with pytest.raises(VaultPermissionDenied, match="lifeline-his/rotate"):
        p.rotate()
    health.clear_cache()
    assert health.check(ref, env=env)[0] == "True"
    role = c.read("auth/kubernetes/role/lifeline-his")["data"]
    assert role["bound_service_account_names"] == ["lifeline-backup"]
    assert role["bound_service_account_namespaces"] == ["his"]
    assert "lifeline-his" in role["token_policies"]
    rot = c.auth.token.create(policies=["lifeline-his-rotate"], ttl="5m")["auth"]["client_token"]
    pr = VaultTransitProvider(ref, env={"VAULT_ADDR": fresh_openbao.addr, "VAULT_TOKEN": rot})
    assert pr.rotate() == 2 and pr.version_of(pr.rewrap(wrapped)) == 2
    pr.set_min_decryption_version(2)

    # the KV section: the agent policy reads the key, nothing more; the rotation policy rotates
    kv_ref = "vault-kv://lifeline/his?mount=secret&field=key"
    kv_env = {"VAULT_ADDR": fresh_openbao.addr,
              "VAULT_TOKEN": c.auth.token.create(policies=["lifeline-his-kv"], ttl="5m")["auth"]["client_token"]}
    kv = VaultKVProvider(kv_ref, env=kv_env)
    dek, wrapped = kv.new_data_key()
    assert kv.unwrap(wrapped) == dek
    with pytest.raises(VaultPermissionDenied, match="'update' capability on path 'secret/data/lifeline/his'"):
        kv.rotate()
    health.clear_cache()
    assert health.check(kv_ref, env=kv_env)[:2] == ("True", "KeyUsable")
    kv_rot = VaultKVProvider(kv_ref, env={"VAULT_ADDR": fresh_openbao.addr, "VAULT_TOKEN": c.auth.token.create(
        policies=["lifeline-his-kv-rotate"], ttl="5m")["auth"]["client_token"]})
    assert kv_rot.rotate() == 2 and kv_rot.version_of(kv_rot.rewrap(wrapped)) == 2
    kv_rot.set_min_decryption_version(2)
    with pytest.raises(VaultKeyDestroyed):
        VaultKVProvider(kv_ref, env=kv_env).unwrap(wrapped)


def _self_signed_ca() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)
