"""BackupPolicy destinations in Azure Blob Storage and Google Cloud Storage, on the real control plane.

A pvc policy whose destination is a container in Azurite (SharedKey-signed requests: a wrong account
key is refused) or a bucket in fake-gcs-server (taking only the self-signed tokens of one service
account's RSA key), both on 127.0.0.1, which the process kubelet's Pods reach (they share the host
network). The backup runs as a real Job from the policy's CronJob; its credentials come from the
policy's Secret (Azure: environment variables; GCS: the key file mounted, named by
GOOGLE_APPLICATION_CREDENTIALS); a RestoreDrill then reads the point back from the store into a
sandbox (the Secret copied there) and verifies the files.
"""
from __future__ import annotations

import json
import secrets
import urllib.error

import pytest

from tests.drill.conftest import backed_up, drill, policy, run_drill
from tests.realparts.azurite import ACCOUNT, KEY

from .conftest import cond, points, stored


def _agent_env(job: dict) -> list[dict]:
    return job["spec"]["template"]["spec"]["containers"][0]["env"]


async def test_a_pvc_policy_backs_up_to_azure_and_a_drill_reads_it_back(seeded, kube, clock, azurite):
    from azure.storage.blob import BlobServiceClient

    container = azurite.make_container(f"pacs-{secrets.token_hex(4)}")
    kube.secret("pacs-azure", {"AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": KEY})
    body = policy(destinations=[
        {"name": "azure", "offSite": True,
         "azure": {"container": container, "prefix": "hospital/pacs", "endpoint": azurite.endpoint,
                   "credentialsSecret": "pacs-azure"}},
        # a container nobody made: the backup is stored in the other, and the status says which one is missing
        {"name": "missing", "azure": {"container": "no-such-container", "endpoint": azurite.endpoint,
                                      "credentialsSecret": "pacs-azure"}},
    ])
    async with kube.operator(clock=clock):
        point = await backed_up(kube, body)
        assert [c["destination"] for c in point["spec"]["copies"]] == ["azure"]
        assert point["spec"]["copies"][0]["repository"] == f"azure://{container}/hospital/pacs"
        conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={azurite.endpoint}")
        blobs = [b.name for b in BlobServiceClient.from_connection_string(conn).get_container_client(container)
                 .list_blobs(name_starts_with="hospital/pacs/")]
        assert "hospital/pacs/config" in blobs and any(b.startswith("hospital/pacs/data/") for b in blobs), blobs

        obj = await kube.wait_for(lambda: cond(stored(kube), "DestinationsReachable").get("reason")
                                  == "DestinationFailed" and stored(kube), timeout=20)
        dests = {d["name"]: d for d in obj["status"]["destinations"]}
        assert dests["azure"]["lastOutcome"] == "Succeeded"
        assert dests["missing"]["lastOutcome"] == "Failed"
        assert "container 'no-such-container' does not exist" in dests["missing"]["message"], dests["missing"]
        assert cond(obj, "OffSiteCopy")["status"] == "True"
        job = kube.stored("jobs", None, obj["status"]["lastBackup"]["job"])
        assert KEY not in json.dumps(job), "the key reaches the pod from its Secret, not from the Job"
        assert KEY not in kube.job_log(job["metadata"]["name"])

        kube.create(drill())
        run = await run_drill(kube, timeout=180)
        assert run["outcome"] == "Succeeded", run
        assert run["recoveryPoint"] == point["metadata"]["name"]


async def test_a_pvc_policy_backs_up_to_gcs_and_a_drill_reads_it_back(seeded, kube, clock, fake_gcs):
    bucket = fake_gcs.make_bucket(f"pacs-{secrets.token_hex(4)}")
    key_file = fake_gcs.key_file(f"key-{secrets.token_hex(4)}.json")
    kube.secret("pacs-gcs", {"service-account.json": key_file.read_text()})
    body = policy(destinations=[
        {"name": "gcs", "offSite": True,
         "gcs": {"bucket": bucket, "prefix": "hospital/pacs", "credentialsSecret": "pacs-gcs",
                 "credentialsKey": "service-account.json"}},
    ])
    async with kube.operator(clock=clock):
        point = await backed_up(kube, body)
        assert [c["repository"] for c in point["spec"]["copies"]] == [f"gs://{bucket}/hospital/pacs"]
        names = fake_gcs.objects(bucket, "hospital/pacs/")
        assert "hospital/pacs/config" in names and any(n.startswith("hospital/pacs/data/") for n in names), names
        obj = await kube.wait_for(lambda: cond(stored(kube), "DestinationsReachable").get("status") == "True"
                                  and stored(kube), timeout=20)
        job = kube.stored("jobs", None, obj["status"]["lastBackup"]["job"])
        assert not [e for e in _agent_env(job) if "GOOGLE" in e["name"]], "the key is a file, not a variable"
        private = fake_gcs.private_key.decode().splitlines()[1]
        assert private not in json.dumps(job) and private not in kube.job_log(job["metadata"]["name"])

        kube.create(drill())
        run = await run_drill(kube, timeout=180)
        assert run["outcome"] == "Succeeded", run
        assert run["recoveryPoint"] == point["metadata"]["name"]


async def test_a_missing_container_is_refused_and_a_missing_secret_is_named_in_the_status(seeded, kube, clock):
    body = policy(destinations=[
        {"name": "azure", "offSite": True, "azure": {"container": "pacs", "accountName": "hospitaldr",
                                                     "credentialsSecret": "no-azure-secret"}},
        {"name": "gcs", "gcs": {"bucket": "hospital-dr", "credentialsSecret": "no-gcs-secret"}},
    ])
    async with kube.operator(clock=clock):
        # the API server refuses a destination without its container or bucket, naming the field
        for dest, field in (({"azure": {"credentialsSecret": "pacs-azure"}}, "azure.container"),
                            ({"gcs": {"prefix": "pacs", "credentialsSecret": "pacs-gcs"}}, "gcs.bucket")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                kube.create(policy("refused", destinations=[{"name": "store", **dest}]))
            text = str(refused.value)
            assert refused.value.code == 422 and f"spec.destinations[0].{field}: Required value" in text, text
        # ... and the validating webhook a continuous source that would ship to azure or gcs
        wal = policy("wal", destinations=[{"name": "gcs", "gcs": {"bucket": "hospital-dr",
                                                                  "credentialsSecret": "pacs-gcs"}}])
        wal["spec"]["source"] = {"continuous": {"claimName": "pacs-data"}}
        with pytest.raises(urllib.error.HTTPError) as refused:
            kube.create(wal)
        assert "a continuous source ships its segments to s3 and filesystem destinations only" in str(refused.value)

        kube.create(body)
        obj = await kube.wait_for(lambda: cond(stored(kube), "DestinationsReachable").get("reason")
                                  == "SecretNotFound" and stored(kube), timeout=30)
        text = cond(obj, "DestinationsReachable")["message"]
        assert f"Secret {kube.namespace}/no-azure-secret does not exist" in text, text
        assert f"Secret {kube.namespace}/no-gcs-secret does not exist: create it with the keys key.json" in text, text
        assert not points(kube)
