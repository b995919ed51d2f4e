"""The Vault transit provider against a real OpenBao dev server."""
from __future__ import annotations

import time

import pytest

from lifeline.keys import KeyMismatch, provider_from_ref
from lifeline.keys.vault import (VaultAuthError, VaultKeyMissing, VaultKeyUnusable, VaultPermissionDenied,
                                 VaultTransitProvider, VaultUnreachable)
from tests.realparts.ports import free_port

from .conftest import make_transit


def test_envelope_round_trip_kek_stays_in_vault(transit, monkeypatch):
    for k, v in transit.env.items():
        monkeypatch.setenv(k, v)
    p = provider_from_ref(transit.ref)
    assert isinstance(p, VaultTransitProvider) and p.ref == transit.ref
    dek, wrapped = p.new_data_key()
    assert len(dek) == 32 and wrapped.startswith(b"vault:v1:") and dek not in wrapped
    assert p.unwrap(wrapped) == dek
    d2, w2 = p.new_data_key()
    assert d2 != dek and w2 != wrapped
    # the key itself is not exportable: nothing but data keys ever leaves Vault
    info = transit.client.secrets.transit.read_key(name=transit.key, mount_point=transit.mount)["data"]
    assert info["exportable"] is False


def test_reference_parsing_errors():
    with pytest.raises(Exception, match="VAULT_ADDR"):
        VaultTransitProvider("vault-transit://k", env={})
    with pytest.raises(Exception, match="unknown parameter"):
        VaultTransitProvider("vault-transit://k?token=s.xyz", env={"VAULT_ADDR": "https://x"})
    with pytest.raises(Exception, match="credentials"):
        VaultTransitProvider("vault-transit://u:p@k", env={"VAULT_ADDR": "https://x"})
    p = VaultTransitProvider("vault-transit://k?mount=kms&namespace=his&timeout=3",
                             env={"VAULT_ADDR": "https://x"})
    assert (p.cfg.mount, p.cfg.namespace, p.cfg.timeout, p.cfg.auth) == ("kms", "his", 3.0, "token")
    with pytest.raises(VaultAuthError, match="VAULT_TOKEN"):
        p.client()


def test_key_missing_mount_missing_and_unusable_type(openbao, transit):
    env = transit.env
    with pytest.raises(VaultKeyMissing, match=r"no transit key 'nope' at mount.*bao write -f"):
        VaultTransitProvider(f"vault-transit://nope?mount={transit.mount}", env=env).new_data_key()
    with pytest.raises(VaultKeyMissing, match="no transit engine at mount 'nomount'.*secrets enable"):
        VaultTransitProvider(f"vault-transit://{transit.key}?mount=nomount", env=env).new_data_key()
    ed = make_transit(openbao, key_type="ed25519")
    with pytest.raises(VaultKeyUnusable, match="cannot be used for data keys.*aes256-gcm96"):
        VaultTransitProvider(ed.ref, env=ed.env).new_data_key()


def test_unreachable_names_address_and_backs_off(transit):
    sleeps = []
    addr = f"http://127.0.0.1:{free_port()}"
    p = VaultTransitProvider(transit.ref, env={**transit.env, "VAULT_ADDR": addr, "LIFELINE_VAULT_RETRIES": "4"},
                             sleep=sleeps.append)
    with pytest.raises(VaultUnreachable, match=rf"cannot reach Vault at {addr} .*after 4 attempt.*VAULT_ADDR"):
        p.new_data_key()
    assert len(sleeps) == 3 and sleeps == sorted(sleeps) and sleeps[0] > 0


