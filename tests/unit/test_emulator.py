"""The emulator behaves like an API server where the operator depends on it.

Every test talks real HTTP to the emulator with the real clients (the ``kubernetes``
client in a worker thread, kubectl in a subprocess, kopf in the test's loop), and each
assertion is about something kmock's plain emulator gets wrong, so they can fail.
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from datetime import datetime, timezone

import aiohttp
import kmock
import kopf
import kubernetes
import pytest
from kubernetes.client.rest import ApiException

from lifeline.api import BY_KIND, KINDS
from lifeline.clock import FrozenClock
from lifeline.devstack.emulator import simple_crd
from tests.realparts import tools

G, V, P, NS = "dr.lifeline.io", "v1alpha1", "backuppolicies", "default"
POLICIES = f"{G}/{V}/{P}"


@pytest.fixture()
def client(kubeconfig):
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture()
def custom(client) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(client)


@pytest.fixture()
def core(client) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client)


async def call(fn, *args, **kwargs):
    """The sync client blocks; the server lives in this loop: call from a thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def fails(code: int, fn, *args, **kwargs) -> dict:
    """Assert the call fails with ``code`` and a Kubernetes Status body; return the body."""
    with pytest.raises(ApiException) as caught:
        await (fn(*args, **kwargs) if asyncio.iscoroutinefunction(fn) else call(fn, *args, **kwargs))
    assert caught.value.status == code, caught.value.body
    body = json.loads(caught.value.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == code
    return body


def policy(name: str = "p1", **extra) -> dict:
    return {"apiVersion": f"{G}/{V}", "kind": "BackupPolicy", "metadata": {"name": name},
            "spec": {"tier": "A"}, **extra}


async def create_policy(custom, name: str = "p1", **extra) -> dict:
    return await call(custom.create_namespaced_custom_object, G, V, NS, P, policy(name, **extra))


async def patch_policy(custom, body, name: str = "p1", *, status: bool = False, **kwargs) -> dict:
    fn = custom.patch_namespaced_custom_object_status if status else custom.patch_namespaced_custom_object
    return await call(fn, G, V, NS, P, name, body, **kwargs)


def rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


MERGE = {"_content_type": "application/merge-patch+json"}


# --------------------------------------------------------------------- identity and versions


async def test_create_assigns_uid_creation_timestamp_generation_and_resource_version(emulator, custom):
    emulator.clock = FrozenClock(datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc))
    created = await create_policy(custom)
    meta = created["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert meta["creationTimestamp"] == "2030-01-02T03:04:05Z"
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == emulator.resource_version and meta["resourceVersion"].isdigit()
    assert created["kind"] == "BackupPolicy" and created["apiVersion"] == f"{G}/{V}"

    other = await create_policy(custom, "p2")
    assert other["metadata"]["uid"] != meta["uid"]
    assert rv(other) > rv(created)


async def test_uid_and_creation_timestamp_are_immutable(custom):
    created = await create_policy(custom)
    meta = created["metadata"]

    patched = await patch_policy(custom, {"metadata": {"creationTimestamp": "2001-01-01T00:00:00Z",
                                                       "labels": {"a": "b"}}})
    assert patched["metadata"]["creationTimestamp"] == meta["creationTimestamp"]
    assert patched["metadata"]["uid"] == meta["uid"]

    body = await fails(422, patch_policy, custom, {"metadata": {"uid": str(uuid.uuid4())}})
    assert body["reason"] == "Invalid" and "metadata.uid" in body["message"]

    replacement = dict(patched, metadata=dict(patched["metadata"], uid=str(uuid.uuid4())))
    body = await fails(409, custom.replace_namespaced_custom_object, G, V, NS, P, "p1", replacement)
    assert body["reason"] == "Conflict" and "Precondition failed: UID" in body["message"]


async def test_resource_version_increases_on_every_write_and_a_stale_one_conflicts(emulator, custom):
    created = await create_policy(custom)
    spec_patched = await patch_policy(custom, {"spec": {"tier": "B"}})
    status_patched = await patch_policy(custom, {"status": {"recoveryPoints": 1}}, status=True)
    assert rv(created) < rv(spec_patched) < rv(status_patched)

    stale = dict(status_patched, metadata=dict(status_patched["metadata"], resourceVersion=str(rv(created))))
    body = await fails(409, custom.replace_namespaced_custom_object, G, V, NS, P, "p1", stale)
    assert body["reason"] == "Conflict"
    assert body["message"].startswith('Operation cannot be fulfilled on backuppolicies.dr.lifeline.io "p1"')
    assert body["details"] == {"name": "p1", "group": G, "kind": P}

    body = await fails(409, patch_policy, custom,
                       {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                        "spec": {"tier": "C"}})
    assert body["reason"] == "Conflict"

    current = {"metadata": {"resourceVersion": status_patched["metadata"]["resourceVersion"]}, "spec": {"tier": "C"}}
    assert (await patch_policy(custom, current))["spec"] == {"tier": "C"}
    assert emulator.stored(POLICIES, NS, "p1")["spec"] == {"tier": "C"}


async def test_a_no_op_write_stores_nothing_and_bumps_nothing(emulator, custom):
    created = await create_policy(custom)
    before, changes = emulator.resource_version, len(emulator.changes)
    same = await patch_policy(custom, {"spec": {"tier": "A"}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"] == before
    assert len(emulator.changes) == changes
    assert emulator.writes[-1].status == 200 and not emulator.writes[-1].changed


async def test_updates_of_custom_resources_must_carry_a_resource_version_builtins_need_not(custom, core):
    created = await create_policy(custom)
    unversioned = dict(created, metadata={"name": "p1", "namespace": NS})
    body = await fails(422, custom.replace_namespaced_custom_object, G, V, NS, P, "p1", unversioned)
    assert "metadata.resourceVersion" in body["message"]

    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    replaced = await call(core.replace_namespaced_config_map, "cm", NS, {"metadata": {"name": "cm"},
                                                                         "data": {"a": "2"}})
    assert replaced.data == {"a": "2"}


async def test_missing_and_duplicate_objects_get_status_errors(custom):
    body = await fails(404, custom.get_namespaced_custom_object, G, V, NS, P, "nope")
    assert body["reason"] == "NotFound" and body["message"] == 'backuppolicies.dr.lifeline.io "nope" not found'
    await fails(404, patch_policy, custom, {"spec": {"tier": "B"}}, name="nope")
    await fails(404, custom.delete_namespaced_custom_object, G, V, NS, P, "nope")

    await create_policy(custom)
    body = await fails(409, create_policy, custom)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'backuppolicies.dr.lifeline.io "p1" already exists'


async def test_generate_name_and_name_validation(custom, core):
    made = await call(core.create_namespaced_config_map, NS, {"metadata": {"generateName": "cfg-"}})
    assert re.fullmatch(r"cfg-[bcdfghjklmnpqrstvwxz2456789]{5}", made.metadata.name)
    body = await fails(422, core.create_namespaced_config_map, NS, {"metadata": {"name": "Not_Valid"}})
    assert body["reason"] == "Invalid" and "metadata.name" in body["message"]


# --------------------------------------------------------------------- generation and status


async def test_generation_moves_with_the_spec_only(custom, core):
    await create_policy(custom)
    assert (await patch_policy(custom, {"spec": {"tier": "B"}}))["metadata"]["generation"] == 2
    assert (await patch_policy(custom, {"metadata": {"labels": {"x": "y"}, "annotations": {"n": "m"}}})
            )["metadata"]["generation"] == 2
    assert (await patch_policy(custom, {"status": {"currentRPOSeconds": 5}}, status=True))["metadata"]["generation"] == 2
    assert (await patch_policy(custom, {"spec": {"tier": "C"}}))["metadata"]["generation"] == 3

    # A kind without spec: everything but metadata (and status) counts.
    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    labelled = await call(core.patch_namespaced_config_map, "cm", NS, {"metadata": {"labels": {"l": "1"}}}, **MERGE)
    assert labelled.metadata.generation == 1
    changed = await call(core.patch_namespaced_config_map, "cm", NS, {"data": {"a": "2"}}, **MERGE)
    assert changed.metadata.generation == 2


async def test_status_subresource_separates_status_from_the_rest_both_ways(emulator, custom):
    created = await create_policy(custom, status={"phase": "ignored on create"})
    assert "status" not in created

    with_status = await patch_policy(custom, {"status": {"recoveryPoints": 3}}, status=True)
    assert with_status["status"] == {"recoveryPoints": 3}

    # The main resource ignores status...
    main = await patch_policy(custom, {"spec": {"tier": "B"}, "status": {"recoveryPoints": 99}})
    assert main["spec"] == {"tier": "B"} and main["status"] == {"recoveryPoints": 3}
    replaced = await call(custom.replace_namespaced_custom_object, G, V, NS, P, "p1",
                          dict(main, status={"recoveryPoints": 100}))
    assert replaced["status"] == {"recoveryPoints": 3}

    # ...and /status ignores everything else.
    status = await patch_policy(custom, {"spec": {"tier": "Z"}, "metadata": {"labels": {"sneaky": "yes"}},
                                         "status": {"recoveryPoints": 4}}, status=True)
    assert status["spec"] == {"tier": "B"} and "labels" not in status["metadata"]
    assert status["status"] == {"recoveryPoints": 4}
    replaced = await call(custom.replace_namespaced_custom_object_status, G, V, NS, P, "p1",
                          dict(status, spec={"tier": "Y"}, status={"recoveryPoints": 5}))
    assert replaced["spec"] == {"tier": "B"} and replaced["status"] == {"recoveryPoints": 5}
    stored = emulator.stored(POLICIES, NS, "p1")
    assert stored["spec"] == {"tier": "B"} and stored["status"] == {"recoveryPoints": 5}

    # A stale resourceVersion is refused on /status too.
    await fails(409, patch_policy, custom, {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                                            "status": {"recoveryPoints": 6}}, status=True)


# --------------------------------------------------------------------- finalizers and deletion


async def test_finalizers_hold_deletion_until_they_are_removed(emulator, custom):
    await create_policy(custom, metadata={"name": "p1", "finalizers": ["lifeline.io/cleanup"]})
    await call(custom.delete_namespaced_custom_object, G, V, NS, P, "p1")

    held = await call(custom.get_namespaced_custom_object, G, V, NS, P, "p1")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["generation"] == 2  # the server marks a graceful deletion so
    again = await call(custom.delete_namespaced_custom_object, G, V, NS, P, "p1")
    assert again["metadata"]["resourceVersion"] == held["metadata"]["resourceVersion"]

    body = await fails(422, patch_policy, custom, {"metadata": {"finalizers": ["lifeline.io/cleanup", "new/one"]}})
    assert body["reason"] == "Invalid" and "no new finalizers can be added" in body["message"]

    await patch_policy(custom, {"metadata": {"finalizers": None}})
    await fails(404, custom.get_namespaced_custom_object, G, V, NS, P, "p1")
    assert [c.type for c in emulator.changes if c.resource == kmock.resource(POLICIES)] == \
        ["ADDED", "MODIFIED", "DELETED"]
    assert emulator.changes[-1].object["metadata"].get("finalizers") is None


async def test_deleting_a_namespace_deletes_its_contents_then_itself(emulator, core, custom):
    await call(core.create_namespace, {"metadata": {"name": "sandbox"}})
    await call(core.create_namespaced_config_map, "sandbox", {"metadata": {"name": "a"}})
    await call(custom.create_namespaced_custom_object, G, V, "sandbox", P,
               policy("held", metadata={"name": "held", "finalizers": ["x/y"]}))

    await call(core.delete_namespace, "sandbox")
    ns = await call(core.read_namespace, "sandbox")
    assert ns.status.phase == "Terminating"
    await fails(404, core.read_namespaced_config_map, "a", "sandbox")
    body = await fails(403, core.create_namespaced_config_map, "sandbox", {"metadata": {"name": "b"}})
    assert "being terminated" in body["message"]

    await call(custom.patch_namespaced_custom_object, G, V, "sandbox", P, "held", {"metadata": {"finalizers": []}})
    await fails(404, core.read_namespace, "sandbox")


async def test_garbage_collector_deletes_dependents_of_a_deleted_owner(emulator, core, custom):
    owner = await create_policy(custom)
    ref = {"apiVersion": f"{G}/{V}", "kind": "BackupPolicy", "name": "p1", "uid": owner["metadata"]["uid"]}
    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "bystander"}})

    await call(custom.delete_namespaced_custom_object, G, V, NS, P, "p1")
    await fails(404, core.read_namespaced_config_map, "child", NS)
    assert (await call(core.read_namespaced_config_map, "bystander", NS)).metadata.name == "bystander"


