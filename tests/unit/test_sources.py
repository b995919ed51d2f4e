"""The source rooms: one per API source kind, named with the API's word, and the job plan speaks it."""
import json
from pathlib import Path

import pytest
import yaml

from lifeline.api.backuppolicy import SOURCE_KINDS, BackupPolicySpec, Source
from lifeline.messages import BackupPlan
from lifeline.planning import backup
from lifeline.sources import ROOMS, Ref, Seen, room_of

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("backuppolicy-*.yaml"))
FACTS = backup.Facts(agent_image="lifeline:test")


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
    present = Seen("hospital", {r: Ref(True, frozenset({"password", "pw", "PGPASSWORD"})) for r in refs})
    assert room.availability(spec, present).status is True
    for missing in refs:
        seen = Seen("hospital", {**present.refs, missing: Ref(False)})
        found = room.availability(spec, seen)
        assert found.status is False, missing
        assert missing.split("/", 1)[1] in found.message
