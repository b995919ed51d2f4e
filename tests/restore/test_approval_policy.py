"""Approval policies: "a critical restore needs the department head and the head of information
management", not any two approvers. The rules as pure functions, then on the real API server: the
groups come from the people's certificates through the admission webhook."""
from __future__ import annotations

import json

import pytest

from lifeline.planning import restore_run
from lifeline.planning.approval_policy import (DEFAULT, PolicyError, choose, load, named_groups, needs_tier, tally,
                                               team_groups)
from tests.backup.conftest import policy

from .conftest import restore_body
from .helpers import catalogue, decide, phase, stored
from .test_restore_run import backed_up  # noqa: F401 - the fixture

HEADS = [{"name": "his-critical", "namespaces": ["his", "t-*"], "fromGroups": ["his-department-heads", "it-management"]}]


@pytest.mark.parametrize("text, says", [
    ("{", "not JSON"),
    ('{"name": "x"}', "a list of approval policies"),
    ('[{"approvals": 1}]', "never fewer than two people"),
    ('[{"approvals": 2, "fromGroups": ["a", "b", "c"]}]', "3 groups need at least as many approvals"),
    ('[{"namespace": ["his"]}]', "unknown field(s) namespace"),
    ('[{"fromGroups": "heads"}]', "fromGroups: a list of non-empty strings"),
    ('[{"separateTeams": [""]}]', "separateTeams: a list of non-empty strings"),
])
def test_a_policy_the_operator_cannot_read_is_refused_with_the_field(text, says):
    with pytest.raises(PolicyError, match=says.replace("(", r"\(").replace(")", r"\)")):
        load(text)


def test_the_first_matching_policy_applies_and_nothing_matching_means_two_approvers():
    policies = load(json.dumps([{"name": "tier-a", "tiers": ["A"], "approvals": 3}, *HEADS]))
    assert choose(policies, "his", "A").name == "tier-a"
    assert choose(policies, "his", "B").name == "his-critical"
    assert choose(policies, "t-123", None).name == "his-critical"
    assert choose(policies, "lab", "B") == DEFAULT and DEFAULT.approvals == 2
    assert needs_tier(policies) and not needs_tier(load(json.dumps(HEADS)))
    assert named_groups(policies) == {"his-department-heads", "it-management"}
    assert load("") == () and load(None) == ()


def test_one_person_fills_one_group_and_approvers_outside_the_groups_do_not_fill_them():
    [heads] = load(json.dumps(HEADS))
    dbas = [{"user": "alice", "groups": []}, {"user": "bob"}]
    counted = tally(heads, dbas)
    assert not counted.met and counted.missing_groups == ("his-department-heads", "it-management")
    assert counted.summary() == ("2 of 2 approvals (alice, bob); still needed: one from his-department-heads "
                                 "and one from it-management")
    both = [{"user": "gina", "groups": ["his-department-heads", "it-management"]}]
    assert tally(heads, both).missing_groups == ("it-management",)  # one person, one group
    # whoever holds both fills the group nobody else can
    mixed = both + [{"user": "erin", "groups": ["his-department-heads"]}]
    assert tally(heads, mixed).met
    assert tally(heads, [{"user": "erin", "groups": ["his-department-heads"]},
                         {"user": "frank", "groups": ["it-management"]}], requested=3).required == 3
    assert tally(DEFAULT, dbas).met


TEAMS = [{"name": "teams-apart", "separateTeams": ["hospital-dba", "pacs-dba"]}]


def test_an_approval_from_the_requesters_own_team_does_not_count_where_teams_are_kept_apart():
    [apart] = load(json.dumps(TEAMS))
    assert team_groups([apart]) == {"hospital-dba", "pacs-dba"} <= named_groups([apart])
    colleague = {"user": "alice", "groups": ["hospital-dba"]}
    others = [{"user": "bob", "groups": ["pacs-dba"]}, {"user": "frank", "groups": []}]
    counted = tally(apart, [colleague, *others], requester_groups=["hospital-dba", "dr-approvers"])
    assert counted.met and counted.approvers == ("bob", "frank") and counted.same_team == ("alice",)
    short = tally(apart, [colleague, others[0]], requester_groups=["hospital-dba"])
    assert not short.met
    assert short.summary() == "1 of 2 approvals (bob); not counted, same team as the requester: alice"
    # groups the policy does not name as teams keep no one apart, and without the requester's teams
    # recorded (no policy named them when the Restore was created) everyone counts
    assert tally(apart, [{"user": "gina", "groups": ["dr-approvers"]}, others[1]],
                 requester_groups=["dr-approvers"]).met
    assert tally(apart, [colleague, others[1]]).met


