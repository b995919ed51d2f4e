"""Continuous policies on the real control plane: the shipping Deployment follows the policy like the
CronJobs do (created, put right, restored, deleted, nothing written on a resync), its Pod really
ships the segments dropped into the claim, and the RPO follows what the shipper says it shipped
(its status.json, read through a real pods/exec) against the injected clock. A segment's close
time is its file's modification time, which the test sets."""
from __future__ import annotations

import asyncio
import os
import urllib.parse
from datetime import timedelta

from lifeline.clock import rfc3339
from lifeline.clock import parse_time
from tests.integration.operator_harness import metric, until

from .conftest import cond, events, policy, settled, settled_by, stored, unchanged, wait_event

DEPLOYMENTS = "apps/v1/deployments"
CONTINUOUS = {"continuous": {"claimName": "pacs-data", "path": "/wal", "segmentPattern": "0*"}}


def continuous_policy(**spec) -> dict:
    return policy("icu", rpo="10s", incremental=None, source=CONTINUOUS, **spec)


def deployment(kube, name="icu-ship"):
    return kube.stored(DEPLOYMENTS, None, name)


def close_segment(volumes, name: str, closed_at: float) -> None:
    """A closed segment, as the database's archive_command leaves one: complete, renamed in."""
    wal = volumes["pacs-data"] / "wal"
    wal.mkdir(exist_ok=True)
    part = wal / f".{name}.partial"
    part.write_bytes(os.urandom(4096))
    os.utime(part, (closed_at, closed_at))
    part.rename(wal / name)


def shipper_pods(kube) -> list[dict]:
    return [p for p in kube.objects("pods", selector="app.kubernetes.io/component=wal-shipper")
            if (p.get("status") or {}).get("phase") == "Running"]


def execs(kube) -> list[tuple[str, str]]:
    """(pod, container) of every exec the operator made, from the API server's audit log (a websocket
    exec is a GET, recorded because the session audits the operator's reads too)."""
    out = []
    for event in kube.cluster.requests(kube.operator_user, since=kube.mark):
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "pods" and ref.get("subresource") == "exec":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(event["requestURI"]).query)
            out.append((ref.get("name"), (query.get("container") or [None])[0]))
    return out


async def test_the_shipping_deployment_follows_the_policy(kube, seeded, clock):
    async with kube.operator(clock=clock) as first:
        kube.create(continuous_policy())
        obj = await settled(kube, "icu")
        dep = await kube.wait_for(lambda: deployment(kube))
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
        assert [(r["kind"], r["uid"]) for r in dep["metadata"]["ownerReferences"]] == \
            [("BackupPolicy", obj["metadata"]["uid"])]
        assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == "wal-shipper"
        assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "ship"
        assert {c["metadata"]["name"] for c in kube.objects("cronjobs")} == {"icu-full", "icu-prune", "icu-maintenance"}
        assert (cond(obj, "Ready")["status"], cond(obj, "RPOAchievable")["reason"]) == ("True", "ContinuousShipping")
        assert kube.count_writes(DEPLOYMENTS, method="POST") == 1
        await kube.wait_for(lambda: shipper_pods(kube), timeout=30)  # the Deployment's Pod really runs

        # deleted by hand: it comes back; scaled by hand: put right
        kube.delete(DEPLOYMENTS, "icu-ship")
        await kube.wait_for(lambda: (d := deployment(kube)) and d["metadata"]["uid"] != dep["metadata"]["uid"])
        kube.patch(DEPLOYMENTS, "icu-ship", {"spec": {"replicas": 3}})
        await kube.wait_for(lambda: deployment(kube)["spec"]["replicas"] == 1)

        # suspended: zero replicas (kept, with its metrics endpoint's state); resumed: one again
        kube.patch("BackupPolicy", "icu", {"spec": {"suspend": True}})
        await kube.wait_for(lambda: deployment(kube)["spec"]["replicas"] == 0)
        kube.patch("BackupPolicy", "icu", {"spec": {"suspend": False}})
        await kube.wait_for(lambda: deployment(kube)["spec"]["replicas"] == 1)
        await settled(kube, "icu", generation=3)
        # the shipper's Pod runs again and has been read: the status says what it will keep saying
        await kube.wait_for(lambda: "has not shipped a segment yet" in
                            cond(stored(kube, "icu"), "RPOMet").get("message", ""), timeout=30)
        await settled_by(first)  # our own writes came back through the watch and needed nothing more

    # a restarted operator finds everything as planned and writes nothing
    before = len(kube.writes)
    async with kube.operator(clock=clock) as ctx:
        await until(lambda: unchanged(ctx) >= 5, timeout=20)
        assert kube.count_writes(since=before) == 0, [(w.method, w.path) for w in kube.writes[before:]]

        # no longer continuous: the Deployment goes, the CronJobs stay
        kube.patch("BackupPolicy", "icu", {"spec": {"source": {"continuous": None, "pvc": {"claimName": "pacs-data"}}}})
        await kube.wait_for(lambda: deployment(kube) is None)
        obj = await settled(kube, "icu", generation=4)
        assert cond(obj, "RPOAchievable")["reason"] != "ContinuousShipping"


