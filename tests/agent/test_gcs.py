"""The gs:// backend against fake-gcs-server (a Google Cloud Storage emulator, built from its Go module,
checking a service account's self-signed tokens): what a person sees when the bucket or the credentials
are wrong, which credentials are refused before any request, exclusive and multipart puts, and that no
key reaches the errors. Backup, restore, verify, prune, repack, rebuild-index, kill -9 and two backups at
once run here as on every backend: test_every_backend.py."""
from __future__ import annotations

import json
import os
import uuid

import pytest

from .helpers import Repo, make_key
from .test_roundtrip import MiB

pytestmark = pytest.mark.slow


def bucket(fake_gcs) -> str:
    return fake_gcs.make_bucket(f"ll-{uuid.uuid4().hex[:12]}")


def secret_lines(private_key: bytes) -> list[str]:
    """The lines of a PEM key that are the key (not its BEGIN/END lines)."""
    return [line for line in private_key.decode().splitlines() if line and "-----" not in line]


def assert_no_secret(private_key: bytes, *texts) -> None:
    for text in texts:
        text = text if isinstance(text, str) else repr(text)
        leaked = [line for line in secret_lines(private_key) if line in text]
        assert not leaked and "PRIVATE KEY" not in text, f"a private key line reached {text[:300]!r}"


def test_gcs_errors_say_what_to_do(fake_gcs, tmp_path):
    from tests.realparts.gcs import new_private_key

    key = make_key(tmp_path / "key")
    missing = Repo("gs://no-such-bucket/p", key, env=fake_gcs.env()).run("init")
    assert missing.rc == 1 and "bucket 'no-such-bucket' does not exist" in missing.err, missing.err

    # A service account key the server does not know: refused, and the message says what to check.
    other = new_private_key()
    wrong = {"GOOGLE_APPLICATION_CREDENTIALS": str(fake_gcs.key_file("other.json", private_key=other))}
    refused = Repo(f"gs://{bucket(fake_gcs)}/p", key, env=wrong).run("init")
    assert refused.rc == 1 and "refused" in refused.err and "GOOGLE_APPLICATION_CREDENTIALS" in refused.err, \
        refused.err
    assert_no_secret(other, refused.err, refused.text)
    assert_no_secret(fake_gcs.private_key, refused.err, refused.text)

    inline = Repo("gs://b/p?access_token=abc", key, env=fake_gcs.env()).run("init")
    assert inline.rc == 2 and "do not put credentials in the repository URL" in inline.err


def usage_error(tmp_path, env: dict) -> str:
    r = Repo("gs://some-bucket/p", make_key(tmp_path / f"key-{uuid.uuid4().hex[:6]}"),
             env={"HOME": str(tmp_path), **env}).run("init")
    assert r.rc == 2 and "Traceback" not in r.err, (r.rc, r.err)
    return r.err


