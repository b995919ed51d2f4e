"""Continuous policies against the emulator: the shipping Deployment follows the policy like the
CronJobs do (created, put right, restored, deleted, nothing written on a resync), and the RPO
follows what the shipper says it shipped (read from its status.json through pods/exec) against
the injected clock."""
from __future__ import annotations

import asyncio
import json

import pytest

from lifeline.controllers.backup_continuous import STATUS_COMMAND
from tests.integration.operator_harness import metric, running_operator, until

from .conftest import NS, cond, events, policy, settled, stored, wait_event

DEPLOYMENTS = "apps/v1/deployments"
CONTINUOUS = {"continuous": {"claimName": "pacs-data", "path": "/wal", "segmentPattern": "0*"}}


def continuous_policy(**spec) -> dict:
    return policy("icu", rpo="10s", incremental=None, source=CONTINUOUS, **spec)


def deployment(emulator, name="icu-ship"):
    return emulator.stored(DEPLOYMENTS, NS, name)


def _apps(api):
    import kubernetes

    return kubernetes.client.AppsV1Api(api.client)


async def test_the_shipping_deployment_follows_the_policy(emulator, kubeconfig, api, cluster, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(continuous_policy())
        obj = await settled(emulator, "icu")
        dep = await emulator.wait_for(lambda: deployment(emulator))
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
        assert [(r["kind"], r["uid"]) for r in dep["metadata"]["ownerReferences"]] == \
            [("BackupPolicy", obj["metadata"]["uid"])]
        assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == "wal-shipper"
        assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "ship"
        assert {c["metadata"]["name"] for c in _cronjobs(emulator)} == {"icu-full", "icu-prune"}
        assert (cond(obj, "Ready")["status"], cond(obj, "RPOAchievable")["reason"]) == ("True", "ContinuousShipping")
        assert emulator.count_writes(DEPLOYMENTS, method="POST") == 1

        # deleted by hand: it comes back; scaled by hand: put right
        await asyncio.to_thread(_apps(api).delete_namespaced_deployment, "icu-ship", NS)
        await emulator.wait_for(lambda: (d := deployment(emulator)) and d["metadata"]["uid"] != dep["metadata"]["uid"])
        await asyncio.to_thread(_apps(api).patch_namespaced_deployment, "icu-ship", NS, {"spec": {"replicas": 3}})
        await emulator.wait_for(lambda: deployment(emulator)["spec"]["replicas"] == 1)

        # suspended: zero replicas (kept, with its metrics endpoint's state); resumed: one again
        await api.patch("BackupPolicy", "icu", {"spec": {"suspend": True}})
        await emulator.wait_for(lambda: deployment(emulator)["spec"]["replicas"] == 0)
        await api.patch("BackupPolicy", "icu", {"spec": {"suspend": False}})
        await emulator.wait_for(lambda: deployment(emulator)["spec"]["replicas"] == 1)
        await settled(emulator, "icu", generation=3)
        await asyncio.sleep(0.3)  # let our own writes come back through the watch

    # a restarted operator finds everything as planned and writes nothing
    before = len(emulator.writes)
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        unchanged = lambda: metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="unchanged")
        await until(lambda: unchanged() >= 5, timeout=20)
        assert emulator.count_writes(since=before) == 0, [(w.method, w.path) for w in emulator.writes[before:]]

        # no longer continuous: the Deployment goes, the CronJobs stay
        await api.patch("BackupPolicy", "icu", {"spec": {"source": {"continuous": None,
                                                                    "pvc": {"claimName": "pacs-data"}}}})
        await emulator.wait_for(lambda: deployment(emulator) is None)
        obj = await settled(emulator, "icu", generation=4)
        assert cond(obj, "RPOAchievable")["reason"] != "ContinuousShipping"


def _cronjobs(emulator):
    import kmock

    return [o for (r, _, _), o in emulator._objects_of() if r == kmock.resource("batch/v1/cronjobs")]


def _seed_shipper_pod(emulator, name="icu-ship-7d9c5-abcde", owner="icu-ship-7d9c5", phase="Running"):
    emulator.seed("v1/pods", {
        "metadata": {"name": name, "namespace": NS,
                     "labels": {"app.kubernetes.io/instance": "icu", "app.kubernetes.io/component": "wal-shipper"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                          "uid": "rs-uid", "controller": True}]},
        "spec": {"containers": [{"name": "shipper", "image": "ghcr.io/lifeline-dr/lifeline:test"}]},
        "status": {"phase": phase},
    })


class Shipper:
    """Plays the shipper's status.json: what ``cat`` in its container prints."""

    def __init__(self):
        self.segment, self.closed_at, self.calls = None, None, []

    def __call__(self, req):
        self.calls.append((req.pod, req.container, req.command))
        if req.command != STATUS_COMMAND:
            return 1, "", "unexpected command"
        dests = [{"repository": r, "up": True, "error": "", "backlog": 0, "lag_seconds": 0.0,
                  "newest_shipped": self.segment, "newest_closed_at": self.closed_at,
                  "newest_shipped_at": self.closed_at and self.closed_at + 0.2}
                 for r in ("file:///destinations/local/repos/pacs", "file:///destinations/offsite/pacs")]
        return 0, json.dumps({"time": 0, "queue": 0, "queue_max": 256, "destinations": dests}), ""