# --------------------------------------------------------------------- lists and selectors


async def test_lists_carry_kind_api_version_and_resource_version(emulator, custom, core):
    await create_policy(custom)
    listed = await call(custom.list_namespaced_custom_object, G, V, NS, P)
    assert listed["kind"] == "BackupPolicyList" and listed["apiVersion"] == f"{G}/{V}"
    assert listed["metadata"]["resourceVersion"] == emulator.resource_version
    assert [i["metadata"]["name"] for i in listed["items"]] == ["p1"]

    raw = await call(core.list_namespaced_config_map, NS, _preload_content=False)
    body = json.loads(raw.data)
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"] == emulator.resource_version


async def test_lists_page_with_limit_and_continue(custom):
    for name in ("a", "b", "c"):
        await create_policy(custom, name)
    first = await call(custom.list_namespaced_custom_object, G, V, NS, P, limit=2)
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 1
    rest = await call(custom.list_namespaced_custom_object, G, V, NS, P, limit=2,
                      _continue=first["metadata"]["continue"])
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"] and not rest["metadata"].get("continue")


@pytest.mark.parametrize("selector, expected", [
    ("app=web", ["web-1", "web-2"]),
    ("app==web,tier=front", ["web-1"]),
    ("app!=web", ["db", "plain"]),
    ("app in (web, db)", ["db", "web-1", "web-2"]),
    ("app notin (web)", ["db", "plain"]),
    ("tier", ["db", "web-1"]),
    ("!tier", ["plain", "web-2"]),
])
async def test_label_selectors_filter_lists(core, selector, expected):
    for name, labels in [("web-1", {"app": "web", "tier": "front"}), ("web-2", {"app": "web"}),
                         ("db", {"app": "db", "tier": "back"}), ("plain", {})]:
        await call(core.create_namespaced_config_map, NS, {"metadata": {"name": name, "labels": labels}})
    listed = await call(core.list_namespaced_config_map, NS, label_selector=selector)
    assert sorted(i.metadata.name for i in listed.items) == expected


