"""The real operator against the emulator over HTTP: status, Events, and no needless writes."""
from __future__ import annotations

import copy
from pathlib import Path

import aiohttp
import pytest
import yaml

from lifeline.api import BY_KIND, KINDS
from lifeline.planning import conditions

from tests.kube_client import Api

from .operator_harness import metric, running_operator, until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
NS = "hospital"


def examples() -> list[dict]:
    return [doc for p in EXAMPLES for doc in yaml.safe_load_all(p.read_text()) if doc]


def settled(emulator, kind: str, name: str, namespace: str = NS):
    """The stored object once the operator has observed its current generation."""
    obj = emulator.stored(BY_KIND[kind].resource, namespace, name)
    if obj and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]:
        return obj
    return None


def ready(obj: dict) -> dict:
    return conditions.find(obj["status"]["conditions"], "Ready")


@pytest.fixture
async def api(kubeconfig, emulator) -> Api:
    api = Api(kubeconfig)
    emulator.seed("v1/namespaces", {"metadata": {"name": NS}})
    yield api
    api.client.close()


async def test_every_example_gets_observed_generation_and_ready(emulator, kubeconfig, api):
    docs = examples()
    assert len(docs) >= 4
    async with running_operator(kubeconfig, emulator):
        for doc in docs:
            await api.create(doc)
        for doc in docs:
            name = doc["metadata"]["name"]
            obj = await emulator.wait_for(lambda: settled(emulator, doc["kind"], name))
            cond = ready(obj)
            if doc["kind"] == "FailoverPlan":
                # valid, but its workloads and the remote site's kubeconfig Secret do not exist here:
                # a person must fix that, so Ready says what and kstatus sees Stalled (held_ready)
                assert cond["status"] == "False", cond
                assert cond["reason"] in ("WorkloadNotFound", "KubeconfigSecretMissing"), cond
                assert cond["message"].startswith("SitesResolved: ") and "create Secret" in cond["message"]
                assert conditions.find(obj["status"]["conditions"], "Stalled")["status"] == "True"
            else:
                # every other kind says SpecValid for a valid spec; owners add what they know
                # (a BackupPolicy its CronJobs, a RestoreDrill its next run) after the common words
                assert (cond["status"], cond["reason"]) == ("True", "SpecValid"), cond
                assert cond["message"].startswith(f"{doc['kind']} spec is valid"), cond
            assert cond["observedGeneration"] == obj["metadata"]["generation"] == 1
    failed = [(w.method, w.path, w.status) for w in emulator.writes if w.status is None or w.status >= 400]
    assert failed == [], "every write the operator made must succeed"
    assert emulator.count_writes(subresource="status") == len(docs), "one status write per object"


async def test_an_invalid_manifest_gets_ready_false_with_the_reason_and_a_warning_event(emulator, kubeconfig, api):
    bad = yaml.safe_load((ROOT / "examples" / "backuppolicy-pacs-images.yaml").read_text())
    bad["metadata"]["name"] = "broken"
    bad["spec"]["tier"] = "D"
    bad["spec"]["schedule"]["incremental"] = "every 15 minutes"
    # The PVCs and the Secret the policy names exist: once fixed, it has nothing else to warn about.
    for claim in ("pacs-images", "backup-nfs"):
        emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": claim, "namespace": NS}})
    emulator.seed("v1/secrets", {"metadata": {"name": "offsite-s3-credentials", "namespace": NS},
                                 "data": {"AWS_ACCESS_KEY_ID": "a2V5", "AWS_SECRET_ACCESS_KEY": "c2VjcmV0"}})
    async with running_operator(kubeconfig, emulator) as ctx:
        await api.create(bad)
        obj = await emulator.wait_for(lambda: settled(emulator, "BackupPolicy", "broken"))
        cond = ready(obj)
        assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
        assert cond["message"].startswith("spec.tier: Input should be 'A', 'B' or 'C' (got 'D'); "
                                          "spec.schedule.incremental: 'every 15 minutes' is not a cron schedule")
        events = await emulator.wait_for(lambda: emulator.count_writes("events", namespace=NS, method="POST"))
        assert events == 1
        [event] = [e for e in await api.events() if e.involved_object.name == "broken"]
        assert (event.type, event.reason, event.involved_object.kind) == ("Warning", "InvalidSpec", "BackupPolicy")
        assert event.involved_object.uid == obj["metadata"]["uid"]
        assert "spec.tier" in event.message
        assert metric(ctx, "lifeline_spec_valid", kind="BackupPolicy", namespace=NS, name="broken") == 0

        # fixing the spec flips Ready back, at the new generation, with a Normal event
        await api.patch("BackupPolicy", "broken", {"spec": {"tier": "B", "schedule": {"incremental": "*/15 * * * *"}}})
        obj = await emulator.wait_for(lambda: settled(emulator, "BackupPolicy", "broken"))
        assert obj["metadata"]["generation"] == 2
        assert (ready(obj)["status"], ready(obj)["reason"]) == ("True", "SpecValid")
        await emulator.wait_for(lambda: emulator.count_writes("events", namespace=NS, method="POST") == 2)
        reasons = sorted(e.reason for e in await api.events() if e.involved_object.name == "broken")
        assert reasons == ["InvalidSpec", "SpecValid"]


