"""lifeline.keys.health.check: the cheap cached check behind the KeysAvailable condition."""
from __future__ import annotations

import pytest

from lifeline.keys import health
from tests.realparts.ports import free_port

from .conftest import make_transit, run_lifeline


@pytest.fixture(autouse=True)
def _fresh_cache():
    health.clear_cache()
    yield
    health.clear_cache()


def test_usable_key(transit):
    env = {"VAULT_ADDR": transit.addr, "VAULT_TOKEN": transit.limited_token(transit.agent_policy())}
    status, reason, msg = health.check(transit.ref, env=env)
    assert (status, reason) == ("True", "KeyUsable"), msg
    assert "exists (type aes256-gcm96, latest version 1)" in msg


def test_missing_capability(transit):
    token = transit.limited_token(f'path "{transit.mount}/decrypt/{transit.key}" {{ capabilities = ["update"] }}')
    status, reason, msg = health.check(transit.ref, env={"VAULT_ADDR": transit.addr, "VAULT_TOKEN": token})
    assert (status, reason) == ("False", "PermissionDenied")
    assert f"'update' on '{transit.mount}/datakey/plaintext/{transit.key}'" in msg
    assert "decrypt" not in msg.split("lacks", 1)[1]


def test_missing_key_unusable_key_unreachable_bad_token(openbao, transit):
    env = transit.env
    s, r, m = health.check(f"vault-transit://nope?mount={transit.mount}", env=env)
    assert (s, r) == ("False", "KeyMissing") and "nope" in m
    ed = make_transit(openbao, key_type="ed25519")
    s, r, m = health.check(ed.ref, env=env)
    assert (s, r) == ("False", "KeyTypeUnusable") and "ed25519" in m
    addr = f"http://127.0.0.1:{free_port()}"
    s, r, m = health.check(transit.ref + "&timeout=1", env={**env, "VAULT_ADDR": addr, "LIFELINE_VAULT_RETRIES": "1"})
    assert (s, r) == ("False", "VaultUnreachable") and addr in m
    s, r, m = health.check(transit.ref + "&x=", env=env)
    assert (s, r) == ("False", "InvalidKeyReference")
    s, r, m = health.check(transit.ref + "&timeout=2", env={**env, "VAULT_TOKEN": "s.not-a-token"})
    assert (s, r) == ("False", "AuthenticationFailed") and "invalid, expired or revoked" in m


def test_cached_until_ttl(transit):
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    good = transit.env
    assert health.check(transit.ref, env=good, clock=clock)[0] == "True"
    transit.client.sys.disable_secrets_engine(transit.mount)  # the key goes away...
    assert health.check(transit.ref, env=good, clock=clock)[0] == "True"  # ...cached: Vault not asked
    now[0] += health.OK_TTL + 1
    s, r, _ = health.check(transit.ref, env=good, clock=clock)
    assert (s, r) == ("False", "KeyMissing")


def test_local_key_file(tmp_path):
    from lifeline.keys import create_key_file

    create_key_file(tmp_path / "k")
    assert health.check(f"file://{tmp_path}/k")[0] == "True"
    assert health.check(f"file://{tmp_path}/missing")[:2] == ("False", "KeyUnavailable")


def test_keys_check_command(transit):
    r = run_lifeline("keys", "check", "--key", transit.ref, "--json", env=transit.env)
    assert r.rc == 0 and r.json["status"] == "True", r.err
    r = run_lifeline("keys", "check", "--key", f"vault-transit://nope?mount={transit.mount}", env=transit.env)
    assert r.rc == 4 and r.text.startswith("False KeyMissing")


def test_keys_area_registered_in_lifeline_cli():
    from lifeline.cli import build_parser

    args = build_parser().parse_args(["keys", "rotate", "--repo", "file:///x", "--min-decryption-version", "2"])
    assert args.func.__name__ == "cmd_rotate" and args.min_decryption_version == 2
