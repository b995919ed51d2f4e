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

What was checked is what is given. The policy is read twice, at creation (the check) and at start
(the Role), and may change in between (or the point and policy may appear only after creation).
So the mutating webhook records, at creation, the kinds it selected then (:func:`record`, in
``dr.lifeline.io/checked-kinds``, under the approvals' seal), the validating webhook checks the
requester for exactly those (:func:`recorded`), and at start :func:`writable` gives the writer only
kinds that are both recorded and selected now, refusing to start when the selection holds any that
were not checked.

Another cluster (``kubeconfigSecret``) gets none of this: there the kubeconfig's identity writes,
judged by that cluster's RBAC.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lifeline.labels import LABEL_RESTORE
from lifeline.objects import owner_reference
from lifeline.sources.resources import Served

from .backup import PlanError, labels, stamp

COMPONENT = "objects-writer"
SUFFIX = "-writer"
RBAC = "rbac.authorization.k8s.io"
WRITE_VERBS = ("create", "get")  # and update, only for a restore that replaces what exists (existing: Update)
KINDS = (("v1", "ServiceAccount"), (f"{RBAC}/v1", "Role"), (f"{RBAC}/v1", "RoleBinding"))


@dataclass(frozen=True)
class Kind:
    """A kind as recorded: ``plural.group`` (``deployments.apps``), or ``plural`` for the core group."""

    group: str
    plural: str

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @classmethod
    def of(cls, name: str) -> "Kind":
        plural, _, group = name.partition(".")  # a plural holds no dot; a group may hold several
        return cls(group, plural)


def record(chosen) -> str:
    """The kinds the requester is checked for, as the webhook records them: ``configmaps,deployments.apps``
    (``""``: none, as for a point or policy that cannot be found)."""
    return ",".join(sorted({Kind(r.group, r.plural).name for r in chosen}))


def recorded(text: str | None) -> tuple[Kind, ...]:
    """The kinds of a record (:func:`record`); none for no record."""
    return tuple(Kind.of(n) for n in dict.fromkeys(n.strip() for n in (text or "").split(",")) if n)


def writable(chosen: list[Served], checked: str | None, *, policy: str) -> list[Served]:
    """The kinds the writer may be given: those the policy selects now (``chosen``) that its requester
    was checked for at creation (``checked``: the sealed record, None when there is none or it is not
    sealed). Raises :class:`PlanError` when that is not all of ``chosen``.

    Nothing recorded (the point or policy could not be found at creation, or selected nothing, or the
    records are not the webhook's): ``KindsNotChecked``. Kinds selected now that were not checked (the
    policy was edited since): ``SelectionChanged``, naming them. Refused rather than narrowed to what
    was checked: a narrowed writer would make a different restore from the one asked for and approved,
    with the new kinds' objects failing one by one as forbidden, and the edit that added them may well
    be meant (the policy now protects more); a new Restore checks its requester for the selection as it
    is now and gets approvals for it, so the refusal says to create one.
    """
    kinds = {k.name for k in recorded(checked)}
    if not kinds:
        raise PlanError("Ready", "KindsNotChecked", (
            "no kinds were checked against the requester when this Restore was created (its RecoveryPoint or "
            f"BackupPolicy {policy} could not be found then, or selected nothing, or its records are not "
            "Lifeline's admission webhook's), so its writer may be given none: nothing was written; create "
            "the Restore again now that the point and its policy exist, and its requester is checked for "
            "what the policy selects"))
    unchecked = [r.name for r in chosen if Kind(r.group, r.plural).name not in kinds]
    if unchecked:
        were = "was" if len(unchecked) == 1 else "were"
        raise PlanError("Ready", "SelectionChanged", (
            f"BackupPolicy {policy} now selects {', '.join(unchecked)}, which {were} "
            "not checked against the requester when this Restore was created (the policy changed since): "
            "nothing was written; create a new Restore, whose requester is checked for what the policy "
            "selects now (it needs new approvals)"))
    return [r for r in chosen if Kind(r.group, r.plural).name in kinds]


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


def in_one_namespace(job: str, namespace: str, chosen: list[Served], *, with_data: bool, labels: dict,
                     annotations: dict) -> list[dict]:
    """The writer of a Job that runs where it writes (a drill's sandbox, whose objects all go with it):
    its ServiceAccount, a Role of :func:`rules` (create and get only: a sandbox is new) and the
    RoleBinding, all in ``namespace``, with ``labels`` and ``annotations`` and no owner."""
    name = writer_name(job)

    def child(api_version: str, kind: str, **fields) -> dict:
        return stamp({"apiVersion": api_version, "kind": kind, **fields,
                      "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                                   "annotations": dict(annotations)}})

    return [
        child("v1", "ServiceAccount"),
        child(f"{RBAC}/v1", "Role", rules=rules(chosen, with_data=with_data)),
        child(f"{RBAC}/v1", "RoleBinding", roleRef={"apiGroup": RBAC, "kind": "Role", "name": name},
              subjects=[{"kind": "ServiceAccount", "name": name, "namespace": namespace}]),
    ]
