"""An objects Restore (issue 17), as the attacks, on the real control plane.

The operator writes a restored namespace's objects back as an account of its own, ``<job>-writer``,
that may create, read and update every kind the point's policy selects in the target namespace
(:mod:`lifeline.planning.objects_writer`). The attack: someone who may ask for Restores, but not
write Secrets (or anything at all) there, asks for one, and Lifeline's account writes for them. The
validating webhook admits an objects Restore only from a requester who may do all of that
themselves (:mod:`lifeline.webhooks.restore_authors`), and into another cluster only from one who
may read the kubeconfig Secret Lifeline would use. What was checked is sealed on the Restore
(``dr.lifeline.io/checked-kinds``), and the writer gets nothing outside it: a policy edited between
creation and start to select more stops the Restore (``SelectionChanged``), and a record edited past
the webhook counts for nothing. And whoever takes the operator's token can still write only such
writer Roles and bindings: the chart's ValidatingAdmissionPolicy.
"""
from __future__ import annotations

import asyncio
import contextlib
import urllib.error

import pytest

from lifeline.api.backuppolicy import ResourcesSource
from lifeline.kube import ROLEBINDINGS, ROLES, KubeError
from lifeline.planning import objects_writer, restore as rules, restore_run
from lifeline.sources import PlanError
from lifeline.sources.resources import Served, selection
from tests.backup.conftest import policy
from tests.live_kube import Resource
from tests.restore.conftest import clock, fast_env, people  # noqa: F401 - fixtures
from tests.restore.helpers import decide, phase, stored
from tests.security.test_least_privilege import operator_kube  # noqa: F401 - fixture

RBAC = "rbac.authorization.k8s.io"
APP_KINDS = ["configmaps", "services", "deployments.apps", "secrets"]


def catalogue(kube, name: str, **source) -> str:
    """A resources policy and one point it made (as an admin, through the webhook): the point's name."""
    body = policy(name, source={"resources": source}, incremental=None)
    body["spec"]["destinations"] = [{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/objects"}}]
    kube.create(body)
    point = f"{name}-1"
    kube.create({"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint", "metadata": {"name": point},
                 "spec": {"policyName": name, "type": "full", "sizeBytes": 1, "manifestChecksum": "sha256:" + "0" * 64,
                          "keyRef": "secret://pacs-key/key", "startTime": "2026-11-23T02:00:00Z",
                          "completionTime": "2026-11-23T02:01:00Z",
                          "copies": [{"destination": "local", "repository": "file:///destinations/local/objects",
                                      "snapshotId": "a" * 64}]}})
    return point


def objects_restore(name: str, point: str, **objects) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": name},
            "spec": {"recoveryPoint": point, "reason": "INC-17: the namespace was deleted",
                     "target": {"objects": objects}}}


def role_for(kube, user: str, name: str, rules: list[dict]) -> None:
    """A Role of ``rules`` in the test's namespace, bound to ``user``."""
    kube.seed(f"{RBAC}/v1/roles", {"metadata": {"name": name}, "rules": rules})
    kube.seed(f"{RBAC}/v1/rolebindings", {"metadata": {"name": f"{name}-{user}"},
                                          "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
                                          "subjects": [{"apiGroup": RBAC, "kind": "User", "name": user}]})


def may(kube, user: str, verb: str, resource: str, name: str) -> bool:
    review = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": {"namespace": kube.namespace, "verb": verb,
                                                      "resource": resource, "name": name}}})
    return bool(review["status"].get("allowed"))


REQUEST_RESTORES = {"apiGroups": ["dr.lifeline.io"], "resources": ["restores"], "verbs": ["get", "create"]}


def refused(kube, body: dict, user: str) -> str:
    """The API server's refusal of ``user``'s request (a 403 from the webhook), and nothing stored."""
    with pytest.raises(urllib.error.HTTPError) as refusal:
        kube.create(body, user=user)
    assert refusal.value.code == 403, refusal.value
    assert kube.stored("restores", None, body["metadata"]["name"]) is None
    return str(refusal.value)


def missing(message: str, user: str, namespace: str) -> list[str]:
    """The permissions a refusal names: ``["create secrets", ...]``."""
    return message.split(f"{user} may not ")[1].split(f" in {namespace}:")[0].removesuffix(", ...").split(", ")


