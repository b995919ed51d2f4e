"""`vault-kv://` keys against a real OpenBao: round trip, errors that say what to fix, rotation per KV
version, retiring and shredding versions, and the KeysAvailable check."""
from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass, field

import pytest

from lifeline.keys import KeyMismatch, health, provider_from_ref
from lifeline.keys.vault_client import VaultKeyMissing, VaultKeyUnusable, VaultPermissionDenied
from lifeline.keys.vault_kv import VaultKeyDestroyed, VaultKVProvider
from tests.agent.helpers import Repo, assert_same_tree

from .conftest import repo_objects, run_lifeline


@dataclass
class KV:
    addr: str
    token: str
    mount: str
    path: str
    client: object = field(repr=False)
    version: int = 2

    @property
    def ref(self) -> str:
        return f"vault-kv://{self.path}?mount={self.mount}&field=key" + ("&kv=1" if self.version == 1 else "")

    @property
    def env(self) -> dict:
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token, "LIFELINE_VAULT_RETRIES": "2"}

    def put(self, **fields) -> None:
        if self.version == 2:
            self.client.secrets.kv.v2.create_or_update_secret(path=self.path, secret=fields, mount_point=self.mount)
        else:
            self.client.secrets.kv.v1.create_or_update_secret(path=self.path, secret=fields, mount_point=self.mount)

    def token_with(self, hcl: str) -> str:
        name = "p-" + secrets.token_hex(4)
        self.client.sys.create_or_update_policy(name=name, policy=hcl)
        return self.client.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]


def make_kv(server, version: int = 2) -> KV:
    client = server.client()
    mount = "kv" + secrets.token_hex(4)
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": str(version)})
    kv = KV(server.addr, server.token, mount, "lifeline/his", client, version)
    kv.put(key=secrets.token_hex(32), note="kept by rotation")
    return kv


@pytest.fixture
def kv(openbao) -> KV:
    return make_kv(openbao)


def _tree(root, text=b"patient record\n"):
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(text * 1000)
    (root / "sub" / "b.bin").write_bytes(os.urandom(200_000))
    return root


def _wrapped(url: str) -> dict[str, bytes]:
    return {k: base64.b64decode(json.loads(v)["wrapped"]) for k, v in repo_objects(url).items() if k.startswith("keys/")}


def test_agent_round_trip_and_the_wrapped_key_names_its_version(kv, tmp_path):
    repo = Repo("file://" + str(tmp_path / "repo"), kv.ref, env=kv.env)
    repo.ok("init")
    src = _tree(tmp_path / "src")
    s = repo.backup(src, "--type", "full")
    assert s["key_ref"] == kv.ref
    repo.ok("restore", s["point_id"], "--to", tmp_path / "out")
    assert_same_tree(src, tmp_path / "out")
    (wrapped,) = _wrapped(repo.url).values()
    assert wrapped.startswith(b"lifeline-kv:v1:")
    stored = kv.client.secrets.kv.v2.read_secret_version(path=kv.path, mount_point=kv.mount,
                                                         raise_on_deleted_version=True)["data"]["data"]["key"]
    everything = b"".join(repo_objects(repo.url).values())
    assert stored.encode() not in everything and bytes.fromhex(stored) not in everything


def test_errors_name_the_path_the_field_and_the_capability(kv, openbao):
    base = f"vault-kv://{kv.path}?mount={kv.mount}"
    with pytest.raises(VaultKeyMissing, match=rf"no KV secret at '{kv.mount}/data/nowhere'.*bao kv put"):
        VaultKVProvider(f"vault-kv://nowhere?mount={kv.mount}", env=kv.env).new_data_key()
    with pytest.raises(VaultKeyMissing, match=r"has no field 'other' \(fields: key, note\)"):
        VaultKVProvider(base + "&field=other", env=kv.env).new_data_key()
    with pytest.raises(VaultKeyMissing, match="no KV engine at mount 'nomount'"):
        VaultKVProvider(f"vault-kv://{kv.path}?mount=nomount", env=kv.env).new_data_key()
    kv.put(key="abc123", note="short")
    with pytest.raises(VaultKeyUnusable, match="does not hold a 256-bit key") as exc:
        VaultKVProvider(base, env=kv.env).new_data_key()
    assert "abc123" not in str(exc.value)  # the message never repeats what is stored
    kv.put(key=base64.b64encode(os.urandom(32)).decode())  # base64 is fine too
    assert len(VaultKVProvider(base, env=kv.env).new_data_key()[0]) == 32
    token = kv.token_with(f'path "{kv.mount}/metadata/{kv.path}" {{ capabilities = ["read"] }}')
    with pytest.raises(VaultPermissionDenied) as denied:
        VaultKVProvider(base, env={**kv.env, "VAULT_TOKEN": token}).new_data_key()
    assert denied.value.path == f"{kv.mount}/data/{kv.path}" and denied.value.capability == "read"
    assert f'path "{kv.mount}/data/{kv.path}"' in str(denied.value)
    with pytest.raises(Exception, match="unknown parameter"):
        provider_from_ref(base + "&bogus=1")