async def test_field_selectors_and_malformed_selectors(core):
    for name in ("a", "b"):
        await call(core.create_namespaced_config_map, NS, {"metadata": {"name": name}})
    listed = await call(core.list_namespaced_config_map, NS, field_selector="metadata.name=b")
    assert [i.metadata.name for i in listed.items] == ["b"]
    await fails(400, core.list_namespaced_config_map, NS, label_selector="app in web")


# --------------------------------------------------------------------- watches


def _watch_until(list_fn, *args, stop_name: str, **kwargs) -> list[tuple[str, dict]]:
    """Collect watch events until ``stop_name`` shows up (the server ends the watch after 30 s)."""
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(list_fn, *args, timeout_seconds=30, **kwargs):
        obj = event["raw_object"]
        if obj["metadata"]["name"] == stop_name:
            watch.stop()
            break
        events.append((event["type"], obj))
    return events


async def test_watch_from_a_list_delivers_exactly_one_event_per_stored_write(custom):
    listed = await call(custom.list_namespaced_custom_object, G, V, NS, P)
    watching = asyncio.create_task(call(_watch_until, custom.list_namespaced_custom_object, G, V, NS, P,
                                        resource_version=listed["metadata"]["resourceVersion"],
                                        stop_name="sentinel"))
    results = [("ADDED", await create_policy(custom))]
    results.append(("MODIFIED", await patch_policy(custom, {"spec": {"tier": "B"}})))
    results.append(("MODIFIED", await patch_policy(custom, {"status": {"recoveryPoints": 1}}, status=True)))
    await patch_policy(custom, {"spec": {"tier": "B"}})  # a no-op: no event
    await fails(409, patch_policy, custom, {"metadata": {"resourceVersion": "1"}, "spec": {"tier": "X"}})
    results.append(("MODIFIED", await patch_policy(custom, {"metadata": {"finalizers": ["a/b"]}})))
    results.append(("MODIFIED", await call(custom.delete_namespaced_custom_object, G, V, NS, P, "p1")))
    results.append(("DELETED", await patch_policy(custom, {"metadata": {"finalizers": []}})))
    await create_policy(custom, "sentinel")

    events = await watching
    assert [(t, rv(o)) for t, o in events] == [(t, rv(o)) for t, o in results]
    assert [o for _, o in events] == [o for _, o in results]  # the very objects the writes answered
    assert events[2][1]["status"] == {"recoveryPoints": 1}
    assert events[-1][1]["metadata"]["finalizers"] == []