@pytest.fixture
def shipper(emulator, monkeypatch):
    monkeypatch.setenv("LIFELINE_SHIP_STATUS_INTERVAL", "0")  # read on every timer round
    fake = Shipper()
    emulator.exec_handler = fake
    return fake


async def test_rpo_follows_the_newest_shipped_segment(emulator, kubeconfig, api, cluster, clock, shipper):
    _seed_shipper_pod(emulator, name="stranger-1", owner="someone-else")  # not the Deployment's: never asked
    _seed_shipper_pod(emulator)
    shipper.segment, shipper.closed_at = "000000010000000000000005", clock.now().timestamp() - 2
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await api.create(continuous_policy())
        obj = await emulator.wait_for(lambda: (o := stored(emulator, "icu")) and
                                      cond(o, "RPOMet").get("reason") == "WithinRPO" and o, timeout=20)
        met = cond(obj, "RPOMet")
        assert "000000010000000000000005 closed at 2026-11-23T09:59:58Z" in met["message"]
        assert "until 2026-11-23T10:00:08Z" in met["message"]
        assert obj["status"]["currentRPOSeconds"] == 2
        ach = cond(obj, "RPOAchievable")
        assert ach["status"] == "True" and "archive_timeout <= 9.5s" in ach["message"]
        await until(lambda: metric(ctx, "lifeline_rpo_seconds", namespace=NS, policy="icu", tier="B") == 2)
        assert {pod for pod, _, _ in shipper.calls} == {"icu-ship-7d9c5-abcde"}
        assert {c for _, c, _ in shipper.calls} == {"shipper"}

        # nothing new is shipped while the clock passes the 10 s RPO: breached, with a Warning
        clock.advance(30)
        obj = await emulator.wait_for(lambda: (o := stored(emulator, "icu")) and
                                      cond(o, "RPOMet").get("status") == "False" and o, timeout=10)
        met = cond(obj, "RPOMet")
        assert met["reason"] == "RPOBreached" and "ran out at 2026-11-23T10:00:08Z" in met["message"]
        assert obj["status"]["currentRPOSeconds"] == 32
        breach = await wait_event(emulator, "icu", "RPOBreached")
        assert len(breach) == 1 and breach[0]["type"] == "Warning"
        await until(lambda: metric(ctx, "lifeline_rpo_seconds", namespace=NS, policy="icu", tier="B") == 32)
        assert metric(ctx, "lifeline_backup_condition", namespace=NS, name="icu", type="RPOMet") == 0

        # the shipper catches up: met again, and said so
        shipper.segment, shipper.closed_at = "000000010000000000000006", clock.now().timestamp() - 1
        obj = await emulator.wait_for(lambda: (o := stored(emulator, "icu")) and
                                      cond(o, "RPOMet").get("status") == "True" and o, timeout=10)
        assert "000000010000000000000006" in cond(obj, "RPOMet")["message"]
        await wait_event(emulator, "icu", "RPORecovered")
        assert len(events(emulator, "icu", "RPOBreached")) == 1


async def test_an_unknown_shipped_position_is_said_not_guessed(emulator, kubeconfig, api, cluster, clock, shipper):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await api.create(continuous_policy())  # no shipper pod runs yet
        obj = await emulator.wait_for(lambda: (o := stored(emulator, "icu")) and
                                      "no running pod of Deployment icu-ship" in cond(o, "RPOMet").get("message", "")
                                      and o, timeout=20)
        assert cond(obj, "RPOMet")["reason"] == "AwaitingFirstBackup"
        _seed_shipper_pod(emulator)  # it runs, but has shipped nothing yet
        await emulator.wait_for(lambda: "has not shipped a segment yet" in
                                cond(stored(emulator, "icu"), "RPOMet").get("message", ""), timeout=10)
        clock.advance(11)
        obj = await emulator.wait_for(lambda: (o := stored(emulator, "icu")) and
                                      cond(o, "RPOMet").get("status") == "False" and o, timeout=10)
        assert cond(obj, "RPOMet")["reason"] == "NoSuccessfulBackup"
        assert shipper.calls, "the shipper was asked"


def test_a_missing_database_password_secret_is_named():
    """Pure status planner: the Secret pg_basebackup's PGPASSWORD comes from must exist."""
    from datetime import datetime, timezone

    from lifeline.planning import backup_status
    from lifeline.planning.backup_status import Inputs, Ref

    pg = dict(CONTINUOUS["continuous"], postgres={"env": [
        {"name": "PGPASSWORD", "valueFromSecret": {"name": "icu-db-replicator", "key": "password"}}]})
    body = continuous_policy()
    body["spec"]["source"] = {"continuous": pg}
    body["metadata"].update(namespace=NS, generation=1, uid="u1")
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