async def test_a_namespace_admin_may_ask_for_the_kinds_they_may_write_themselves(kube, people, clock, fast_env):
    async with kube.operator(clock=clock):
        point = catalogue(kube, "his-objects", includeKinds=APP_KINDS)
        kube.create(objects_restore("back", point, existing="Update"), user="carol")
        assert kube.stored("restores", None, "back")["metadata"]["name"] == "back"

        # Roles and RoleBindings: the writer may escalate and bind, which a namespace's admin may not
        point = catalogue(kube, "his-rbac", includeKinds=["configmaps", "roles", "rolebindings"])
        message = refused(kube, objects_restore("with-roles", point), "carol")
        assert missing(message, "carol", kube.namespace)[0] == f"escalate roles.{RBAC}", message


async def test_someone_who_may_only_ask_for_restores_is_refused_naming_what_is_missing(kube, people, clock, fast_env):
    role_for(kube, "dave", "restore-requester", [REQUEST_RESTORES])
    async with kube.operator(clock=clock):
        point = catalogue(kube, "his-objects", includeKinds=APP_KINDS)
        message = refused(kube, objects_restore("back", point), "dave")
        named = missing(message, "dave", kube.namespace)
        assert named[:2] == ["create configmaps", "get configmaps"], message
        assert "writes as an account that may do no more than its requester" in message