async def test_label_selected_watch_sees_objects_enter_and_leave_the_selection(core):
    rv0 = (await call(core.list_namespaced_config_map, NS)).metadata.resource_version
    watching = asyncio.create_task(call(_watch_until, core.list_namespaced_config_map, NS,
                                        label_selector="app=web", resource_version=rv0, stop_name="sentinel"))
    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "cm"}})
    await call(core.create_namespaced_secret, NS, {"metadata": {"name": "other-kind", "labels": {"app": "web"}}})
    await call(core.patch_namespaced_config_map, "cm", NS, {"metadata": {"labels": {"app": "web"}}}, **MERGE)
    await call(core.patch_namespaced_config_map, "cm", NS, {"data": {"k": "v"}}, **MERGE)
    await call(core.patch_namespaced_config_map, "cm", NS, {"metadata": {"labels": {"app": "db"}}}, **MERGE)
    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "sentinel", "labels": {"app": "web"}}})
    events = await watching
    assert [(t, o["metadata"]["labels"]["app"]) for t, o in events] == \
        [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "db")]


async def test_a_watch_without_resource_version_starts_with_the_current_objects(custom):
    await create_policy(custom, "existing")
    watching = asyncio.create_task(call(_watch_until, custom.list_namespaced_custom_object, G, V, NS, P,
                                        stop_name="sentinel"))
    await create_policy(custom, "sentinel")
    assert [(t, o["metadata"]["name"]) for t, o in await watching] == [("ADDED", "existing")]


