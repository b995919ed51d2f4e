"""The azure:// backend against Azurite (Microsoft's emulator, a real Blob Storage protocol server):
backup, an incremental, restore, verify with the data read back, prune, and what a person sees when
the container or the credentials are wrong. Nothing but the repository's objects lands in the
container, under the prefix, and no credential reaches the summaries."""
from __future__ import annotations

import uuid

import pytest

from .helpers import Repo, make_key
from .test_roundtrip import MiB, backup_change_restore

pytestmark = pytest.mark.slow


def container(azurite) -> str:
    return azurite.make_container(f"ll-{uuid.uuid4().hex[:12]}")


def test_round_trip_azure(azurite, tmp_path):
    name = container(azurite)
    repo = Repo(f"azure://{name}/team/repo", make_key(tmp_path / "key"), env=azurite.env())
    assert repo.ok("init", "--json").json["repository"] == f"azure://{name}/team/repo"
    s1, s2 = backup_change_restore(repo, tmp_path / "src", tmp_path / "out", big=24 * MiB, sparse=8 * MiB)
    assert s1["repository"] == f"azure://{name}/team/repo"
    assert azurite.env()["AZURE_STORAGE_ACCOUNT_KEY"] not in repr(s1)
    repo.ok("prune", "--keep-last", "1")
    assert [p["point_id"] for p in repo.ok("points", "--json").json["points"]] == [s2["point_id"]]
    repo.ok("verify", "--read-data")

    from azure.storage.blob import BlobServiceClient

    from tests.realparts.azurite import ACCOUNT, KEY
    client = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={azurite.endpoint}")
    names = [b.name for b in client.get_container_client(name).list_blobs()]
    assert names and all(n.startswith("team/repo/") for n in names)
    assert any(n.startswith("team/repo/data/") for n in names) and not any("/locks/" in n for n in names)


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