async def test_someone_who_may_not_write_secrets_cannot_restore_them(kube, people, clock, fast_env):
    """The attack: a tenant who may request Restores and write the application's objects, but not
    Secrets, asks for a point whose policy selects Secrets: Lifeline's account would write them."""
    role_for(kube, "dave", "app-writer", [
        REQUEST_RESTORES,
        {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": ["get", "create", "update"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create", "update"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])
    async with kube.operator(clock=clock):
        point = catalogue(kube, "his-objects", includeKinds=APP_KINDS)
        message = refused(kube, objects_restore("steal", point, existing="Update"), "dave")
        named = missing(message, "dave", kube.namespace)
        assert "create secrets" in named and not any("configmaps" in n or "deployments" in n for n in named), message

        # what dave may write, dave may restore
        point = catalogue(kube, "his-app", includeKinds=["configmaps", "services", "deployments.apps"])
        kube.create(objects_restore("back", point, existing="Update"), user="dave")


async def test_another_cluster_needs_a_requester_who_may_read_its_kubeconfig(kube, people, clock, fast_env):
    """The attack: someone who cannot read the standby site's kubeconfig makes Lifeline act there with it."""
    kube.secret("site-b", {"kubeconfig": "apiVersion: v1\nkind: Config\n"})
    role_for(kube, "dave", "restore-requester", [REQUEST_RESTORES])
    async with kube.operator(clock=clock):
        point = catalogue(kube, "his-objects", includeKinds=APP_KINDS)
        body = objects_restore("to-site-b", point, kubeconfigSecret={"name": "site-b"})
        message = refused(kube, body, "dave")
        assert missing(message, "dave", kube.namespace) == ["get secrets/site-b"], message
        assert "kubeconfig in that Secret" in message

        kube.create(body, user="carol")  # admin: may read it
        # that Secret by name is enough: the kubeconfig's identity is judged by the other cluster
        role_for(kube, "dave", "site-b-reader", [{"apiGroups": [""], "resources": ["secrets"],
                                                  "resourceNames": ["site-b"], "verbs": ["get"]}])
        await kube.wait_for(lambda: may(kube, "dave", "get", "secrets", "site-b"))  # RBAC's cache
        body["metadata"]["name"] = "to-site-b-by-dave"
        kube.create(body, user="dave")


# ---- what was checked at creation is all the writer gets (time of check, time of use)

def carol_writes_configmaps_only(kube) -> None:
    """carol, no longer the namespace's admin: she may request Restores (and edit them, as a tenant
    may annotate them) and write configmaps, with the data Jobs, but not Secrets."""
    kube.request("DELETE", f"/apis/{RBAC}/v1/namespaces/{kube.namespace}/rolebindings/hospital-dba-admin")
    role_for(kube, "carol", "config-writer", [
        {**REQUEST_RESTORES, "verbs": ["get", "create", "patch", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}])


async def rbac_settled(kube) -> None:
    await kube.wait_for(lambda: may(kube, "carol", "create", "configmaps", "")  # RBAC's cache
                        and not may(kube, "carol", "create", "secrets", ""))


def select(kube, policy_name: str, kinds: list[str]) -> None:
    """The policy edited (by whoever may write policies: here the admin) to select ``kinds``."""
    kube.patch("backuppolicies", policy_name, {"spec": {"source": {"resources": {"includeKinds": kinds}}}})


def nothing_written_for(kube, restore: str) -> None:
    """No writer account, no Role that may create Secrets, no restore Job."""
    writer = objects_writer.writer_name(restore_run.job_name(restore))
    assert kube.stored(f"{RBAC}/v1/roles", None, writer) is None
    assert not any(kube.count_writes(f"{RBAC}/v1/roles", name=writer, method=m) for m in ("POST", "PUT", "PATCH"))
    assert not [role["metadata"]["name"] for role in kube.objects(f"{RBAC}/v1/roles")
                for rule in role.get("rules") or []
                if "secrets" in rule.get("resources", ()) and "create" in rule.get("verbs", ())]
    assert kube.stored("jobs", None, restore_run.job_name(restore)) is None


async def approve(kube, people, name: str) -> None:
    for person in ("alice", "bob"):
        code, out = await decide(people[person], "approve", name, kube.namespace)
        assert code == 0, out


async def test_a_policy_that_selects_more_after_the_check_stops_the_restore(kube, people, clock, fast_env):
    """The attack: carol may write configmaps, not Secrets. She asks for a point whose policy selects
    configmaps (checked: she may), then the policy is edited to select Secrets too, and two approvers
    approve. Lifeline's writer would write her Secrets; it gets nothing, and the Restore says why."""
    carol_writes_configmaps_only(kube)
    await rbac_settled(kube)
    async with kube.operator(clock=clock):
        point = catalogue(kube, "his-config", includeKinds=["configmaps"])
        kube.create(objects_restore("steal", point), user="carol")
        assert stored(kube, "steal")["metadata"]["annotations"][rules.ANN_CHECKED_KINDS] == "configmaps"
        await kube.wait_for(lambda: phase(kube, "steal") == "PendingApproval")

        select(kube, "his-config", ["configmaps", "secrets"])
        await approve(kube, people, "steal")
        await kube.wait_for(lambda: phase(kube, "steal") == "Failed")
        status = stored(kube, "steal")["status"]
        assert status["reason"] == "SelectionChanged", status
        assert "now selects secrets" in status["message"] and "create a new Restore" in status["message"], status
        nothing_written_for(kube, "steal")


def restores_path(kube, name: str) -> str:
    return Resource.of("restores").path(kube.namespace, name)


@contextlib.contextmanager
def approvals_webhook_skips_the_namespace(kube):
    """The chart's mutating webhook told not to look at this namespace (as a ``namespaceSelector`` left
    stale would): a request here gets past it. Put back as it was on the way out."""
    path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{kube.release.name}-restore-approvals"
    hooks = kube.request("GET", path)["webhooks"]
    i = next(i for i, hook in enumerate(hooks) if hook["name"].startswith("restore-approvals."))
    before = hooks[i].get("namespaceSelector") or {}

    def selector(value: dict) -> None:
        kube.request("PATCH", path, [{"op": "add", "path": f"/webhooks/{i}/namespaceSelector", "value": value}],
                     content_type="application/json-patch+json")

    selector({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                                    "values": [kube.namespace]}]})
    try:
        yield
    finally:
        selector(before)


def edit(kube, name: str, annotations: dict, *, user: str | None = None, dry_run: bool = False) -> str | None:
    """The user's (the admin's) edit of the Restore's annotations: None when stored, the refusal when refused."""
    try:
        kube.request("PATCH", restores_path(kube, name) + ("?dryRun=All" if dry_run else ""),
                     {"metadata": {"annotations": annotations}}, content_type="application/merge-patch+json",
                     **({"user": user} if user else {}))
    except urllib.error.HTTPError as exc:
        assert exc.code == 403, exc
        return str(exc)
    return None