async def test_a_watch_from_a_forgotten_resource_version_is_gone(emulator, custom):
    emulator.history_limit = 4
    first = await create_policy(custom)
    for tier in "BCDEFG":
        await patch_policy(custom, {"spec": {"tier": tier}})
    with pytest.raises(ApiException) as caught:
        await call(_watch_until, custom.list_namespaced_custom_object, G, V, NS, P,
                   resource_version=first["metadata"]["resourceVersion"], stop_name="never")
    assert caught.value.status == 410


async def test_initial_events_end_with_a_bookmark(emulator, kube_url):
    emulator.seed(POLICIES, policy("existing", metadata={"name": "existing", "namespace": NS}))
    url = f"{kube_url}/apis/{G}/{V}/namespaces/{NS}/{P}"
    params = {"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
              "allowWatchBookmarks": "true"}
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        lines = [json.loads(await response.content.readline()) for _ in range(2)]
    assert [e["type"] for e in lines] == ["ADDED", "BOOKMARK"]
    bookmark = lines[1]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["metadata"]["resourceVersion"] == emulator.resource_version


@pytest.mark.looptime
async def test_a_watch_ends_after_its_timeout_seconds(kube_url):
    url = f"{kube_url}/apis/{G}/{V}/namespaces/{NS}/{P}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session, \
            session.get(url, params={"watch": "true", "timeoutSeconds": "60"}) as response:
        assert [line async for line in response.content if line.strip()] == []
    assert loop.time() - started == pytest.approx(60, abs=1)  # loop time: looptime makes it instant


