"""A resources policy reads only the kinds its author was checked for (issue 17, "Not yet").

With no ``includeKinds`` a policy selects everything its namespace can list, and that grows when someone
installs a CRD later. The admission webhook checks the author (may they ``list`` each selected kind?)
only when the spec is written, so it records the kinds it checked, sealed with the author and the spec
(``dr.lifeline.io/checked-kinds``), and the operator grants the reader only recorded kinds that are
selected now; a kind served since is named in ``SourceAvailable`` and an Event until someone who may
read it applies the policy again. A record edited past the webhook counts for nothing.
"""
from __future__ import annotations

import contextlib
import json
import urllib.error

import pytest

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.devstack import live
from lifeline.devstack.cluster import ADMIN
from lifeline.devstack.children import wait_for
from lifeline.labels import ANN_CHECK_KINDS, ANN_CHECKED_FOR, ANN_CHECKED_KINDS, ANN_CHECKED_SEAL
from lifeline.planning import objects_reader
from lifeline.sources import PlanError, Seen
from lifeline.sources.resources import ROOM, Served, selection, withheld
from tests.restore.conftest import people  # noqa: F401 - fixture

from .conftest import settled
from .test_objects import his, may, objects_policy  # noqa: F401 - fixture

RBAC = "rbac.authorization.k8s.io"
ROLES = f"{RBAC}/v1/roles"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


# ---- pure: the seal, the view, what the planners make of it ---------------------------------------


def served(*names: str) -> tuple[Served, ...]:
    return tuple(Served(group, "v1", plural, plural.title(), True, frozenset({"get", "list"}))
                 for plural, _, group in (n.partition(".") for n in names))


SERVED = served("configmaps", "secrets", "deployments.apps", "ledgers.bank.example.org")
KEY = b"k" * 32


def sealed_policy(kinds: str, author: str = "carol", key: bytes = KEY, **resources) -> dict:
    body = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": "his-objects", "namespace": "his"}, "spec": objects_policy(**resources)["spec"]}
    body["metadata"]["annotations"] = {ANN_CHECKED_KINDS: kinds, ANN_CHECKED_FOR: author,
                                       ANN_CHECKED_SEAL: objects_reader.seal(key, body, author, kinds)}
    return body


def role_rules(body: dict, view) -> list[dict]:
    return next(m for m in objects_reader.plan(body, view) if m["kind"] == "Role")["rules"]


def test_a_record_counts_only_under_the_seal_for_that_policy_and_spec():
    body = sealed_policy("configmaps,deployments.apps")
    assert objects_reader.checked(body, KEY) == "configmaps,deployments.apps"
    assert objects_reader.checked(body, b"x" * 32) is None, "another key (rotated): no record"
    assert objects_reader.checked(body, None) is None
    for change in ({ANN_CHECKED_KINDS: "configmaps,deployments.apps,secrets"}, {ANN_CHECKED_FOR: "alice"}):
        forged = json.loads(json.dumps(body))
        forged["metadata"]["annotations"].update(change)
        assert objects_reader.checked(forged, KEY) is None, change
    respecified = json.loads(json.dumps(body))
    respecified["spec"]["source"]["resources"]["excludeKinds"] = ["pods"]
    assert objects_reader.checked(respecified, KEY) is None, "kept on another spec"
    elsewhere = json.loads(json.dumps(body))
    elsewhere["metadata"].update(name="other", namespace="pacs")
    assert objects_reader.checked(elsewhere, KEY) is None, "replayed onto another policy"
    for missing in (ANN_CHECKED_KINDS, ANN_CHECKED_FOR, ANN_CHECKED_SEAL):
        partial = json.loads(json.dumps(body))
        del partial["metadata"]["annotations"][missing]
        assert objects_reader.checked(partial, KEY) is None, missing