def test_rotation_adds_a_version_old_and_new_points_restore_and_only_key_objects_change(kv, tmp_path):
    repo = Repo("file://" + str(tmp_path / "repo"), kv.ref, env=kv.env)
    repo.ok("init")
    src = _tree(tmp_path / "src")
    p1 = repo.backup(src, "--type", "full")
    before = repo_objects(repo.url)

    r = run_lifeline("keys", "rotate", "--repo", repo.url, "--json", "--actor", "alice", env=kv.env)
    assert r.rc == 0, r.err
    assert r.json["latest_version"] == 2 and len(r.json["rewrapped"]) == 1
    assert '"action": "key-rotation"' in r.err and '"actor": "alice"' in r.err  # the audit record
    after = repo_objects(repo.url)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed and all(k.startswith("keys/") for k in changed)
    assert all(w.startswith(b"lifeline-kv:v2:") for w in _wrapped(repo.url).values())
    meta = kv.client.secrets.kv.v2.read_secret_metadata(path=kv.path, mount_point=kv.mount)["data"]
    assert meta["current_version"] == 2
    fields = kv.client.secrets.kv.v2.read_secret_version(path=kv.path, mount_point=kv.mount,
                                                         raise_on_deleted_version=True)["data"]["data"]
    assert fields["note"] == "kept by rotation"

    (src / "a.txt").write_bytes(b"after rotation")
    p2 = repo.backup(src, "--type", "full")
    repo.ok("restore", p1["point_id"], "--to", tmp_path / "o1")
    repo.ok("restore", p2["point_id"], "--to", tmp_path / "o2")
    assert (tmp_path / "o2" / "a.txt").read_bytes() == b"after rotation"

    # retiring version 1 destroys it (every epoch is on version 2 now)
    r = run_lifeline("keys", "rotate", "--repo", repo.url, "--no-rotate", "--min-decryption-version", "2",
                     env=kv.env)
    assert r.rc == 0, r.err
    shown = kv.client.auth.token.lookup_self()["data"]["display_name"]
    assert f'"actor": "vault:{shown}"' in r.err  # no --actor: the Vault token's display name
    versions = kv.client.secrets.kv.v2.read_secret_metadata(path=kv.path, mount_point=kv.mount)["data"]["versions"]
    assert versions["1"]["destroyed"] is True and versions["2"]["destroyed"] is False
    repo.ok("restore", p1["point_id"], "--to", tmp_path / "o3")


def test_shred_destroys_the_kv_version_only_when_no_other_epoch_needs_it(kv, tmp_path):
    repo = Repo("file://" + str(tmp_path / "repo"), kv.ref, env=kv.env)
    repo.ok("init")
    src = _tree(tmp_path / "src")
    p1 = repo.backup(src, "--type", "full")
    p2 = repo.backup(src, "--type", "full")  # a second epoch under the same version 1
    refused = run_lifeline("keys", "shred", "--repo", repo.url, "--point", p1["point_id"], "--yes",
                           "--destroy-key-version", env=kv.env)
    assert refused.rc != 0 and "still wrapped under it" in refused.err and p2["epoch"] in refused.err
    assert len(_wrapped(repo.url)) == 2  # nothing was touched

    # without destroying the version, the epoch's wrapped key goes, its neighbour stays readable
    r = run_lifeline("keys", "shred", "--repo", repo.url, "--point", p1["point_id"], "--yes", "--json",
                     "--actor", "bob", "--reason", "retention ended", env=kv.env)
    assert r.rc == 0, r.err
    assert '"action": "key-shred"' in r.err and '"outcome": "succeeded"' in r.err
    failed = repo.run("restore", p1["point_id"], "--to", tmp_path / "gone")
    assert failed.rc != 0 and "crypto-shredded" in failed.err and "by bob" in failed.err
    repo.ok("restore", p2["point_id"], "--to", tmp_path / "still")


