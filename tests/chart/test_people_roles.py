"""Roles for people: what each duty may do, and the separation between them."""
from __future__ import annotations

from lifeline.kube import CLI_VERBS

from .render import render, rule_set

GROUP = "dr.lifeline.io"
KINDS = {"backuppolicies", "recoverypoints", "restoredrills", "restores", "failoverplans"}
WRITES = {"create", "update", "patch", "delete", "deletecollection", "approve"}
AGG = "rbac.authorization.k8s.io/aggregate-to-"


def roles(helm_bin, *values: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in render(helm_bin, *values)
            if d["kind"] == "ClusterRole" and not d["metadata"]["name"].startswith("lifeline-operator")
            # readers bound to accounts (Prometheus, auditors, a policy's reader), not people's duties
            and not d["metadata"]["name"].endswith(("-metrics-reader", "-report-reader", "-objects-cluster-reader"))}


def grants(role: dict) -> set[tuple[str, str, str]]:
    return rule_set(role["rules"])


def writes(role: dict) -> set[tuple[str, str]]:
    return {(r, v) for g, r, v in grants(role) if v in WRITES}


def test_the_seven_roles_exist(helm_bin):
    assert set(roles(helm_bin)) == {"lifeline-backup-operator", "lifeline-restore-approver", "lifeline-drill-operator",
                                    "lifeline-failover-operator", "lifeline-auditor", "lifeline-admin",
                                    "lifeline-shred-reviewer"}
    assert roles(helm_bin, "rbac.peopleRoles=false") == {}


def test_each_duty_writes_only_its_own_kind(helm_bin):
    r = roles(helm_bin)
    assert {res for res, _ in writes(r["lifeline-backup-operator"])} == {"backuppolicies"}
    assert {res for res, _ in writes(r["lifeline-drill-operator"])} == {"restoredrills"}
    assert {res for res, _ in writes(r["lifeline-failover-operator"])} == {"failoverplans"}
    assert writes(r["lifeline-restore-approver"]) == {("restores", "patch"), ("restores", "approve")}
    assert (GROUP, "recoverypoints", "list") in grants(r["lifeline-backup-operator"])


def test_auditor_reads_everything_and_changes_nothing(helm_bin):
    auditor = roles(helm_bin)["lifeline-auditor"]
    assert writes(auditor) == set()
    assert {v for *_, v in grants(auditor)} == {"get", "list", "watch"}
    for kind in KINDS:
        assert {(GROUP, kind, v) for v in ("get", "list", "watch")} <= grants(auditor)
        assert (GROUP, f"{kind}/status", "get") in grants(auditor)
    assert {("", "events", "list"), ("events.k8s.io", "events", "list")} <= grants(auditor)  # the audit Events


def test_only_approvers_approve(helm_bin):
    holders = {name for name, role in roles(helm_bin).items() if (GROUP, "restores", "approve") in grants(role)}
    assert holders == {"lifeline-restore-approver"}
    approver = roles(helm_bin)["lifeline-restore-approver"]
    assert not any(k.startswith(AGG) for k in approver["metadata"]["labels"]), "approval is never folded into admin/edit"
    assert (GROUP, "restores", "create") not in grants(approver), "an approver does not request restores"


def test_admin_covers_every_duty_but_approval_and_the_cli(helm_bin):
    r = roles(helm_bin)
    admin = grants(r["lifeline-admin"])
    second_word = {(GROUP, "restores", "approve"), (GROUP, "recoverypoints", "shred")}  # never the admin's
    assert not second_word & admin
    for name, role in r.items():
        assert grants(role) - second_word <= admin, name
    assert CLI_VERBS <= admin, f"the CLI needs {sorted(CLI_VERBS - admin)}"
    failover_cli = {g for g in CLI_VERBS if g[1] == "failoverplans" and g[2] != "create" and g[2] != "list"}
    assert failover_cli <= grants(r["lifeline-failover-operator"])
    backup_cli = {g for g in CLI_VERBS if g[1] == "backuppolicies"}
    assert backup_cli <= grants(r["lifeline-backup-operator"])


def test_aggregation_into_kubernetes_roles(helm_bin):
    def labels(values=()):
        return {n: {k[len(AGG):] for k, v in role["metadata"]["labels"].items() if k.startswith(AGG) and v == "true"}
                for n, role in roles(helm_bin, *values).items()}
    assert labels() == {"lifeline-admin": {"admin"}, "lifeline-backup-operator": {"edit"},
                        "lifeline-drill-operator": {"edit"}, "lifeline-auditor": {"view"},
                        "lifeline-restore-approver": set(), "lifeline-failover-operator": set(),
                        "lifeline-shred-reviewer": set()}
    assert all(v == set() for v in labels(("rbac.aggregateToDefaultRoles=false",)).values())


def test_readme_bindings_are_valid_and_name_roles_the_chart_installs(helm_bin):
    import re

    import kubernetes_validate
    import yaml

    from .render import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Running on a real cluster"):]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1)
    bindings = [d for d in yaml.safe_load_all(block) if d]
    installed = set(roles(helm_bin))
    assert {b["roleRef"]["name"] for b in bindings} == installed  # one example for every role
    for binding in bindings:
        kubernetes_validate.validate(binding, "1.30", strict=True)
        assert binding["roleRef"]["kind"] == "ClusterRole" and binding["roleRef"]["name"] in installed
