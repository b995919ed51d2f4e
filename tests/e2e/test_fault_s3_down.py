"""The off-site S3 destination goes down between two backups: the on-site copy still lands, a
RecoveryPoint is published with the copy it has, and the status names the destination that
failed (DestinationsReachable, OffSiteCopy); when S3 is back, the next backup heals both."""
from __future__ import annotations

import secrets

from tests.realparts.fixtures import missing
from tests.realparts.s3 import S3Server

from .conftest import cond, points, policy, recorded, settled, stored


async def test_offsite_s3_down_the_other_destination_still_succeeds(seeded, kube, clock):
    ok, reason = S3Server.available()
    if not ok:
        missing(reason)  # a skip locally, a failure under CI
    s3 = S3Server().start()  # this test's own server: taking it down touches no other test
    try:
        bucket = s3.make_bucket(f"offsite-{secrets.token_hex(4)}")
        port = s3.port
        kube.secret("offsite-s3", {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key})
        body = policy(destinations=[
            {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"}},
            {"name": "offsite", "offSite": True,
             "s3": {"bucket": bucket, "prefix": "pacs", "endpoint": s3.endpoint, "credentialsSecret": "offsite-s3"}},
        ])
        async with kube.operator(clock=clock):
            kube.create(body)
            await settled(kube)
            full = await kube.run_cronjob("pacs-full")
            assert full.phase == "Succeeded", kube.job_log(full.job)
            obj = await recorded(kube, full.job)
            assert cond(obj, "OffSiteCopy")["status"] == "True"

            s3.stop()  # the off-site store is gone
            clock.advance(900)
            incr = await kube.run_cronjob("pacs-incremental")
            obj = await recorded(kube, incr.job)
            dests = {d["name"]: d for d in obj["status"]["destinations"]}
            assert dests["local"]["lastOutcome"] == "Succeeded"
            assert dests["offsite"]["lastOutcome"] == "Failed"
            assert "S3" in dests["offsite"]["message"] and str(port) in dests["offsite"]["message"]
            reach = cond(obj, "DestinationsReachable")
            assert (reach["status"], reach["reason"]) == ("False", "DestinationFailed")
            assert reach["message"].startswith("offsite: the latest backup failed there"), reach
            assert "local" not in reach["message"].split(":")[0]
            newest = (await kube.wait_for(lambda: len(points(kube)) == 2 and points(kube), timeout=20))[-1]
            assert [c["destination"] for c in newest["spec"]["copies"]] == ["local"], "only where it landed"
            off = cond(obj, "OffSiteCopy")
            assert (off["status"], off["reason"]) == ("False", "NoOffSiteCopy") and "offsite" in off["message"]

            # S3 comes back on the same address: the next backup reaches both again
            s3 = S3Server()
            s3.port = port
            _restart_on(s3, port)
            assert bucket in [b["Name"] for b in s3.client().list_buckets()["Buckets"]], "same store, data kept"
            clock.advance(900)
            again = await kube.run_cronjob("pacs-full")
            obj = await recorded(kube, again.job)
            assert cond(obj, "DestinationsReachable")["status"] == "True", cond(obj, "DestinationsReachable")
            assert cond(obj, "OffSiteCopy")["status"] == "True"
            await kube.wait_for(lambda: stored(kube)["status"]["recoveryPoints"] == 3, timeout=20)
    finally:
        s3.stop()


def _restart_on(server: S3Server, port: int) -> None:
    """Start moto's server again on the port it had (the endpoint in the policy stays valid)."""
    from moto.server import ThreadedMotoServer

    from tests.realparts.ports import wait_for

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    server._server = moto
    wait_for(server._answers, server.startup_timeout, f"moto S3 server on {server.endpoint}")