def test_the_reader_gets_only_recorded_kinds_selected_now_and_the_rest_are_named():
    checked_kinds = "configmaps,deployments.apps,secrets"
    body = sealed_policy(checked_kinds)
    granted, left_out = objects_reader.compare(list(SERVED), checked_kinds)
    assert [r.name for r in left_out] == ["ledgers.bank.example.org"]
    view = objects_reader.view(SERVED, objects_reader.checked(body, KEY))
    src = BackupPolicySpec.model_validate(body["spec"]).source.resources
    assert [r.name for r in selection(src, view)[0]] == ["configmaps", "secrets", "deployments.apps"]
    assert [r.name for r in withheld(src, view)] == ["ledgers.bank.example.org"]
    assert {g for rule in role_rules(body, view) for g in rule["apiGroups"]} == {"", "apps"}
    job = ROOM.job_source("his", "his-objects", BackupPolicySpec.model_validate(body["spec"]), view)
    assert [r.plural for r in job.resources.resources] == ["configmaps", "secrets", "deployments"]

    found = ROOM.availability(BackupPolicySpec.model_validate(body["spec"]), Seen("his", policy="his-objects",
                                                                                 served=view))
    assert found.status is True and found.reason == "KindsSelected"
    assert "1 kind served since the policy was written is not backed up until someone who may read them " \
           "applies the policy again" in found.message
    assert found.message.endswith(": ledgers.bank.example.org"), found.message
    assert f"{ANN_CHECK_KINDS}=now" in found.message

    # named in includeKinds but not checked: not "not served", just not read
    narrow = sealed_policy("configmaps", includeKinds=["configmaps", "ledgers"])
    view = objects_reader.view(SERVED, objects_reader.checked(narrow, KEY))
    assert selection(BackupPolicySpec.model_validate(narrow["spec"]).source.resources, view) == ([SERVED[0]], [])


def test_a_policy_without_a_record_that_holds_gets_nothing():
    body = sealed_policy("configmaps,secrets")
    body["metadata"]["annotations"][ANN_CHECKED_KINDS] = "configmaps,secrets,ledgers.bank.example.org"
    view = objects_reader.view(SERVED, objects_reader.checked(body, KEY))
    assert role_rules(body, view) == [], "a Role of no rules"
    spec = BackupPolicySpec.model_validate(body["spec"])
    with pytest.raises(PlanError) as refused:
        ROOM.job_source("his", "his-objects", spec, view)
    assert refused.value.reason == "KindsNotChecked"
    found = ROOM.availability(spec, Seen("his", policy="his-objects", served=view))
    assert (found.status, found.reason) == (False, "KindsNotChecked")
    assert "none of the 4 kinds" in found.message and f"{ANN_CHECK_KINDS}=now" in found.message


# ---- on the real control plane ----------------------------------------------------------------------


def source_condition(body: dict) -> dict:
    return next(c for c in (body.get("status") or {}).get("conditions") or () if c["type"] == "SourceAvailable")


def granted(kube, name: str = "his-objects-objects") -> set[tuple[str, str]]:
    role = kube.stored(ROLES, None, name) or {}
    return {(g, r) for rule in role.get("rules") or () for g in rule["apiGroups"] for r in rule["resources"]}


def role_for(kube, user: str, name: str, rules: list[dict]) -> None:
    kube.seed(ROLES, {"metadata": {"name": name}, "rules": rules})
    kube.seed(f"{RBAC}/v1/rolebindings", {"metadata": {"name": f"{name}-{user}"},
                                          "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
                                          "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}]})


def ask_for_a_check(kube, user: str, name: str = "his-objects", *, dry_run: bool = False, **annotations) -> str | None:
    """``user`` annotates the policy (by default with the check request): None when stored, else the refusal."""
    path = f"/apis/dr.lifeline.io/v1alpha1/namespaces/{kube.namespace}/backuppolicies/{name}"
    try:
        kube.request("PATCH", path + ("?dryRun=All" if dry_run else ""),
                     {"metadata": {"annotations": annotations or {ANN_CHECK_KINDS: "now"}}},
                     content_type="application/merge-patch+json", user=user)
    except urllib.error.HTTPError as exc:
        assert exc.code == 403, exc
        return str(exc)
    return None


def ledgers_crd(kube) -> tuple[str, str]:
    """A kind someone else installs later: a CRD of a group of this test's own, and one object here."""
    group = f"{kube.namespace}.example.org"
    name = f"ledgers.{group}"
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    live.create(kube.cluster, CRDS, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "ledgers", "singular": "ledger", "kind": "Ledger", "listKind": "LedgerList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": open_object}}}}]}})
    wait_for(lambda: any(c["type"] == "Established" and c["status"] == "True" for c in
             (kube.cluster.request("GET", f"{CRDS}/{name}").get("status") or {}).get("conditions") or []),
             30, f"CRD {name} to be established", interval=0.1)
    kube.seed(f"{group}/v1/ledgers", {"apiVersion": f"{group}/v1", "kind": "Ledger", "metadata": {"name": "icu"},
                                      "spec": {"account": "s3cret"}})
    return group, name


def job_plan_kinds(kube) -> set[str]:
    cronjob = kube.stored("batch/v1/cronjobs", None, "his-objects-full")
    env = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    plan = json.loads(next(e["value"] for e in env if e["name"] == "LIFELINE_JOB_PLAN"))
    return {r["plural"] for r in plan["source"]["resources"]["resources"]}


