"""The azure:// backend against Azurite (Microsoft's emulator, a real Blob Storage protocol server): what a
person sees when the container or the credentials are wrong. Backup, restore, verify, prune, repack,
rebuild-index and kill -9 run here as on every backend: test_every_backend.py."""
from __future__ import annotations

import uuid

import pytest

from .helpers import Repo, make_key

pytestmark = pytest.mark.slow


def container(azurite) -> str:
    return azurite.make_container(f"ll-{uuid.uuid4().hex[:12]}")


def test_azure_errors_say_what_to_do(azurite, tmp_path):
    key = make_key(tmp_path / "key")
    missing = Repo("azure://no-such-container/p", key, env=azurite.env()).run("init")
    assert missing.rc != 0 and "container 'no-such-container' does not exist" in missing.err, missing.err
    wrong = {**azurite.env(), "AZURE_STORAGE_ACCOUNT_KEY": "d3Jvbmc="}
    refused = Repo(f"azure://{container(azurite)}/p", key, env=wrong).run("init")
    assert refused.rc != 0 and "refused" in refused.err and "AZURE_STORAGE_ACCOUNT_KEY" in refused.err, refused.err
    nameless = {k: v for k, v in azurite.env().items() if k != "AZURE_STORAGE_ACCOUNT_NAME"}
    unnamed = Repo("azure://c/p", key, env=nameless).run("init")
    assert unnamed.rc == 2 and "set AZURE_STORAGE_ACCOUNT_NAME" in unnamed.err, unnamed.err
    inline = Repo("azure://c/p?sig=abc", key, env=azurite.env()).run("init")
    assert inline.rc == 2 and "do not put credentials in the repository URL" in inline.err
