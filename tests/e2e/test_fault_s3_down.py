"""The off-site S3 destination goes down between two backups: the on-site copy still lands, a
RecoveryPoint is published with the copy it has, and the status names the destination that
failed (DestinationsReachable, OffSiteCopy); when S3 is back, the next backup heals both."""
from __future__ import annotations

import secrets

from tests.integration.operator_harness import running_operator
from tests.realparts.fixtures import missing
from tests.realparts.s3 import S3Server

from .conftest import NS, cond, points, policy, recorded, seed_secret, settled, stored


async def test_offsite_s3_down_the_other_destination_still_succeeds(
        emulator, kubeconfig, api, cluster, runner, clock, tmp_path):
    ok, reason = S3Server.available()
    if not ok:
        missing(reason)  # a skip locally, a failure under CI
    s3 = S3Server().start()  # this test's own server: taking it down touches no other test
    try:
        bucket = s3.make_bucket(f"offsite-{secrets.token_hex(4)}")
        port = s3.port
        seed_secret(emulator, "offsite-s3", {"AWS_ACCESS_KEY_ID": s3.access_key,
                                             "AWS_SECRET_ACCESS_KEY": s3.secret_key})
        body = policy(destinations=[
            {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"}},
            {"name": "offsite", "offSite": True,
             "s3": {"bucket": bucket, "prefix": "pacs", "endpoint": s3.endpoint, "credentialsSecret": "offsite-s3"}},
        ])
        async with running_operator(kubeconfig, emulator, clock=clock):
            await api.create(body)
            await settled(emulator)
            full = await runner.trigger(NS, "pacs-full")
            assert full.phase == "Succeeded", full.containers["agent"].log.read_text()
            obj = await recorded(emulator, full.job)
            assert cond(obj, "OffSiteCopy")["status"] == "True"

            s3.stop()  # the off-site store is gone
            clock.advance(900)
            incr = await runner.trigger(NS, "pacs-incremental")
            obj = await recorded(emulator, incr.job)
            dests = {d["name"]: d for d in obj["status"]["destinations"]}
            assert dests["local"]["lastOutcome"] == "Succeeded"
            assert dests["offsite"]["lastOutcome"] == "Failed"
            assert "S3" in dests["offsite"]["message"] and str(port) in dests["offsite"]["message"]
            reach = cond(obj, "DestinationsReachable")
            assert (reach["status"], reach["reason"]) == ("False", "DestinationFailed")
            assert reach["message"].startswith("offsite: the latest backup failed there"), reach
            assert "local" not in reach["message"].split(":")[0]
            newest = points(emulator)[-1]
            assert [c["destination"] for c in newest["spec"]["copies"]] == ["local"], "only where it landed"
            off = cond(obj, "OffSiteCopy")
            assert (off["status"], off["reason"]) == ("False", "NoOffSiteCopy") and "offsite" in off["message"]
            assert len(points(emulator)) == 2

            # S3 comes back on the same address: the next backup reaches both again
            s3 = S3Server()
            s3.port = port
            _restart_on(s3, port)
            assert bucket in [b["Name"] for b in s3.client().list_buckets()["Buckets"]], "same store, data kept"
            clock.advance(900)
            again = await runner.trigger(NS, "pacs-full")
            obj = await recorded(emulator, again.job)
            assert cond(obj, "DestinationsReachable")["status"] == "True", cond(obj, "DestinationsReachable")
            assert cond(obj, "OffSiteCopy")["status"] == "True"
            assert stored(emulator)["status"]["recoveryPoints"] == 3
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