async def test_an_invalid_drill_names_the_field_by_its_yaml_path(emulator, kubeconfig, api):
    doc = yaml.safe_load((ROOT / "examples" / "restoredrill-his-monthly.yaml").read_text())
    doc["spec"]["point"]["strategy"] = "Sometimes"  # the emulator, like a CRD without CEL, stores it
    async with running_operator(kubeconfig, emulator):
        await api.create(doc)
        obj = await emulator.wait_for(lambda: settled(emulator, "RestoreDrill", doc["metadata"]["name"]))
    cond = ready(obj)
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"].startswith("spec.point.strategy: Input should be 'Latest', 'Random' or 'Named'"), cond
    [event] = [e for e in await api.events() if e.involved_object.name == doc["metadata"]["name"]]
    assert (event.type, event.reason) == ("Warning", "InvalidSpec") and "spec.point.strategy" in event.message


async def test_a_spec_change_is_observed_at_its_new_generation(emulator, kubeconfig, api):
    doc = yaml.safe_load((ROOT / "examples" / "restoredrill-his-monthly.yaml").read_text())
    async with running_operator(kubeconfig, emulator):
        await api.create(doc)
        first = await emulator.wait_for(lambda: settled(emulator, "RestoreDrill", doc["metadata"]["name"]))
        await api.patch("RestoreDrill", doc["metadata"]["name"], {"spec": {"historyLimit": 24}})
        second = await emulator.wait_for(
            lambda: (o := settled(emulator, "RestoreDrill", doc["metadata"]["name"])) and
            o["metadata"]["generation"] == 2 and o
        )
        assert ready(second)["lastTransitionTime"] == ready(first)["lastTransitionTime"]


async def test_a_resync_of_unchanged_objects_writes_nothing(emulator, kubeconfig, api):
    docs = examples()
    async with running_operator(kubeconfig, emulator):
        for doc in docs:
            await api.create(doc)
        for doc in docs:
            await emulator.wait_for(lambda: settled(emulator, doc["kind"], doc["metadata"]["name"]))
        # our own status writes come back as watch events: let them be handled too
    before = len(emulator.writes)
    async with running_operator(kubeconfig, emulator) as ctx:  # a restart: the initial listing is a full resync
        seen = lambda: sum(metric(ctx, "lifeline_reconciles_total", kind=k.kind, result="unchanged") for k in KINDS)
        await until(lambda: seen() >= len(docs))
        # anything written would have to be an update of one of our objects; there is none
        assert emulator.count_writes(since=before) == 0
        assert sum(metric(ctx, "lifeline_reconciles_total", kind=k.kind, result="written") for k in KINDS) == 0


async def test_status_written_by_the_operator_never_touches_the_spec(emulator, kubeconfig, api):
    doc = yaml.safe_load((ROOT / "examples" / "failoverplan-monitoring.yaml").read_text())
    async with running_operator(kubeconfig, emulator):
        created = await api.create(copy.deepcopy(doc))
        obj = await emulator.wait_for(lambda: settled(emulator, "FailoverPlan", "icu-monitoring"))
    assert obj["spec"] == created["spec"]
    assert obj["metadata"]["generation"] == 1
    assert set(obj["metadata"].get("annotations") or {}) == set(), "no kopf bookkeeping on users' objects"
    assert not obj["metadata"].get("finalizers")


async def test_probes_and_metrics_are_served(emulator, kubeconfig, api):
    async with running_operator(kubeconfig, emulator) as ctx:
        await api.create(examples()[0])
        base = f"http://127.0.0.1:{ctx.health_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 200
            await until(lambda: metric(ctx, "lifeline_reconciles_total", kind=examples()[0]["kind"], result="written"))
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
        assert 'lifeline_build_info{version="0.1.0"} 1.0' in text
        assert "lifeline_reconciles_total{" in text


async def test_a_namespace_scoped_operator_leaves_other_namespaces_alone(emulator, kubeconfig, api):
    emulator.seed("v1/namespaces", {"metadata": {"name": "elsewhere"}})
    doc = examples()[0]
    async with running_operator(kubeconfig, emulator, namespaces=[NS]):
        await api.create(copy.deepcopy(doc), namespace="elsewhere")
        await api.create(copy.deepcopy(doc), namespace=NS)
        await emulator.wait_for(lambda: settled(emulator, doc["kind"], doc["metadata"]["name"], NS))
    untouched = emulator.stored(BY_KIND[doc["kind"]].resource, "elsewhere", doc["metadata"]["name"])
    assert "status" not in untouched or not untouched["status"]