# --------------------------------------------------------------------- patches, events, CRDs


async def test_json_patch_with_a_failed_test_is_unprocessable(custom):
    created = await create_policy(custom)
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}]
    body = await fails(422, patch_policy, custom, ops, _content_type="application/json-patch+json")
    assert "testing value" in body["message"]
    ops[0]["value"] = created["metadata"]["resourceVersion"]
    patched = await patch_policy(custom, ops, _content_type="application/json-patch+json")
    assert patched["metadata"]["finalizers"] == ["x/y"]


async def test_strategic_merge_patch_merges_containers_by_name(client):
    apps = kubernetes.client.AppsV1Api(client)
    containers = [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
                  {"name": "sidecar", "image": "side:1"}]
    await call(apps.create_namespaced_deployment, NS, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": containers}}}})
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}},
             "metadata": {"finalizers": ["one/two"]}}
    patched = await call(apps.patch_namespaced_deployment, "web", NS, patch,
                         _content_type="application/strategic-merge-patch+json")
    got = {c.name: (c.image, [p.container_port for p in c.ports or []]) for c in patched.spec.template.spec.containers}
    assert got == {"app": ("app:2", [80]), "sidecar": ("side:1", [])}
    assert patched.metadata.generation == 2


async def test_strategic_merge_patch_is_refused_for_custom_resources(custom):
    await create_policy(custom)
    body = await fails(415, patch_policy, custom, {"spec": {"tier": "B"}},
                       _content_type="application/strategic-merge-patch+json")
    assert body["reason"] == "UnsupportedMediaType"


async def test_events_can_be_created_and_listed_in_both_apis(client, core):
    ref = {"apiVersion": f"{G}/{V}", "kind": "BackupPolicy", "name": "p1", "namespace": NS}
    await call(core.create_namespaced_event, NS, {"metadata": {"generateName": "p1."}, "involvedObject": ref,
                                                  "reason": "Scheduled", "message": "m", "type": "Normal"})
    events = await call(core.list_namespaced_event, NS, field_selector="involvedObject.name=p1")
    assert [e.reason for e in events.items] == ["Scheduled"]

    new_api = kubernetes.client.EventsV1Api(client)
    await call(new_api.create_namespaced_event, NS, {
        "metadata": {"name": "e2"}, "regarding": ref, "reason": "Backup", "note": "n", "type": "Normal",
        "action": "Backup", "reportingController": "lifeline", "reportingInstance": "x",
        "eventTime": "2030-01-01T00:00:00.000000Z"})
    assert [e.reason for e in (await call(new_api.list_namespaced_event, NS)).items] == ["Backup"]