def test_gcs_credentials_checked_before_any_request(fake_gcs, tmp_path):
    """Credentials that cannot work are named before a request is made (none of these reach a server)."""
    from lifeline.repository.backend_gcs import on_google_cloud

    from tests.realparts.gcs import new_private_key

    if not on_google_cloud():  # on a Google Compute Engine machine the metadata server is the answer
        err = usage_error(tmp_path, {})
        assert "no Google Cloud credentials" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err \
            and "Workload Identity" in err, err

    err = usage_error(tmp_path, {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent.json")})
    assert "cannot read the credentials file named by GOOGLE_APPLICATION_CREDENTIALS" in err, err

    (tmp_path / "garbage.json").write_text("this is not { json")
    err = usage_error(tmp_path, {"GOOGLE_SERVICE_ACCOUNT": str(tmp_path / "garbage.json")})
    assert "GOOGLE_SERVICE_ACCOUNT" in err and "not a JSON credentials file" in err and "this is not" not in err

    good = json.loads(fake_gcs.key_file("good.json").read_text())
    (tmp_path / "keyless.json").write_text(json.dumps({**good, "private_key": ""}))
    err = usage_error(tmp_path, {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "keyless.json")})
    assert "has no private_key" in err, err

    # A key that is not an RSA key in PEM: object_store's own complaint, without the key's lines.
    broken = "-----BEGIN PRIVATE KEY-----\n" + "QUJD" * 16 + "\n" + "c2VjcmV0" * 8 + "\n-----END PRIVATE KEY-----\n"
    (tmp_path / "broken.json").write_text(json.dumps({**good, "private_key": broken}))
    err = usage_error(tmp_path, {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "broken.json")})
    assert "cannot configure Google Cloud Storage access to gs://some-bucket/p" in err, err
    assert "QUJDQUJD" not in err and "c2VjcmV0c2Vj" not in err, err
    err = usage_error(tmp_path, {"GOOGLE_SERVICE_ACCOUNT_KEY": json.dumps({**good, "private_key": broken})})
    assert "QUJDQUJD" not in err and "c2VjcmV0c2Vj" not in err, err

    (tmp_path / "federated.json").write_text(json.dumps({
        "type": "external_account", "audience": "//iam.googleapis.com/projects/1/locations/global/x",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": str(tmp_path / "token")}}))
    err = usage_error(tmp_path, {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "federated.json")})
    assert "external_account" in err and "Workload Identity" in err, err

    # gcloud's own file is found without a variable; a user's refresh token is never echoed.
    adc = tmp_path / ".config" / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir(parents=True)
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "refresh_token": "1//refresh-secret"}))
    err = usage_error(tmp_path, {})
    assert "gcloud's application-default credentials" in err and "client_secret" in err and "refresh-secret" not in err

    # plain http to another host is refused before any request
    (tmp_path / "remote.json").write_text(json.dumps({**good, "gcs_base_url": "http://gcs.example.internal:4443"}))
    err = usage_error(tmp_path, {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "remote.json")})
    assert "plain http on a non-loopback host" in err and "LIFELINE_GCS_ALLOW_HTTP" in err, err
    assert_no_secret(new_private_key(), err)
    assert_no_secret(fake_gcs.private_key, err)


def test_gcs_exclusive_and_multipart_writes(fake_gcs, monkeypatch):
    """What the repository relies on, straight on the backend: an exclusive put loses to an existing
    object (init, locks), and an object over 64 MiB goes up as a multipart upload and comes back whole."""
    from lifeline.repository.backend import open_backend
    from lifeline.repository.errors import RepositoryExists

    for k, v in fake_gcs.env().items():
        monkeypatch.setenv(k, v)
    be = open_backend(f"gs://{bucket(fake_gcs)}/direct")
    be.put("once", b"first", exclusive=True)
    with pytest.raises(RepositoryExists):
        be.put("once", b"second", exclusive=True)
    assert be.get("once") == b"first"
    big = os.urandom(MiB) * 65 + b"tail"
    be.put("big", big)
    assert be.stat("big").size == len(big) and be.get_range("big", 64 * MiB, 8) == big[64 * MiB:64 * MiB + 8]
    assert be.get("big") == big
    assert [o.name for o in be.list("")] == ["big", "once"]
    be.delete("big")
    be.delete("big")  # deleting what is gone is not an error
    assert be.stat("big") is None


def test_gcs_emulator_key_file_sends_no_token(tmp_path):
    """object_store's way to an emulator, which the backend takes too: a key file that says
    disable_oauth and names the server in gcs_base_url (here a server that checks no token)."""
    from tests.realparts.fixtures import missing
    from tests.realparts.gcs import FakeGCS, binary

    if binary() is None:
        missing("fake-gcs-server not in .tools/bin; run `make test` (scripts/build-fake-gcs.sh builds it)")
    with FakeGCS() as server:
        path = server.key_file()
        assert json.loads(path.read_text())["disable_oauth"] is True
        repo = Repo(f"gs://{server.make_bucket('plain')}/r", make_key(tmp_path / "key"),
                    env={"GOOGLE_SERVICE_ACCOUNT": str(path)})
        repo.ok("init")
        s = repo.backup("--stdin", input=b"no token needed")
        assert repo.ok("restore", s["point_id"], "--to", "-").out == b"no token needed"


def test_gcs_errors_never_carry_the_key(fake_gcs, monkeypatch):
    """Should the service or the library ever echo a key back, the message says [secret] instead."""
    from lifeline.repository.backend_gcs import GCSBackend
    from lifeline.repository.errors import BackendError

    doc = json.loads(fake_gcs.key_file().read_text())
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT_KEY", json.dumps(doc))
    be = GCSBackend("some-bucket", "p")  # builds the store; makes no request
    line = secret_lines(fake_gcs.private_key)[3]
    err = be._err(RuntimeError(f"upstream said: {line}"), "read", "config")
    assert isinstance(err, BackendError) and line not in str(err) and "[secret]" in str(err), str(err)