async def test_a_kind_served_after_the_policy_was_written_is_read_only_once_someone_who_may_applies_it(
        kube, his, people, clock):
    """carol writes a policy with no includeKinds; the admin then installs a CRD whose objects hold
    secrets. The reader does not gain it (the status and an Event name it); carol, once she may read it
    herself, applies the policy again and the reader gains it."""
    served_groups = {g["name"] for g in kube.request("GET", "/apis")["groups"]}
    role_for(kube, "carol", "reads-what-is-served", [
        {"apiGroups": sorted(served_groups | {""}), "resources": ["*"], "verbs": ["get", "list"]}])
    await kube.wait_for(lambda: may(kube, "carol", "list", "wards", kube.namespace, "his.example.org"))
    async with kube.operator(clock=clock):
        kube.create(objects_policy(excludeKinds=["pods"]), user="carol")
        body = await settled(kube, "his-objects", generation=1)
        annotations = body["metadata"]["annotations"]
        assert annotations[ANN_CHECKED_FOR] == "carol" and "secrets" in annotations[ANN_CHECKED_KINDS].split(",")
        assert source_condition(body)["reason"] == "KindsSelected"
        assert "not backed up" not in source_condition(body)["message"]
    group, name = ledgers_crd(kube)
    try:
        # a new operator process: its first discovery serves the CRD (a running one asks every five minutes)
        async with kube.operator(clock=clock):
            body = await kube.wait_for(lambda: "not backed up" in source_condition(
                kube.stored("backuppolicies", None, "his-objects"))["message"]
                and kube.stored("backuppolicies", None, "his-objects"))
            condition = source_condition(body)
            assert condition["status"] == "True" and condition["reason"] == "KindsSelected", condition
            assert "1 kind served since the policy was written is not backed up until someone who may read " \
                   f"them applies the policy again" in condition["message"]
            assert condition["message"].endswith(f": {name}"), condition["message"]
            [event] = await kube.wait_for(lambda: kube.events("his-objects", "KindsNotChecked"))
            assert event["type"] == "Warning" and name in event["message"]
            assert ("", "secrets") in granted(kube) and (group, "ledgers") not in granted(kube)
            assert not may(kube, "system:serviceaccount:%s:his-objects-objects" % kube.namespace, "list", "ledgers",
                           kube.namespace, group)
            assert "ledgers" not in job_plan_kinds(kube) and "secrets" in job_plan_kinds(kube)

            # carol may not read them yet: her request is checked for them, and refused
            refusal = ask_for_a_check(kube, "carol")
            assert refusal and f"carol may not list {name} in {kube.namespace}" in refusal, refusal
            role_for(kube, "carol", "reads-ledgers", [{"apiGroups": [group], "resources": ["ledgers"],
                                                       "verbs": ["get", "list"]}])
            await kube.wait_for(lambda: may(kube, "carol", "list", "ledgers", kube.namespace, group))
            assert ask_for_a_check(kube, "carol") is None

            await kube.wait_for(lambda: (group, "ledgers") in granted(kube))
            stored = kube.stored("backuppolicies", None, "his-objects")
            assert ANN_CHECK_KINDS not in stored["metadata"]["annotations"], "the request is consumed"
            assert name in stored["metadata"]["annotations"][ANN_CHECKED_KINDS].split(",")
            assert stored["metadata"]["generation"] == 1, "no spec change was needed"
            await kube.wait_for(lambda: "not backed up" not in source_condition(
                kube.stored("backuppolicies", None, "his-objects"))["message"])
            await kube.wait_for(lambda: "ledgers" in job_plan_kinds(kube))
            assert len(kube.events("his-objects", "KindsNotChecked")) == 1
    finally:
        kube.request("DELETE", f"{CRDS}/{name}")


@contextlib.contextmanager
def webhooks_skip_the_namespace(kube):
    """The chart's policy webhooks (mutating and validating) told not to look at this namespace (as a
    ``namespaceSelector`` left stale would): a request here gets past them. Put back on the way out."""
    configs = [(f"mutatingwebhookconfigurations/{kube.release.name}-restore-approvals", "policy-authors."),
               (f"validatingwebhookconfigurations/{kube.release.name}-validate", "validate.")]
    saved = []
    for config, prefix in configs:
        path = f"/apis/admissionregistration.k8s.io/v1/{config}"
        hooks = kube.request("GET", path)["webhooks"]
        i = next(i for i, hook in enumerate(hooks) if hook["name"].startswith(prefix))
        saved.append((path, i, hooks[i].get("namespaceSelector") or {}))

    def select(path: str, i: int, value: dict) -> None:
        kube.request("PATCH", path, [{"op": "add", "path": f"/webhooks/{i}/namespaceSelector", "value": value}],
                     content_type="application/json-patch+json")

    for path, i, _ in saved:
        select(path, i, {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                                "values": [kube.namespace]}]})
    try:
        yield
    finally:
        for path, i, before in saved:
            select(path, i, before)


