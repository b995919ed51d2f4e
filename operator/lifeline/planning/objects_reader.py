"""A resources policy -> the account its backup Jobs read the namespace's objects as. Pure.

Three objects named ``<policy>-objects`` in the policy's namespace: a ServiceAccount, a Role that
may ``get`` and ``list`` exactly the kinds the policy selects (:func:`lifeline.sources.resources.selection`,
grouped by API group) and nothing else, and the RoleBinding between them. The backup pod runs as
that account, so what a tenant's policy can back up is what its own namespace holds and the
selection names; never another namespace, never a cluster-scoped object. Owned by the policy:
they go with it, and are deleted when the policy stops being a resources policy.

Only kinds its author was checked for. The admission webhook checks whoever writes the spec of a
resources policy (may they ``list`` each selected kind?) and records the kinds it checked, with the
author, in annotations sealed by the webhook's key over the policy's namespace, name and spec
(:func:`seal`; :mod:`lifeline.webhooks.object_authors`). With no ``includeKinds`` the selection is
"everything listable", which grows when a CRD is installed later; so the Role grants only the kinds
that are both selected now and recorded (:func:`view`, :func:`compare`), and the rest are named in
``SourceAvailable`` until someone who may read them applies the policy again. A policy without a
record whose seal holds (written before the record existed, edited past the webhook, sealed under a
rotated key) grants nothing (``KindsNotChecked``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json

from lifeline.labels import ANN_CHECKED_FOR, ANN_CHECKED_KINDS, ANN_CHECKED_SEAL, ANN_POLICY
from lifeline.objects import owner_reference
from lifeline.sources import room_of
from lifeline.sources.resources import MAX_POLICY_NAME, Served, reader_name, selection

from .backup import labels, parse_spec, stamp
from .objects_writer import Kind, recorded

# the record's annotations, all three written by the webhook alone (a request that edits them is refused)
RECORD = (ANN_CHECKED_KINDS, ANN_CHECKED_FOR, ANN_CHECKED_SEAL)
_SEALED_AS = "BackupPolicy checked-kinds v1"  # never the payload of another seal made with the same key


def seal(key: bytes, body: dict, author: str, kinds: str) -> str:
    """The webhook's seal over a policy's record: ``kinds`` (:func:`~.objects_writer.record`) were checked
    for ``author`` when this namespace's policy of this name had exactly this spec. Replayed onto another
    policy, or kept on a spec written since past the webhook, it no longer holds."""
    meta = body.get("metadata") or {}
    payload = json.dumps([_SEALED_AS, meta.get("namespace", ""), meta.get("name", ""), body.get("spec") or {},
                          author, kinds], sort_keys=True, separators=(",", ":"))
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def checked(body: dict, key: bytes | None) -> str | None:
    """The kinds recorded as checked for the policy's author (``"configmaps,deployments.apps"``), when the
    record is whole and the seal of the webhook holding ``key`` holds over it and the policy; else None."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    kinds, author, given = (annotations.get(k) for k in RECORD)
    if key is None or not all(isinstance(v, str) for v in (kinds, author, given)) or not author:
        return None
    return kinds if hmac.compare_digest(given, seal(key, body, author, kinds)) else None


def compare(selected: list[Served], checked_kinds: str | None) -> tuple[list[Served], list[Served]]:
    """The selected kinds that were checked (``checked_kinds``: :func:`checked`; None, no record: none),
    and those that were not."""
    kinds = {k.name for k in recorded(checked_kinds)}
    return ([r for r in selected if Kind(r.group, r.plural).name in kinds],
            [r for r in selected if Kind(r.group, r.plural).name not in kinds])


def view(served: tuple[Served, ...], checked_kinds: str | None) -> tuple[Served, ...]:
    """Discovery as one policy may read it: every kind not recorded (:func:`compare`) marked ``unchecked``,
    so that :func:`~lifeline.sources.resources.selection` leaves it out (the Role, the backup Job's list of
    kinds) and :func:`~lifeline.sources.resources.withheld` names it (``SourceAvailable``)."""
    kinds = {k.name for k in recorded(checked_kinds)}

    def marked(r: Served) -> Served:
        unchecked = Kind(r.group, r.plural).name not in kinds
        return r if r.unchecked == unchecked else dataclasses.replace(r, unchecked=unchecked)

    return tuple(marked(r) for r in served)

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
    """The reader's ServiceAccount, Role and RoleBinding ([] unless the policy backs up objects).

    ``served``: the policy's :func:`view` of discovery, so the Role grants only kinds its author was
    checked for (none at all without a record: a Role with no rules)."""
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