async def test_two_dbas_are_not_enough_where_the_heads_must_approve(kube, clock, fast_env, people, backed_up,
                                                                   audit_records):
    _, _, point = backed_up
    rules = json.dumps([{**HEADS[0], "namespaces": [kube.namespace]}])
    async with kube.operator(clock=clock, approval_policies=rules) as ctx:
        catalogue(kube, policy(), point)
        kube.create(restore_body(), user="carol")
        name = restore_body()["metadata"]["name"]
        await kube.wait_for(lambda: phase(kube, name) == "PendingApproval")
        for person in ("alice", "bob"):  # two approvers, neither head
            code, out = await decide(people[person], "approve", name, kube.namespace)
            assert code == 0, out
        await kube.wait_for(lambda: len(stored(kube, name)["status"].get("approvals") or []) == 2)
        status = stored(kube, name)["status"]
        assert status["phase"] == "PendingApproval" and status["approvalPolicy"] == "his-critical"
        assert status["missingGroups"] == ["his-department-heads", "it-management"]
        assert "still needed: one from his-department-heads and one from it-management" in status["message"]

        assert (await decide(people["erin"], "approve", name, kube.namespace))[0] == 0
        await kube.wait_for(lambda: stored(kube, name)["status"].get("missingGroups") == ["it-management"])
        assert phase(kube, name) == "PendingApproval"
        assert (await decide(people["frank"], "approve", name, kube.namespace))[0] == 0
        await kube.wait_for(lambda: phase(kube, name) in ("Running", "Succeeded", "Failed"))
        assert (await kube.finished(restore_run.job_name(name))).phase == "Succeeded"
        await kube.wait_for(lambda: phase(kube, name) == "Succeeded")
        # what the anomaly alerts count (docs/runbooks.md#anomalies-in-what-people-do)
        audited = ctx.metrics.audited
        assert audited.labels("approval", "succeeded", kube.namespace)._value.get() == 4
        assert audited.labels("restore", "started", kube.namespace)._value.get() == 1
    status = stored(kube, name)["status"]
    assert {a["user"]: a.get("groups") for a in status["approvals"]} == {
        "alice": None, "bob": None, "erin": ["his-department-heads"], "frank": ["it-management"]}
    approved = {r["actor"] for r in audit_records if r["action"] == "approval" and r["outcome"] == "succeeded"
                and r["subject"]["name"] == name}
    assert approved == {"alice", "bob", "erin", "frank"}


async def test_a_colleague_of_the_requester_cannot_release_a_restore_where_teams_are_kept_apart(
        kube, clock, fast_env, people, backed_up, audit_records):
    _, _, point = backed_up
    rules = json.dumps([{**TEAMS[0], "namespaces": [kube.namespace]}])
    async with kube.operator(clock=clock, approval_policies=rules) as ctx:
        catalogue(kube, policy(), point)
        kube.create(restore_body(), user="carol")  # carol is in hospital-dba
        name = restore_body()["metadata"]["name"]
        await kube.wait_for(lambda: phase(kube, name) == "PendingApproval")
        for person in ("alice", "bob"):  # alice is carol's colleague in hospital-dba; bob is not
            code, out = await decide(people[person], "approve", name, kube.namespace)
            assert code == 0, out
        await kube.wait_for(lambda: len(stored(kube, name)["status"].get("approvals") or []) == 2)
        status = stored(kube, name)["status"]
        assert status["phase"] == "PendingApproval", status
        assert "1 of 2 approvals (bob); not counted, same team as the requester: alice" in status["message"]
        assert ctx.metrics.audited.labels("approval", "not-counted", kube.namespace)._value.get() == 1
        events = kube.events(name, reason="ApprovalNotCounted")
        assert events and "hospital-dba" in events[0]["message"] and events[0]["type"] == "Warning"
        assert (await decide(people["frank"], "approve", name, kube.namespace))[0] == 0
        await kube.wait_for(lambda: phase(kube, name) in ("Approved", "Running", "Succeeded"))
    not_counted = [r for r in audit_records if r["action"] == "approval" and r["outcome"] == "not-counted"
                   and r["subject"]["name"] == name]
    assert [r["actor"] for r in not_counted] == ["alice"]
