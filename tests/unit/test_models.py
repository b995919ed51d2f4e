"""The API models: what a person writes is accepted or refused with the field named."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lifeline.api import BY_KIND
from lifeline.api.common import format_duration, parse_duration
from lifeline.api.validation import problems_in_manifest

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.yaml"))

POLICY = {
    "apiVersion": "dr.lifeline.io/v1alpha1",
    "kind": "BackupPolicy",
    "metadata": {"name": "pacs"},
    "spec": {
        "tier": "B",
        "source": {"pvc": {"claimName": "pacs-images"}},
        "schedule": {"full": "0 1 * * *", "incremental": "*/15 * * * *"},
        "destinations": [{"name": "nfs", "filesystem": {"claimName": "backup-nfs"}}],
        "encryption": {"keyRef": "vault-transit://lifeline-pacs"},
    },
}


def problems(edit) -> list[str]:
    body = copy.deepcopy(POLICY)
    edit(body["spec"])
    _, _, found = problems_in_manifest(body)
    return [str(p) for p in found]


def test_the_reference_policy_is_valid():
    assert problems(lambda s: None) == []


def test_bad_cron_is_refused_naming_the_schedule():
    found = problems(lambda s: s["schedule"].update(incremental="*/15 * * *"))
    assert len(found) == 1
    assert found[0].startswith("spec.schedule.incremental: '*/15 * * *' is not a cron schedule")


def test_cron_with_a_seconds_field_is_refused_because_cronjobs_take_five():
    found = problems(lambda s: s["schedule"].update(full="0 0 1 * * *"))
    assert found and found[0].startswith("spec.schedule.full:")


def test_unknown_tier_is_refused_with_the_allowed_tiers():
    found = problems(lambda s: s.update(tier="D"))
    assert found == ["spec.tier: Input should be 'A', 'B' or 'C' (got 'D')"]


def test_two_sources_are_refused_naming_both():
    found = problems(lambda s: s["source"].update(command={"image": "postgres:16", "command": ["pg_dump", "his"]}))
    assert found == [
        "spec.source: set exactly one source (pvc, volumeSnapshot, command, continuous, resources); got pvc, command"
    ]


def test_no_source_kind_is_refused():
    found = problems(lambda s: s.update(source={}))
    assert found == ["spec.source: set exactly one source (pvc, volumeSnapshot, command, continuous, resources); got none"]


def test_no_destination_is_refused():
    assert problems(lambda s: s.update(destinations=[])) == ["spec.destinations: must list at least 1 entry"]


def test_missing_destinations_is_refused():
    assert problems(lambda s: s.pop("destinations")) == ["spec.destinations: is required"]


def test_negative_retention_is_refused():
    found = problems(lambda s: s.update(retention={"keepLast": 3, "keepDaily": -1}))
    assert found == ["spec.retention.keepDaily: Input should be greater than or equal to 0 (got -1)"]


def test_malformed_duration_is_refused_with_examples_of_good_ones():
    found = problems(lambda s: s.update(objectives={"rpo": "5 minutes"}))
    assert len(found) == 1
    assert found[0].startswith("spec.objectives.rpo: '5 minutes' is not a duration")
    assert "30s, 5m, 2h" in found[0]


def test_unknown_field_lists_the_allowed_ones():
    found = problems(lambda s: s.update(retension={"keepLast": 3}))
    assert found[0].startswith("spec.retension: unknown field; allowed here: tier, objectives, source")


def test_duplicate_destination_names_are_refused():
    dest = {"name": "nfs", "filesystem": {"claimName": "other"}}
    found = problems(lambda s: s["destinations"].append(dest))
    assert found == ["spec.destinations: destination names must be unique; repeated: nfs"]


def test_destination_needs_exactly_one_kind():
    found = problems(lambda s: s["destinations"][0].pop("filesystem"))
    assert found == ["spec.destinations[0]: set exactly one destination kind (s3, filesystem, azure, gcs); got none"]


def test_bad_names_get_a_readable_message():
    found = problems(lambda s: s["source"]["pvc"].update(claimName="Pacs_Images"))
    assert found == [
        "spec.source.pvc.claimName: 'Pacs_Images' is not a valid name: lowercase letters, digits "
        "and '-', starting and ending with a letter or digit"
    ]


def test_every_problem_is_reported_at_once():
    def many(s):
        s.update(tier="Z", destinations=[])
        s["schedule"]["full"] = "never"

    paths = [p.split(":")[0] for p in problems(many)]
    assert paths == ["spec.tier", "spec.schedule.full", "spec.destinations"]


@pytest.mark.parametrize(
    ("tier", "rpo", "rto"), [("A", 10, 300), ("B", 60, 1800), ("C", 300, 7200)]
)
def test_tiers_supply_objectives(tier, rpo, rto):
    body = copy.deepcopy(POLICY)
    body["spec"]["tier"] = tier
    _, model, found = problems_in_manifest(body)
    assert found == []
    assert (model.rpo_seconds, model.rto_seconds) == (rpo, rto)


def test_an_explicit_objective_overrides_the_tier():
    body = copy.deepcopy(POLICY)
    body["spec"]["objectives"] = {"rpo": "15m"}
    _, model, _ = problems_in_manifest(body)
    assert (model.rpo_seconds, model.rto_seconds) == (900, 1800)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("250ms", 0.25)]
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "1.5h", "-5s", "5min"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_durations_format_back():
    assert [format_duration(s) for s in (0, 59, 90, 3600, 90061)] == ["0s", "59s", "1m30s", "1h", "1d1h1m1s"]


def test_wrong_kind_and_api_version_are_named():
    body = copy.deepcopy(POLICY)
    body["apiVersion"] = "dr.lifeline.io/v1"
    _, _, found = problems_in_manifest(body)
    assert [str(p) for p in found] == ["apiVersion: must be dr.lifeline.io/v1alpha1 (got 'dr.lifeline.io/v1')"]
    _, _, found = problems_in_manifest({**body, "kind": "BackupPlan"})
    assert str(found[0]).startswith("kind: 'BackupPlan' is not a Lifeline kind")


def test_drill_point_selection_rules():
    info = BY_KIND["RestoreDrill"]
    ok = {"policyName": "his", "point": {"strategy": "Named", "name": "his-1"}}
    assert info.spec_model.model_validate(ok).point.name == "his-1"
    for bad, text in (
        ({"strategy": "Named"}, "strategy Named needs name: the RecoveryPoint to restore"),
        ({"strategy": "Latest", "name": "his-1"}, "name goes only with strategy Named (strategy is Latest)"),
        ({"strategy": "Latest", "window": "7d"}, "window goes only with strategy Random (strategy is Latest)"),
    ):
        body = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": "d"},
                "spec": {"policyName": "his", "point": bad}}
        _, _, found = problems_in_manifest(body)
        assert [str(p) for p in found] == [f"spec.point: {text}"]


def test_restore_needs_at_least_two_approvers():
    body = yaml.safe_load(Path("examples/restore-his.yaml").read_text())
    body["spec"]["requiredApprovals"] = 1
    _, _, found = problems_in_manifest(body)
    assert [str(p) for p in found] == ["spec.requiredApprovals: Input should be greater than or equal to 2 (got 1)"]


def test_failover_sites_must_differ():
    body = yaml.safe_load(Path("examples/failoverplan-monitoring.yaml").read_text())
    body["spec"]["standby"]["name"] = body["spec"]["primary"]["name"]
    _, _, found = problems_in_manifest(body)
    assert [str(p) for p in found] == ["spec.standby: standby must be a different site from primary (both are 'site-a')"]


def test_health_check_timeout_must_fit_in_its_interval():
    body = yaml.safe_load(Path("examples/failoverplan-monitoring.yaml").read_text())
    body["spec"]["primary"]["healthChecks"][0].update(interval="5s", timeout="10s")
    _, _, found = problems_in_manifest(body)
    assert [str(p) for p in found] == ["spec.primary.healthChecks[0]: timeout 10s is longer than interval 5s"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid_for_its_model(path):
    for doc in yaml.safe_load_all(path.read_text()):
        _, model, found = problems_in_manifest(doc)
        assert found == [], found
        assert model is not None


def test_there_is_an_example_of_every_kind_a_user_writes():
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in EXAMPLES}
    assert kinds >= {"BackupPolicy", "RestoreDrill", "Restore", "FailoverPlan"}
