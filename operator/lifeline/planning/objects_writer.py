"""An objects Restore -> the account its Job writes the objects as, in this cluster. Pure.

A Restore of a resources point puts objects back with no more rights than it needs: a
ServiceAccount ``<job>-writer`` in the Restore's namespace (where the Job runs, beside the
policy's Secrets), and in the *target* namespace a Role of the same name that may ``get`` and
``create`` (and ``update``, for ``existing: Update``) exactly the kinds the point's policy selects (never ``delete``: a restore
deletes nothing), plus what the Job needs besides: ``create``/``get`` of Jobs and ``list`` of Pods
when restored claims get their data (the data Jobs are made there and watched), and, when the
selection holds Roles or RoleBindings, ``escalate`` and ``bind`` on Roles and ``bind`` on
ClusterRoles (the API server refuses a Role or binding that grants more than its author holds).
The admission webhook admits an objects Restore only from a requester who may do all of that
themselves (:mod:`lifeline.webhooks.restore_authors`), so the account never holds more than the
person who asked. Owned by the Restore; deleted when it ends (:func:`plan` returns what to delete).

Another cluster (``kubeconfigSecret``) gets none of this: there the kubeconfig's identity writes,
judged by that cluster's RBAC.
"""
from __future__ import annotations

import hashlib

from lifeline.labels import LABEL_RESTORE
from lifeline.objects import owner_reference
from lifeline.sources.resources import Served

from .backup import labels, stamp

COMPONENT = "objects-writer"
SUFFIX = "-writer"
RBAC = "rbac.authorization.k8s.io"
WRITE_VERBS = ("create", "get")  # and update, only for a restore that replaces what exists (existing: Update)
KINDS = (("v1", "ServiceAccount"), (f"{RBAC}/v1", "Role"), (f"{RBAC}/v1", "RoleBinding"))


def writer_name(job: str) -> str:
    """``<job>-writer``, shortened with a hash to fit a name (63)."""
    name = f"{job}{SUFFIX}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    return f"{job[:63 - len(SUFFIX) - 9].rstrip('-.')}-{digest}{SUFFIX}"


def rules(chosen: list[Served], *, with_data: bool, update: bool = False) -> list[dict]:
    """get/create (and ``update``) on the chosen kinds (one rule per API group), and what the Job needs besides."""
    by_group: dict[str, set[str]] = {}
    for r in chosen:
        by_group.setdefault(r.group, set()).add(r.plural)
    verbs = [*WRITE_VERBS, "update"] if update else list(WRITE_VERBS)
    out = [{"apiGroups": [group], "resources": sorted(plurals), "verbs": verbs}
           for group, plurals in sorted(by_group.items())]
    if by_group.get(RBAC, set()) & {"roles", "rolebindings"}:
        out.append({"apiGroups": [RBAC], "resources": ["roles"], "verbs": ["bind", "escalate"]})
        out.append({"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["bind"]})
    if with_data:
        out.append({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get"]})
        out.append({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]})
    return out


def plan(restore_body: dict, job: str, target_namespace: str, chosen: list[Served], *,
         with_data: bool, update: bool = False) -> list[dict]:
    """The writer's ServiceAccount (the Restore's namespace), Role and RoleBinding (the target's)."""
    meta = restore_body["metadata"]
    restore, namespace = meta["name"], meta.get("namespace", "")
    name = writer_name(job)

    def child(api_version: str, kind: str, where: str, **fields) -> dict:
        m: dict = {"name": name, "namespace": where, "labels": labels(restore, COMPONENT),
                   "annotations": {LABEL_RESTORE: f"{namespace}/{restore}"}}
        if where == namespace:  # an owner in another namespace is no owner: those are deleted by name
            m["ownerReferences"] = [owner_reference(restore_body)]
        return stamp({"apiVersion": api_version, "kind": kind, "metadata": m, **fields})

    return [
        child("v1", "ServiceAccount", namespace),
        child(f"{RBAC}/v1", "Role", target_namespace, rules=rules(chosen, with_data=with_data, update=update)),
        child(f"{RBAC}/v1", "RoleBinding", target_namespace,
              roleRef={"apiGroup": RBAC, "kind": "Role", "name": name},
              subjects=[{"kind": "ServiceAccount", "name": name, "namespace": namespace}]),
    ]
