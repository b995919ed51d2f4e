"""A resources policy -> the account its backup Jobs read the namespace's objects as. Pure.

Three objects named ``<policy>-objects`` in the policy's namespace: a ServiceAccount, a Role that
may ``get`` and ``list`` exactly the kinds the policy selects (:func:`lifeline.sources.resources.selection`,
grouped by API group) and nothing else, and the RoleBinding between them. The backup pod runs as
that account, so what a tenant's policy can back up is what its own namespace holds and the
selection names; never another namespace, never a cluster-scoped object. Owned by the policy:
they go with it, and are deleted when the policy stops being a resources policy.
"""
from __future__ import annotations

from lifeline.labels import ANN_POLICY
from lifeline.objects import owner_reference
from lifeline.sources import room_of
from lifeline.sources.resources import MAX_POLICY_NAME, Served, reader_name, selection

from .backup import labels, parse_spec, stamp

COMPONENT = "objects-reader"
KINDS = (("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"),
         ("rbac.authorization.k8s.io/v1", "RoleBinding"))


def rules(chosen: list[Served]) -> list[dict]:
    """``get`` and ``list`` on the chosen resources, one rule per API group."""
    by_group: dict[str, list[str]] = {}
    for r in chosen:
        by_group.setdefault(r.group, []).append(r.plural)
    return [{"apiGroups": [group], "resources": sorted(plurals), "verbs": ["get", "list"]}
            for group, plurals in sorted(by_group.items())]


def plan(policy_body: dict, served: tuple[Served, ...]) -> list[dict]:
    """The reader's ServiceAccount, Role and RoleBinding ([] unless the policy backs up objects)."""
    spec = parse_spec(policy_body)
    if room_of(spec).kind != "resources" or len(policy_body["metadata"]["name"]) > MAX_POLICY_NAME:
        return []
    meta = policy_body["metadata"]
    policy, namespace = meta["name"], meta.get("namespace", "")
    name = reader_name(policy)
    chosen, _ = selection(spec.source.resources, served)

    def child(api_version: str, kind: str, **fields) -> dict:
        return stamp({"apiVersion": api_version, "kind": kind,
                      "metadata": {"name": name, "namespace": namespace, "labels": labels(policy, COMPONENT),
                                   "annotations": {ANN_POLICY: policy}, "ownerReferences": [owner_reference(policy_body)]},
                      **fields})

    return [
        child("v1", "ServiceAccount"),
        child("rbac.authorization.k8s.io/v1", "Role", rules=rules(chosen)),
        child("rbac.authorization.k8s.io/v1", "RoleBinding",
              roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
              subjects=[{"kind": "ServiceAccount", "name": name, "namespace": namespace}]),
    ]