def test_permission_denied_names_path_and_capability_and_is_not_retried(transit):
    token = transit.limited_token(f'path "{transit.mount}/decrypt/{transit.key}" {{ capabilities = ["update"] }}')
    sleeps = []
    p = VaultTransitProvider(transit.ref, env={**transit.env, "VAULT_TOKEN": token}, sleep=sleeps.append)
    with pytest.raises(VaultPermissionDenied) as ei:
        p.new_data_key()
    assert ei.value.path == f"{transit.mount}/datakey/plaintext/{transit.key}"
    assert ei.value.capability == "update"
    assert f"'update' capability on path '{transit.mount}/datakey/plaintext/{transit.key}'" in str(ei.value)
    assert "this token has: deny" in str(ei.value)
    assert sleeps == []  # 403 is not transient


def test_wrong_key_is_a_key_mismatch(openbao, transit):
    other = make_transit(openbao)
    _dek, wrapped = VaultTransitProvider(other.ref, env=other.env).new_data_key()
    p = VaultTransitProvider(transit.ref, env=transit.env)
    with pytest.raises(KeyMismatch):
        p.unwrap(wrapped)
    with pytest.raises(KeyMismatch, match="not wrapped by Vault transit"):
        p.unwrap(b"LLK1" + bytes(60))


def test_token_file_auth(transit, tmp_path):
    f = tmp_path / "token"
    f.write_text(transit.limited_token(transit.agent_policy()) + "\n")
    env = {"VAULT_ADDR": transit.addr, "LIFELINE_VAULT_TOKEN_FILE": str(f)}
    p = VaultTransitProvider(transit.ref, env=env)
    dek, w = p.new_data_key()
    assert p.unwrap(w) == dek
    with pytest.raises(VaultAuthError, match="does not exist"):
        VaultTransitProvider(transit.ref, env={**env, "LIFELINE_VAULT_TOKEN_FILE": str(tmp_path / "x")}).client()


def test_approle_auth(transit):
    c = transit.client
    mount = "ar" + transit.mount
    c.sys.enable_auth_method("approle", path=mount)
    policy = "pol" + transit.mount
    c.sys.create_or_update_policy(name=policy, policy=transit.agent_policy())
    c.auth.approle.create_or_update_approle("backup", token_policies=[policy], token_ttl="10m", mount_point=mount)
    role_id = c.auth.approle.read_role_id("backup", mount_point=mount)["data"]["role_id"]
    secret_id = c.auth.approle.generate_secret_id("backup", mount_point=mount)["data"]["secret_id"]
    env = {"VAULT_ADDR": transit.addr, "VAULT_ROLE_ID": role_id, "VAULT_SECRET_ID": secret_id}
    p = VaultTransitProvider(transit.ref + f"&auth_mount={mount}", env=env)
    assert p.cfg.auth == "approle"
    dek, w = p.new_data_key()
    assert p.unwrap(w) == dek
    bad = VaultTransitProvider(transit.ref + f"&auth_mount={mount}", env={**env, "VAULT_SECRET_ID": "nope"})
    with pytest.raises(VaultAuthError, match="approle login"):
        bad.new_data_key()


def test_token_is_renewed_during_a_long_run(transit):
    token = transit.client.auth.token.create(policies=["default"], ttl="3s", explicit_max_ttl="1h",
                                             renewable=True)["auth"]["client_token"]
    p = VaultTransitProvider(transit.ref, env={**transit.env, "VAULT_TOKEN": token})
    p.client()
    assert p._renewer is not None and p._renewer.is_alive()
    time.sleep(4.2)  # longer than the token's TTL: only renewal keeps it alive
    info = transit.client.auth.token.lookup(token)["data"]
    assert info["ttl"] > 0
    p.close()


def test_missing_ca_bundle_is_named(transit, tmp_path):
    p = VaultTransitProvider(transit.ref + f"&ca={tmp_path}/ca.pem", env=transit.env)
    with pytest.raises(Exception, match="CA bundle .*ca.pem does not exist"):
        p.new_data_key()


def test_retired_version_is_named(transit):
    p = VaultTransitProvider(transit.ref, env=transit.env)
    _dek, w1 = p.new_data_key()
    assert p.rotate() == 2
    p.set_min_decryption_version(2)
    with pytest.raises(KeyMismatch, match="retired"):
        p.unwrap(w1)