async def test_a_record_of_checked_kinds_forged_past_the_webhooks_counts_for_nothing(kube, his, clock):
    """The attack: dave, who may write policies and read ConfigMaps only, writes the record himself,
    naming Secrets as checked, and has the policy select them. Through the webhook the edit is refused;
    past it, the seal no longer holds: the reader gets nothing and no Job runs. Only someone who may read
    Secrets can make the policy read them."""
    role_for(kube, "dave", "policy-writer", [
        {"apiGroups": ["dr.lifeline.io"], "resources": ["backuppolicies"],
         "verbs": ["get", "list", "create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])
    await kube.wait_for(lambda: may(kube, "dave", "list", "configmaps", kube.namespace))
    reader = f"system:serviceaccount:{kube.namespace}:his-objects-objects"
    forged = {ANN_CHECKED_KINDS: "configmaps,secrets"}
    async with kube.operator(clock=clock):
        kube.create(objects_policy(includeKinds=["configmaps"]), user="dave")
        await settled(kube, "his-objects", generation=1)
        await kube.wait_for(lambda: granted(kube) == {("", "configmaps")})
        refusal = ask_for_a_check(kube, "dave", **forged)
        assert refusal and "written by Lifeline's admission webhook only" in refusal, refusal
        assert f"{ANN_CHECK_KINDS}=now" in refusal
        # a replace that leaves the record out (a manifest without it) keeps it as it was
        body = kube.stored("backuppolicies", None, "his-objects")
        record = {k: body["metadata"]["annotations"][k] for k in objects_reader.RECORD}
        body["metadata"]["annotations"] = {}
        path = f"/apis/dr.lifeline.io/v1alpha1/namespaces/{kube.namespace}/backuppolicies/his-objects"
        replaced = kube.request("PUT", path, body, user="dave")
        assert {k: replaced["metadata"]["annotations"].get(k) for k in objects_reader.RECORD} == record

        with webhooks_skip_the_namespace(kube):
            def forge():
                try:
                    kube.patch("backuppolicies", "his-objects", {
                        "metadata": {"annotations": forged},
                        "spec": {"source": {"resources": {"includeKinds": ["configmaps", "secrets"]}}}}, user="dave")
                except urllib.error.HTTPError:
                    return False
                return True
            await kube.wait_for(forge)  # the API server applies it as it is
        await kube.wait_for(lambda: ask_for_a_check(kube, "dave", dry_run=True, **{ANN_CHECKED_KINDS: "x"}))  # back

        body = await settled(kube, "his-objects", generation=2)
        assert body["metadata"]["annotations"][ANN_CHECKED_KINDS] == "configmaps,secrets", "stored as forged"
        condition = source_condition(body)
        assert condition["status"] == "False" and condition["reason"] == "KindsNotChecked", condition
        assert "none of the 2 kinds the policy selects (configmaps, secrets)" in condition["message"]
        await kube.wait_for(lambda: not granted(kube))
        assert kube.stored(ROLES, None, "his-objects-objects") is not None, "the reader's Role, of no rules"
        assert not may(kube, reader, "list", "secrets", kube.namespace)
        assert not may(kube, reader, "list", "configmaps", kube.namespace)
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "his-objects-full") is None)
        assert kube.events("his-objects", "KindsNotChecked"), "said in an Event too"

        # dave asking for a check is checked for what the policy selects now: Secrets, refused
        refusal = ask_for_a_check(kube, "dave")
        assert refusal and f"dave may not list secrets in {kube.namespace}" in refusal, refusal
        # the admin (who may read them) applies it again: now it backs them up
        assert ask_for_a_check(kube, ADMIN) is None
        await kube.wait_for(lambda: granted(kube) == {("", "configmaps"), ("", "secrets")})
        body = kube.stored("backuppolicies", None, "his-objects")
        assert body["metadata"]["annotations"][ANN_CHECKED_FOR] == ADMIN
        await kube.wait_for(lambda: kube.stored("batch/v1/cronjobs", None, "his-objects-full"))
