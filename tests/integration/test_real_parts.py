"""Each real part the suite relies on really starts and really answers.

If one of these fails, every test built on that part is suspect: read this file's failure
first. Skipped (outside CI) when the part is not installed; see tests/realparts/fixtures.py.
"""

from __future__ import annotations

import base64
import re
import subprocess
import uuid

import obstore
from obstore.store import S3Store


def _run(*argv: object) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{argv} failed: {result.stderr}"
    return result.stdout + result.stderr


def test_openbao_transit_data_key_round_trip(openbao):
    client = openbao.client()
    assert client.is_authenticated()
    mount = f"transit-{uuid.uuid4().hex[:8]}"  # session server is shared: own mount per test
    client.sys.enable_secrets_engine("transit", path=mount)
    client.secrets.transit.create_key("lifeline-test", mount_point=mount)

    made = client.secrets.transit.generate_data_key(
        "lifeline-test", key_type="plaintext", mount_point=mount)["data"]
    plaintext = base64.b64decode(made["plaintext"])
    assert len(plaintext) == 32
    assert made["ciphertext"].startswith("vault:v1:")

    back = client.secrets.transit.decrypt_data(
        "lifeline-test", made["ciphertext"], mount_point=mount)["data"]
    assert base64.b64decode(back["plaintext"]) == plaintext


def test_s3_put_get_list_with_boto3_and_obstore(s3_server):
    bucket = s3_server.make_bucket(f"real-parts-{uuid.uuid4().hex[:8]}")
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="boto/one", Body=b"from boto3")
    assert s3.get_object(Bucket=bucket, Key="boto/one")["Body"].read() == b"from boto3"

    store = S3Store(bucket, endpoint=s3_server.endpoint, region=s3_server.region,
                    access_key_id=s3_server.access_key,
                    secret_access_key=s3_server.secret_key,
                    client_options={"allow_http": True})
    obstore.put(store, "obstore/two", b"from obstore")
    assert bytes(obstore.get(store, "obstore/two").bytes()) == b"from obstore"
    assert bytes(obstore.get(store, "boto/one").bytes()) == b"from boto3"

    listed = sorted(meta["path"] for batch in obstore.list(store) for meta in batch)
    assert listed == ["boto/one", "obstore/two"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == listed


def test_postgres_create_insert_count_with_psql(postgres):
    db = postgres.createdb(f"real_parts_{uuid.uuid4().hex[:8]}")
    out = postgres.psql(db, """
        CREATE TABLE patients (id serial PRIMARY KEY, name text NOT NULL);
        INSERT INTO patients (name) VALUES ('a'), ('b'), ('c');
        SELECT count(*) FROM patients;
    """)
    assert out.strip() == "3"
    assert postgres.psql(db, "SHOW fsync;").strip() == "off"
    assert postgres.dsn(db).endswith(f":{postgres.port}/{db}")


def test_kubectl_is_1_35(kubectl_bin):
    assert re.search(r"Client Version: v1\.35\.", _run(kubectl_bin, "version", "--client"))


def test_helm_is_4(helm_bin):
    assert re.match(r"v4\.", _run(helm_bin, "version", "--short"))


def test_promtool_runs(promtool_bin):
    assert "promtool, version" in _run(promtool_bin, "--version")


def test_restic_runs(restic_bin):
    assert re.match(r"restic \d+\.\d+", _run(restic_bin, "version"))
