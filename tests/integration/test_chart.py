"""The operator's RBAC in the Helm chart equals what the code calls through kube.py plus what kopf needs.

Exact, both ways: a call kube.py makes that the chart does not grant fails in a cluster with
403; a grant nothing uses is privilege an attacker who takes the operator's token would get
for free. (The chart's rendering, people's roles, webhooks and schema: tests/chart/.)
"""
from __future__ import annotations

from lifeline.kube import VERBS_USED
from tests.chart.render import NAMESPACE, one, render, rule_set

KINDS = ("backuppolicies", "recoverypoints", "restoredrills", "restores", "failoverplans")
# kopf itself: it watches every kind Lifeline handles (scanning is disabled in runtime.py, so no
# namespace or CRD watches), and with peering it reads, watches and patches its peering objects.
KOPF_NEEDS = frozenset(
    {("dr.lifeline.io", kind, verb) for kind in KINDS for verb in ("list", "watch")}
    | {("kopf.dev", peering, verb) for peering in ("clusterkopfpeerings", "kopfpeerings")
       for verb in ("get", "list", "watch", "patch")}
)


def operator_rules(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == "lifeline-operator"]


# Never granted cluster-wide (issue 15, finding 6): a tenant namespace grants the first two, and the
# operator binds the last inside each drill sandbox it creates.
NOT_CLUSTER_WIDE = {("", "secrets", "get"), ("", "pods/exec", "get"), ("", "pods/exec", "create"),
                    ("", "namespaces", "delete"), ("rbac.authorization.k8s.io", "roles", "escalate"),
                    ("rbac.authorization.k8s.io", "roles", "bind")}


def test_operator_role_is_exactly_what_the_code_calls(helm_bin):
    docs = render(helm_bin)
    granted = set().union(*(rule_set(one(docs, "ClusterRole", f"lifeline-operator{suffix}")["rules"])
                            for suffix in ("", "-tenant", "-objects", "-sandbox")))
    needed = VERBS_USED | KOPF_NEEDS
    assert not needed - granted, f"called but not granted: {sorted(needed - granted)}"
    assert not granted - needed, f"granted but not used (remove, or add the call to VERBS_USED): {sorted(granted - needed)}"
    assert not any("*" in grant for grant in granted), "no wildcards"


def test_no_secret_read_pod_exec_or_namespace_delete_cluster_wide(helm_bin):
    for values in ((), ("watchNamespaces={his,pacs}",), ("tenantNamespaces={his}",)):
        docs = render(helm_bin, *values)
        bound = {b["roleRef"]["name"] for b in docs if b["kind"] == "ClusterRoleBinding"}
        for role in (d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] in bound):
            too_much = rule_set(role["rules"]) & NOT_CLUSTER_WIDE
            assert not too_much, f"{values}: ClusterRole {role['metadata']['name']} grants {too_much} cluster-wide"
    docs = render(helm_bin, "tenantNamespaces={his}")
    for role in ("lifeline-operator-tenant", "lifeline-operator-objects"):
        [granted] = [b for b in docs if b["kind"] == "RoleBinding" and b["roleRef"]["name"] == role]
        assert granted["metadata"]["namespace"] == "his"
    # what a namespace's admin may grant holds nothing an admin lacks (escalate is the objects role's)
    tenant_role = rule_set(one(docs, "ClusterRole", "lifeline-operator-tenant")["rules"])
    assert not {v for _, _, v in tenant_role} & {"escalate", "bind"}
    [bind] = [r for r in one(docs, "ClusterRole", "lifeline-operator")["rules"] if "bind" in r["verbs"]]
    assert bind["resourceNames"] == ["lifeline-operator-sandbox"], "the operator may bind its sandbox role only"


def test_operator_binding_names_its_service_account(helm_bin):
    docs = render(helm_bin)
    binding = one(docs, "ClusterRoleBinding", "lifeline-operator")
    account = one(docs, "ServiceAccount", "lifeline-operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "lifeline-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "lifeline-operator", "namespace": NAMESPACE}]
    deploy = one(docs, "Deployment")
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def scopes(cluster) -> dict[tuple[str, str], bool]:
    """(group, plural) -> cluster-scoped, from the real API server's discovery."""
    out = {}
    groups = [("", "/api/v1")] + [(g["name"], f"/apis/{g['preferredVersion']['groupVersion']}")
                                  for g in cluster.request("GET", "/apis")["groups"]]
    for group, path in groups:
        for r in cluster.request("GET", path)["resources"]:
            out[(group, r["name"].split("/")[0])] = not r["namespaced"]
    return out


def cluster_scoped(known: dict, group: str, resource: str) -> bool:
    base = resource.split("/")[0]
    # kinds of add-ons this cluster does not serve (the chart grants them for when they are installed)
    extra = {("snapshot.storage.k8s.io", "volumesnapshots"): False,
             ("snapshot.storage.k8s.io", "volumesnapshotclasses"): True,
             ("snapshot.storage.k8s.io", "volumesnapshotcontents"): True,
             ("externaldns.k8s.io", "dnsendpoints"): False,
             ("monitoring.coreos.com", "servicemonitors"): False}
    table = {**extra, **known}
    assert (group, base) in table, f"unknown scope of {group}/{base}: add it to this test"
    return table[(group, base)]


def test_namespaced_scope_grants_the_same_through_roles(helm_bin, cluster):
    known = scopes(cluster)
    cluster_wide = rule_set(one(render(helm_bin), "ClusterRole", "lifeline-operator")["rules"])
    docs = render(helm_bin, "watchNamespaces={his,pacs}")
    roles = operator_rules(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["his", "pacs"]
    bindings = operator_rules(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["his", "pacs"]
    assert all(b["roleRef"]["kind"] == "Role" and b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)
    in_roles = rule_set(roles[0]["rules"])
    assert all(rule_set(r["rules"]) == in_roles for r in roles)
    assert not any(cluster_scoped(known, g, r) for g, r, _ in in_roles), "a Role cannot grant cluster-scoped kinds"
    cluster_role = operator_rules(docs, "ClusterRole")
    in_cluster = rule_set(cluster_role[0]["rules"]) if cluster_role else set()
    sandbox_bindings = {("rbac.authorization.k8s.io", "rolebindings", "create"),  # made in sandboxes, unwatched
                        ("rbac.authorization.k8s.io", "rolebindings", "list")}  # the report's access review
    assert all(cluster_scoped(known, g, r) for g, r, _ in in_cluster - sandbox_bindings), \
        "only cluster-scoped kinds cluster-wide"
    tenant = set().union(*(rule_set(one(render(helm_bin), "ClusterRole", f"lifeline-operator-{suffix}")["rules"])
                           for suffix in ("tenant", "objects")))
    assert in_roles | in_cluster == cluster_wide | tenant