async def test_rpo_follows_the_newest_shipped_segment(kube, seeded, clock, volumes, monkeypatch):
    monkeypatch.setenv("LIFELINE_SHIP_STATUS_INTERVAL", "0")  # read on every timer round
    # a Pod that looks like a shipper but is not the Deployment's: never asked
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stranger-1", "labels": {
        "app.kubernetes.io/instance": "icu", "app.kubernetes.io/component": "wal-shipper"}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "shipper", "image": "busybox:1.36", "command": ["sleep", "300"]}]}})
    closed = clock.now() - timedelta(seconds=2)
    close_segment(volumes, "000000010000000000000005", closed.timestamp())
    async with kube.operator(clock=clock) as ctx:
        kube.create(continuous_policy())
        obj = await kube.wait_for(lambda: (o := stored(kube, "icu")) and
                                  cond(o, "RPOMet").get("reason") == "WithinRPO" and o, timeout=60)
        met = cond(obj, "RPOMet")
        assert f"000000010000000000000005 closed at {rfc3339(closed)}" in met["message"], met["message"]
        assert f"until {rfc3339(closed + timedelta(seconds=10))}" in met["message"]
        assert obj["status"]["currentRPOSeconds"] == 2
        ach = cond(obj, "RPOAchievable")
        assert ach["status"] == "True" and "archive_timeout <= 9.5s" in ach["message"]
        await until(lambda: metric(ctx, "lifeline_rpo_seconds", namespace=kube.namespace, policy="icu",
                                   tier="B") == 2)
        [pod] = [p["metadata"]["name"] for p in shipper_pods(kube) if p["metadata"]["name"] != "stranger-1"]
        assert set(execs(kube)) == {(pod, "shipper")}, "only the Deployment's Pod, only its shipper container"

        # nothing new is shipped while the clock passes the 10 s RPO: breached, with a Warning
        clock.advance(30)
        obj = await kube.wait_for(lambda: (o := stored(kube, "icu")) and
                                  cond(o, "RPOMet").get("status") == "False" and o, timeout=10)
        met = cond(obj, "RPOMet")
        assert met["reason"] == "RPOBreached"
        assert f"ran out at {rfc3339(closed + timedelta(seconds=10))}" in met["message"], met["message"]
        assert obj["status"]["currentRPOSeconds"] == 32
        breach = await wait_event(kube, "icu", "RPOBreached")
        assert len(breach) == 1 and breach[0]["type"] == "Warning"
        await until(lambda: metric(ctx, "lifeline_rpo_seconds", namespace=kube.namespace, policy="icu",
                                   tier="B") == 32)
        assert metric(ctx, "lifeline_backup_condition", namespace=kube.namespace, name="icu", type="RPOMet") == 0

        # the shipper catches up: met again, and said so
        close_segment(volumes, "000000010000000000000006", clock.now().timestamp() - 1)
        obj = await kube.wait_for(lambda: (o := stored(kube, "icu")) and
                                  cond(o, "RPOMet").get("status") == "True" and o, timeout=30)
        assert "000000010000000000000006" in cond(obj, "RPOMet")["message"]
        await wait_event(kube, "icu", "RPORecovered")
        assert len(events(kube, "icu", "RPOBreached")) == 1


