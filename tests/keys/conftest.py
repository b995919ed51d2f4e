"""Fixtures for the key tests: a fresh transit mount + key per test on the session's OpenBao."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.agent.helpers import Repo, Result

LIFELINE = [sys.executable, "-m", "lifeline.keys"]  # = `lifeline keys ...`, without the operator imports


@dataclass
class Transit:
    addr: str
    token: str
    mount: str
    key: str
    client: object = field(repr=False)

    @property
    def ref(self) -> str:
        return f"vault-transit://{self.key}?mount={self.mount}"

    @property
    def env(self) -> dict:
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token, "LIFELINE_VAULT_RETRIES": "2"}

    def limited_token(self, policy_hcl: str) -> str:
        name = "p-" + secrets.token_hex(4)
        self.client.sys.create_or_update_policy(name=name, policy=policy_hcl)
        return self.client.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]

    def agent_policy(self) -> str:
        m, k = self.mount, self.key
        return (f'path "{m}/datakey/plaintext/{k}" {{ capabilities = ["update"] }}\n'
                f'path "{m}/decrypt/{k}" {{ capabilities = ["update"] }}\n'
                f'path "{m}/keys/{k}" {{ capabilities = ["read"] }}\n')


def make_transit(server, key_type: str = "aes256-gcm96") -> Transit:
    client = server.client()
    mount = "t" + secrets.token_hex(4)
    client.sys.enable_secrets_engine("transit", path=mount)
    key = "lifeline-" + secrets.token_hex(3)
    client.secrets.transit.create_key(name=key, key_type=key_type, mount_point=mount)
    return Transit(server.addr, server.token, mount, key, client)


@pytest.fixture
def transit(openbao) -> Transit:
    return make_transit(openbao)


@pytest.fixture
def vault_repo(tmp_path, transit) -> Repo:
    r = Repo("file://" + str(tmp_path / "repo"), transit.ref, env=transit.env)
    r.ok("init")
    return r


def run_lifeline(*args, env: dict | None = None, timeout: float = 120) -> Result:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("AWS_", "LIFELINE_", "VAULT_", "BAO_"))}
    full_env.update(env or {})
    if args and args[0] == "keys":
        args = args[1:]
    p = subprocess.run([*LIFELINE, *map(str, args)], capture_output=True, env=full_env, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr.decode(errors="replace"))


def repo_objects(url: str) -> dict[str, bytes]:
    root = Path(url[len("file://"):])
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
