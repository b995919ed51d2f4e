"""The source rooms: one per API source kind, named with the API's word, and the job plan speaks it."""
import json
from pathlib import Path

import pytest
import yaml

from lifeline.api.backuppolicy import SOURCE_KINDS, BackupPolicySpec, Source
from lifeline.messages import BackupPlan
from lifeline.planning import backup
from lifeline.sources import ROOMS, Ref, Seen, room_of
from tests.discovery import SERVED

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("backuppolicy-*.yaml"))
FACTS = backup.Facts(agent_image="lifeline:test", served=SERVED)


def test_every_source_kind_of_the_api_has_exactly_one_room_named_as_the_api_names_it():
    assert sorted(r.attribute for r in ROOMS.values()) == sorted(SOURCE_KINDS)
    for room in ROOMS.values():
        assert room.kind == Source.model_fields[room.attribute].alias, room


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_backup_job_plan_names_the_source_with_the_apis_word(path):
    body = yaml.safe_load(path.read_text())
    [kind] = body["spec"]["source"].keys()
    spec = BackupPolicySpec.model_validate(body["spec"])
    assert room_of(spec).kind == kind
    full = next(c for c in backup.plan(body, FACTS) if c["metadata"]["name"].endswith("-full"))
    pod = full["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if room_of(spec).runs_by_trigger:  # a trigger carries no plan: the data mover does
        pod = backup.pod_spec("hospital", body["metadata"]["name"], spec, "backup", "full", FACTS, "data-claim")
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    plan = BackupPlan.model_validate(json.loads(next(e["value"] for e in agent["env"]
                                                     if e["name"] == "LIFELINE_JOB_PLAN")))
    assert plan.source.kind == kind
    assert (plan.source.stream is not None) == (room_of(spec).restores_into == "command")
    mounted = {m["mountPath"] for m in agent["volumeMounts"]}
    assert plan.source.path.startswith(tuple(mounted)), "the agent reads the source where its pod mounts it"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_missing_claim_or_secret_the_source_needs_makes_it_unavailable(path):
    body = yaml.safe_load(path.read_text())
    spec = BackupPolicySpec.model_validate(body["spec"])
    room = room_of(spec)
    refs = room.references(spec)
    present = Seen("hospital", {r: Ref(True, frozenset({"password", "pw", "PGPASSWORD"})) for r in refs},
                   served=SERVED)
    assert room.availability(spec, present).status is True
    for missing in refs:
        seen = Seen("hospital", {**present.refs, missing: Ref(False)}, served=SERVED)
        found = room.availability(spec, seen)
        assert found.status is False, missing
        assert missing.split("/", 1)[1] in found.message


def test_a_resources_selection_leaves_out_what_the_cluster_rebuilds_and_honours_include_and_exclude():
    from lifeline.api.backuppolicy import ResourcesSource
    from lifeline.sources.resources import selection

    def names(**src):
        chosen, unknown = selection(ResourcesSource.model_validate(src), SERVED)
        return [r.name for r in chosen], unknown

    everything, _ = names()
    assert {"configmaps", "secrets", "deployments.apps", "wards.his.example.org", "pods"} <= set(everything)
    assert not {"events", "events.events.k8s.io", "endpoints", "leases.coordination.k8s.io", "namespaces",
                "controllerrevisions.apps", "recoverypoints.dr.lifeline.io", "restores.dr.lifeline.io",
                "pods.metrics.k8s.io", "bindings", "persistentvolumeclaims/status"} & set(everything)
    assert names(includeKinds=["Deployment", "configmaps", "wards.his.example.org"]) == (
        ["configmaps", "deployments.apps", "wards.his.example.org"], [])
    assert "secrets" not in names(excludeKinds=["Secret"])[0]
    assert names(includeKinds=["beds", "configmaps"]) == (["configmaps"], ["beds"])


def test_an_object_is_stored_without_what_the_server_sets_and_owned_pods_are_left_to_their_owner():
    from lifeline.agent.objects import cleaned, folder, left_out
    from lifeline.messages import ResourcePlan

    deployments = ResourcePlan(api_version="apps/v1", plural="deployments", kind="Deployment")
    served = {"metadata": {"name": "his-web", "uid": "u", "resourceVersion": "7", "generation": 2,
                           "creationTimestamp": "t", "managedFields": [{}], "labels": {"app": "his"}},
              "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
    assert cleaned(served, deployments, keep_status=False) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "his-web", "labels": {"app": "his"}},
        "spec": {"replicas": 2}}
    assert cleaned(served, deployments, keep_status=True)["status"] == {"readyReplicas": 2}
    assert folder(deployments) == "deployments.apps"
    pods = ResourcePlan(api_version="v1", plural="pods", kind="Pod", owned=True)
    assert folder(pods) == "pods"
    owned = {"metadata": {"name": "p", "ownerReferences": [{"kind": "ReplicaSet", "controller": True}]}}
    assert left_out(owned, pods) and not left_out({"metadata": {"name": "lonely"}}, pods)
    secrets = ResourcePlan(api_version="v1", plural="secrets", kind="Secret")
    assert left_out({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"}, secrets)
    assert not left_out({"metadata": {"name": "his-db"}, "type": "Opaque"}, secrets)


def test_a_resources_policy_runs_no_container_of_its_authors_and_names_its_reader_alone():
    from pydantic import ValidationError

    from lifeline.sources.resources import MAX_POLICY_NAME, reader_name

    body = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples/backuppolicy-his-objects.yaml").read_text())
    with pytest.raises(ValidationError, match="takes no fingerprint"):
        BackupPolicySpec.model_validate({**body["spec"], "fingerprint": {"image": "busybox", "command": ["true"]}})
    spec = BackupPolicySpec.model_validate(body["spec"])
    long = "x" * (MAX_POLICY_NAME + 1)
    assert len(reader_name("x" * MAX_POLICY_NAME)) == 63
    found = room_of(spec).availability(spec, Seen("hospital", served=SERVED, policy=long))
    assert (found.status, found.reason) == (False, "NameTooLong")
    with pytest.raises(backup.PlanError, match="at most 55 characters"):
        backup.plan({**body, "metadata": {**body["metadata"], "name": long}}, FACTS)


def test_a_restore_never_writes_an_objects_point_into_a_volume():
    from lifeline.planning import restore_job

    body = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples/backuppolicy-his-objects.yaml").read_text())
    spec = BackupPolicySpec.model_validate(body["spec"])
    point = {"metadata": {"name": "his-objects-1"}, "spec": {"copies": [{"destination": "site-b-s3", "snapshotId": "x"}]}}
    with pytest.raises(backup.PlanError, match="objects-restore") as refused:
        restore_job.restore_plan(point, "hospital", "his-objects", spec, point["spec"]["copies"][0],
                                 restore_job.RestoreTarget(claim_name="anywhere"))
    assert refused.value.reason == "ObjectsRestoreNotSupported"


def test_an_object_with_a_name_too_long_for_a_file_is_stored_under_its_digest():
    from lifeline.agent.objects import file_name

    assert file_name("his-settings") == "his-settings.json"
    long = "a" * 253
    assert len(file_name(long)) < 255 and file_name(long) != file_name("a" * 252)