async def test_a_record_of_checked_kinds_edited_past_the_webhook_counts_for_nothing(kube, people, clock, fast_env):
    """The attack: carol writes the record herself, naming Secrets as checked, and has the policy select
    them. Through the webhook the edit is refused; past it, the seal no longer holds, the Restore's
    records count for nothing, and a later approval carries no kind on (none counts as checked)."""
    carol_writes_configmaps_only(kube)
    await rbac_settled(kube)
    forged = {rules.ANN_CHECKED_KINDS: "configmaps,secrets"}
    async with kube.operator(clock=clock):
        point = catalogue(kube, "his-config", includeKinds=["configmaps"])
        kube.create(objects_restore("forged", point), user="carol")
        await kube.wait_for(lambda: stored(kube, "forged").get("status", {}).get("reason") == "WaitingForApprovals")
        refusal = edit(kube, "forged", forged, user="carol")
        assert refusal and "written by Lifeline's admission webhook only" in refusal, refusal

        with approvals_webhook_skips_the_namespace(kube):
            await kube.wait_for(lambda: edit(kube, "forged", forged, user="carol") is None)  # the API server applies it
        await kube.wait_for(lambda: edit(kube, "forged", {rules.ANN_CHECKED_KINDS: "x"}, dry_run=True))  # back
        await kube.wait_for(lambda: stored(kube, "forged").get("status", {}).get("reason") == "ApprovalsNotSealed")
        status = stored(kube, "forged")["status"]
        assert status["phase"] == "PendingApproval" and status["approvals"] == [], status

        select(kube, "his-config", ["configmaps", "secrets"])
        await approve(kube, people, "forged")
        await kube.wait_for(lambda: phase(kube, "forged") == "Failed")
        body = stored(kube, "forged")
        assert body["metadata"]["annotations"][rules.ANN_CHECKED_KINDS] == "", "the forged kinds were not sealed"
        assert body["status"]["reason"] == "KindsNotChecked", body["status"]
        assert "create the Restore again" in body["status"]["message"]
        nothing_written_for(kube, "forged")


def served(*names: str) -> list[Served]:
    """Kinds as discovery serves them: ``deployments.apps`` -> group apps, plural deployments."""
    return [Served(group, "v1", plural, plural.title(), True, frozenset({"list", "create"}))
            for plural, _, group in (n.partition(".") for n in names)]


def test_the_writer_gets_only_checked_kinds_and_a_restore_selecting_more_does_not_start():
    """Pure: :func:`objects_writer.writable`, and the record under the approvals' seal."""
    config, secrets, deploy = served("configmaps", "secrets", "deployments.apps")
    assert objects_writer.record([deploy, config]) == "configmaps,deployments.apps"
    assert objects_writer.writable([config], "configmaps,deployments.apps", policy="p") == [config]
    with pytest.raises(PlanError) as refusal:
        objects_writer.writable([config, secrets], "configmaps", policy="p")
    assert refusal.value.reason == "SelectionChanged" and "now selects secrets" in refusal.value.message
    for nothing in (None, ""):  # no record, or none checked (no point then): never a writer, even of nothing
        for chosen in ([config], []):
            with pytest.raises(PlanError) as refusal:
                objects_writer.writable(chosen, nothing, policy="p")
            assert refusal.value.reason == "KindsNotChecked"

    key = b"k" * 32
    body = objects_restore("back", "his-objects-1")
    body["metadata"].update(namespace="his", annotations={rules.ANN_REQUESTED_BY: "carol",
                                                          rules.ANN_CHECKED_KINDS: "configmaps"})
    ann = body["metadata"]["annotations"]
    ann[rules.ANN_SEAL] = rules.seal(key, body, "carol", None, "configmaps")
    assert rules.sealed(body, key)
    for edited in ("configmaps,secrets", "", None):
        copy = {**body, "metadata": {**body["metadata"], "annotations": {**ann, rules.ANN_CHECKED_KINDS: edited}}}
        if edited is None:
            del copy["metadata"]["annotations"][rules.ANN_CHECKED_KINDS]
        assert not rules.sealed(copy, key), edited
        assert rules.plan(copy, None, "2026-12-02T10:00:00Z", records_sealed=False).status["reason"] == \
            "ApprovalsNotSealed"


# ---- the operator's token writes only writers' Roles and bindings (the chart's admission policy)