async def test_an_unknown_shipped_position_is_said_not_guessed(kube, seeded, clock, monkeypatch):
    monkeypatch.setenv("LIFELINE_SHIP_STATUS_INTERVAL", "0")
    kube.cluster.stop_component("scheduler")  # the shipper's Pod stays Pending for now
    try:
        async with kube.operator(clock=clock):
            kube.create(continuous_policy())
            obj = await kube.wait_for(lambda: (o := stored(kube, "icu")) and "no running pod of Deployment icu-ship"
                                      in cond(o, "RPOMet").get("message", "") and o, timeout=30)
            assert cond(obj, "RPOMet")["reason"] == "AwaitingFirstBackup"
            await asyncio.to_thread(kube.cluster.start_component, "scheduler")  # it runs, has shipped nothing
            await kube.wait_for(lambda: "has not shipped a segment yet" in
                                cond(stored(kube, "icu"), "RPOMet").get("message", ""), timeout=30)
            # the 10 s RPO counts from the policy's creation (the API server's time): 11 s after it
            created = parse_time(obj["metadata"]["creationTimestamp"])
            clock.advance((created - clock.now()).total_seconds() + 11)
            obj = await kube.wait_for(lambda: (o := stored(kube, "icu")) and
                                      cond(o, "RPOMet").get("status") == "False" and o, timeout=10)
            assert cond(obj, "RPOMet")["reason"] == "NoSuccessfulBackup"
            assert execs(kube), "the shipper was asked"
    finally:
        kube.cluster.start_component("scheduler")  # nothing to do if it runs already


def test_a_missing_database_password_secret_is_named():
    """Pure status planner: the Secret pg_basebackup's PGPASSWORD comes from must exist."""
    from datetime import datetime, timezone

    from lifeline.planning import backup_status
    from lifeline.planning.backup_status import Inputs, Ref

    pg = dict(CONTINUOUS["continuous"], postgres={"env": [
        {"name": "PGPASSWORD", "valueFromSecret": {"name": "icu-db-replicator", "key": "password"}}]})
    body = continuous_policy()
    body["spec"]["source"] = {"continuous": pg}
    body["metadata"].update(namespace="hospital", generation=1, uid="u1")
    spec_refs = backup_status.required_refs(backup_status.BackupPolicySpec.model_validate(body["spec"]))
    assert "secret/icu-db-replicator" in spec_refs
    refs = {r: Ref(True, frozenset({"key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})) for r in spec_refs}
    refs["secret/icu-db-replicator"] = Ref(False)
    now = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    result = backup_status.plan_status(body, Inputs(now=now, refs=refs, cron_jobs=[("icu-full", "0 1 * * *")]))
    source = next(c for c in result.patch["conditions"] if c["type"] == "SourceAvailable")
    assert source["status"] == "False" and "icu-db-replicator" in source["message"]
    assert "PGPASSWORD of pg_basebackup" in source["message"]
    refs["secret/icu-db-replicator"] = Ref(True, frozenset({"password"}))
    result = backup_status.plan_status(body, Inputs(now=now, refs=refs, cron_jobs=[("icu-full", "0 1 * * *")]))
    source = next(c for c in result.patch["conditions"] if c["type"] == "SourceAvailable")
    assert source["status"] == "True" and "pg_basebackup from image postgres:16" in source["message"]