def test_shred_with_destroy_key_version_destroys_it(kv, tmp_path):
    repo = Repo("file://" + str(tmp_path / "repo"), kv.ref, env=kv.env)
    repo.ok("init")
    p1 = repo.backup(_tree(tmp_path / "src"), "--type", "full")
    wrapped = _wrapped(repo.url)[f"keys/{p1['epoch']}"]
    r = run_lifeline("keys", "shred", "--repo", repo.url, "--epoch", p1["epoch"], "--yes", "--json",
                     "--destroy-key-version", env=kv.env)
    assert r.rc == 0, r.err
    assert r.json["destroyed_key_version"] == 1
    versions = kv.client.secrets.kv.v2.read_secret_metadata(path=kv.path, mount_point=kv.mount)["data"]["versions"]
    assert versions["1"]["destroyed"] is True
    # even a copy of the wrapped key taken before the shred no longer opens
    with pytest.raises(VaultKeyDestroyed, match="version 1 of KV secret .* was destroyed"):
        VaultKVProvider(kv.ref, env=kv.env).unwrap(wrapped)


def test_transit_refuses_destroy_key_version_clearly(vault_repo, tmp_path, transit):
    p = vault_repo.backup(_tree(tmp_path / "src"), "--type", "full")
    r = run_lifeline("keys", "shred", "--repo", vault_repo.url, "--point", p["point_id"], "--yes",
                     "--destroy-key-version", env=transit.env)
    assert r.rc != 0 and "applies to vault-kv:// keys only" in r.err
    vault_repo.ok("restore", p["point_id"], "--to", tmp_path / "out")  # nothing was shredded


def test_kv_v1_round_trip_and_rotation_is_refused_with_the_reason(openbao, tmp_path):
    kv = make_kv(openbao, version=1)
    repo = Repo("file://" + str(tmp_path / "repo"), kv.ref, env=kv.env)
    repo.ok("init")
    s = repo.backup(_tree(tmp_path / "src"))
    repo.ok("restore", s["point_id"], "--to", tmp_path / "out")
    assert all(w.startswith(b"lifeline-kv:v0:") for w in _wrapped(repo.url).values())
    r = run_lifeline("keys", "rotate", "--repo", repo.url, env=kv.env)
    assert r.rc != 0 and "KV v1 mount" in r.err and "-version=2" in r.err


def test_a_data_key_from_another_secret_is_named_as_such(kv):
    other = VaultKVProvider(f"vault-kv://{kv.path}?mount={kv.mount}&field=note", env=kv.env)
    kv.put(key=secrets.token_hex(32), note=secrets.token_hex(32))
    _dek, wrapped = VaultKVProvider(kv.ref, env=kv.env).new_data_key()
    with pytest.raises(KeyMismatch, match="wrapped under another secret"):
        other.unwrap(wrapped)


def test_keys_available_check_for_kv(kv):
    health.clear_cache()
    status, reason, message = health.check(kv.ref, env=kv.env)
    assert (status, reason) == ("True", "KeyUsable") and "exists (version 1)" in message
    health.clear_cache()
    token = kv.token_with(f'path "{kv.mount}/metadata/{kv.path}" {{ capabilities = ["read"] }}')
    status, reason, message = health.check(kv.ref, env={**kv.env, "VAULT_TOKEN": token})
    assert (status, reason) == ("False", "PermissionDenied") and f"{kv.mount}/data/{kv.path}" in message
    health.clear_cache()
    kv.client.secrets.kv.v2.destroy_secret_versions(path=kv.path, versions=[1], mount_point=kv.mount)
    status, reason, message = health.check(kv.ref, env=kv.env)
    assert (status, reason) == ("False", "KeyMissing") and "destroyed" in message
    health.clear_cache()
    status, reason, _ = health.check(f"vault-kv://missing?mount={kv.mount}", env=kv.env)
    assert (status, reason) == ("False", "KeyMissing")