async def test_every_lifeline_kind_is_served_namespaced_with_a_status_subresource(emulator, kube_url):
    async with aiohttp.ClientSession() as session, session.get(f"{kube_url}/apis/{G}/{V}") as response:
        listing = await response.json()
    entries = {r["name"]: r for r in listing["resources"]}
    for info in KINDS:
        assert entries[info.plural]["kind"] == info.kind and entries[info.plural]["namespaced"] is True
        assert sorted(entries[info.plural]["shortNames"]) == sorted(info.short_names)
        assert entries[f"{info.plural}/status"]["verbs"] == ["get", "patch", "update"]
        assert "shortNames" not in entries[f"{info.plural}/status"]
        assert emulator.stored("apiextensions.k8s.io/v1/customresourcedefinitions", None, info.crd_name)


async def test_a_created_crd_is_served_and_a_deleted_one_is_gone(client, custom):
    extensions = kubernetes.client.ApiextensionsV1Api(client)
    crd = simple_crd("example.com", "v1", "widgets", "Widget")
    await call(extensions.create_custom_resource_definition, crd)
    made = await call(custom.create_namespaced_custom_object, "example.com", "v1", NS, "widgets",
                      {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert made["metadata"]["generation"] == 1
    established = await call(extensions.read_custom_resource_definition, "widgets.example.com")
    assert {c.type: c.status for c in established.status.conditions}["Established"] == "True"

    await call(extensions.delete_custom_resource_definition, "widgets.example.com")
    await fails(404, custom.list_namespaced_custom_object, "example.com", "v1", NS, "widgets")


# --------------------------------------------------------------------- write counting


async def test_writes_are_counted_per_resource_and_outcome(emulator, custom, core):
    start = len(emulator.writes)
    await create_policy(custom)
    await patch_policy(custom, {"spec": {"tier": "A"}})  # no-op
    await patch_policy(custom, {"status": {"recoveryPoints": 1}}, status=True)
    await call(core.create_namespaced_config_map, NS, {"metadata": {"name": "cm"}})
    await call(custom.list_namespaced_custom_object, G, V, NS, P)  # a read: not a write
    await fails(404, custom.delete_namespaced_custom_object, G, V, NS, P, "nope")

    assert emulator.count_writes(since=start) == 5
    assert emulator.count_writes(BY_KIND["BackupPolicy"], since=start) == 4
    assert emulator.count_writes("backuppolicies", since=start, changed_only=True) == 2
    assert emulator.count_writes(POLICIES, since=start, subresource="status") == 1
    assert emulator.count_writes("configmaps", since=start, method="post") == 1
    assert [w.status for w in emulator.writes[start:]] == [201, 200, 200, 201, 404]


async def test_a_user_reaction_answers_before_anything_is_stored(emulator, custom):
    await create_policy(custom)
    emulator["patch", re.compile(rf"/apis/{G}/{V}/namespaces/{NS}/{P}/p1")] << 503
    await fails_plain(503, patch_policy, custom, {"spec": {"tier": "B"}})
    assert emulator.stored(POLICIES, NS, "p1")["spec"] == {"tier": "A"}
    assert emulator.writes[-1].status is None and not emulator.writes[-1].changed


async def fails_plain(code: int, fn, *args, **kwargs) -> None:
    with pytest.raises(ApiException) as caught:
        await (fn(*args, **kwargs) if asyncio.iscoroutinefunction(fn) else call(fn, *args, **kwargs))
    assert caught.value.status == code


# --------------------------------------------------------------------- kubectl


async def kubectl(kubeconfig, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    path = tools.kubectl_path()
    if path is None:
        pytest.skip("kubectl is not in .tools/bin; run `make test` (scripts/install-tools.py unpacks it)")
    proc = await asyncio.create_subprocess_exec(
        str(path), "--kubeconfig", str(kubeconfig), *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin else None)
    return proc.returncode, out.decode(), err.decode()


MANIFEST = """
apiVersion: dr.lifeline.io/v1alpha1
kind: BackupPolicy
metadata: {name: his-db, namespace: default}
spec: {tier: A}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1", ports: [{containerPort: 80}]}
"""


async def test_kubectl_gets_a_custom_kind_with_its_printer_columns(emulator, kubeconfig):
    emulator.seed(POLICIES, policy("his-db", metadata={"name": "his-db", "namespace": NS},
                                   status={"conditions": [{"type": "Ready", "status": "True"}]}))
    code, out, err = await kubectl(kubeconfig, "get", "backuppolicies")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["NAME", "TIER", "LAST", "SUCCESS", "RPO", "READY", "AGE"]
    assert row.split()[:3] == ["his-db", "A", "True"]
    code, out, err = await kubectl(kubeconfig, "get", "bp", "his-db", "-o", "jsonpath={.metadata.uid}")
    assert code == 0 and out == emulator.stored(POLICIES, NS, "his-db")["metadata"]["uid"]
    assert "Warning" not in err


async def test_kubectl_apply_creates_then_patches_and_leaves_unchanged_alone(emulator, kubeconfig):
    code, out, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=MANIFEST)
    assert code == 0, err
    assert "backuppolicy.dr.lifeline.io/his-db created" in out and "deployment.apps/web created" in out

    start = len(emulator.writes)
    code, out, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=MANIFEST)
    assert code == 0, err
    assert out.count("unchanged") == 2
    assert emulator.count_writes(since=start, changed_only=True) == 0

    changed = MANIFEST.replace("tier: A", "tier: B").replace("nginx:1", "nginx:2")
    code, out, err = await kubectl(kubeconfig, "apply", "-f", "-", stdin=changed)
    assert code == 0, err
    assert "configured" in out
    stored = emulator.stored(POLICIES, NS, "his-db")
    assert stored["spec"] == {"tier": "B"} and stored["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    deployment = emulator.stored("apps/v1/deployments", NS, "web")
    assert deployment["spec"]["template"]["spec"]["containers"] == [
        {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]}]
    # kubectl patched custom resources with a merge patch and builtins with a strategic one.
    patches = [r.headers.get("Content-Type") for r in emulator if r.method == "PATCH"]
    assert set(patches) == {"application/merge-patch+json", "application/strategic-merge-patch+json"}


# --------------------------------------------------------------------- kopf


async def test_kopf_runs_a_full_lifecycle_against_the_emulator(emulator, kubeconfig):
    registry = kopf.OperatorRegistry()  # not the global one: no handlers leak between tests

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        return kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.create(G, V, P, registry=registry)
    @kopf.on.update(G, V, P, registry=registry)
    def reconcile(spec, meta, patch, **_):
        patch.status["observedGeneration"] = meta["generation"]
        patch.status["tier"] = spec["tier"]

    @kopf.on.delete(G, V, P, registry=registry)
    def cleanup(**_):
        pass

    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    settings.posting.enabled = False
    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, settings=settings, namespaces=[NS],
                                                 standalone=True, stop_flag=stop))
    try:
        def stored():
            return emulator.stored(POLICIES, NS, "p1") or {}

        emulator.seed(POLICIES, policy(metadata={"name": "p1", "namespace": NS}))
        await emulator.wait_for(lambda: stored().get("status", {}).get("observedGeneration") == 1)
        assert stored()["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        assert emulator.count_writes(POLICIES, subresource="status", changed_only=True) >= 1

        async with aiohttp.ClientSession() as session:
            url = f"{kubeconfig_url(kubeconfig)}/apis/{G}/{V}/namespaces/{NS}/{P}/p1"
            await session.patch(url, json={"spec": {"tier": "B"}},
                                headers={"Content-Type": "application/merge-patch+json"})
            await emulator.wait_for(lambda: stored().get("status", {}).get("observedGeneration") == 2)
            assert stored()["status"]["tier"] == "B"
            await session.delete(url)
        await emulator.wait_for(lambda: emulator.stored(POLICIES, NS, "p1") is None)
    finally:
        stop.set()
        await asyncio.wait_for(operator, 30)


def kubeconfig_url(kubeconfig) -> str:
    import yaml

    return yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