def writer_role(name: str, *rules: dict) -> dict:
    return {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": name}, "rules": list(rules)}


def writer_binding(name: str, role: str, *subjects: dict) -> dict:
    return {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role}, "subjects": list(subjects)}


def account(name: str, namespace: str) -> dict:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


async def refused_by_policy(call) -> str:
    """The admission policy's refusal (RBAC would let the operator through: it may escalate and bind)."""
    with pytest.raises(KubeError) as refusal:
        await call
    assert refusal.value.status in (403, 422), refusal.value
    return str(refusal.value)


WRITE = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]}


async def policy_active(operator_kube, namespace: str) -> None:
    """An admission policy takes effect a moment after it is created (the API server's informers):
    wait until it refuses a writer Role that deletes, undoing what got through meanwhile."""
    for _ in range(100):
        try:
            await operator_kube.create(ROLES, namespace, writer_role("grab-writer", {**WRITE, "verbs": ["delete"]}))
        except KubeError as exc:
            assert "Roles named <job>-writer" in str(exc), exc
            return
        await operator_kube.delete(ROLES, namespace, "grab-writer")
        await asyncio.sleep(0.1)  # polls the API server for the policy to load
    pytest.fail("a writer Role that deletes was admitted")


async def test_the_operator_writes_writer_roles_that_never_delete_and_binds_them_only_to_their_account(
        operator_kube, namespace):
    ns = namespace
    await policy_active(operator_kube, ns)
    for rule in ({**WRITE, "verbs": ["*"]}, {**WRITE, "resources": ["*"]}, {**WRITE, "apiGroups": ["*"]},
                 {**WRITE, "verbs": ["get", "patch"]}, {**WRITE, "verbs": ["deletecollection"]},
                 {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]},
                 {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "escalate"]},
                 {"apiGroups": [RBAC], "resources": ["roles", "rolebindings"], "verbs": ["bind"]}):
        message = await refused_by_policy(operator_kube.create(ROLES, ns, writer_role("grab-writer", WRITE, rule)))
        assert "Roles named <job>-writer" in message, (rule, message)
    # not a writer's name: the reader's rules (reads only) apply
    message = await refused_by_policy(operator_kube.create(ROLES, ns, writer_role("grab", WRITE)))
    assert "read-only Roles named <policy>-objects" in message

    for binding in (writer_binding("grab-writer", "grab-writer", account("default", ns)),
                    writer_binding("grab-writer", "other-writer", account("grab-writer", ns)),
                    writer_binding("grab-writer", "grab-writer", account("grab-writer", ns), account("default", ns)),
                    writer_binding("grab-writer", "grab-writer",
                                   {"apiGroup": RBAC, "kind": "User", "name": "grab-writer"})):
        message = await refused_by_policy(operator_kube.create(ROLEBINDINGS, ns, binding))
        assert "<job>-writer to the ServiceAccount of that name" in message, (binding, message)


async def test_the_operator_may_write_the_writer_it_plans(operator_kube, namespace, cluster):
    """What :func:`lifeline.planning.objects_writer.plan` makes, Roles and data Jobs included, into a
    target namespace other than the Restore's (the binding names the account there)."""
    src = ResourcesSource.model_validate({"includeKinds": ["configmaps", "secrets", "deployments.apps", "roles",
                                                           "rolebindings", "Service"]})
    chosen, unknown = selection(src, await operator_kube.discover())
    assert not unknown and len(chosen) == 6
    restore = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore",
               "metadata": {"name": "back", "namespace": "his", "uid": "0c5d6f1e-0000-4000-8000-000000000017"}}
    _, role, binding = objects_writer.plan(restore, "back-objects", namespace, chosen, with_data=True, update=True)
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs == {"get", "create", "update", "bind", "escalate", "list"}, role["rules"]
    assert binding["subjects"][0]["namespace"] == "his"

    await policy_active(operator_kube, namespace)
    created = await operator_kube.create(ROLES, namespace, role)
    assert created["rules"] == role["rules"]
    await operator_kube.create(ROLEBINDINGS, namespace, binding)
    name = binding["metadata"]["name"]
    stored = cluster.request("GET", f"/apis/{RBAC}/v1/namespaces/{namespace}/rolebindings/{name}")
    assert stored["roleRef"]["name"] == role["metadata"]["name"] == name == "back-objects-writer"
