"""A resources backup's first step: the namespace's objects written out as documents.

The job plan's ``source.resources`` (:class:`~lifeline.messages.ResourcesPlan`) names each kind to
read, at the version the operator's discovery preferred. Each object becomes one JSON file,
``<path>/<resource>[.<group>]/<name>.json``, as the API served it less what the server sets
(``uid``, ``resourceVersion``, ``managedFields``, ``creationTimestamp``, ``generation``, and
``status`` unless the plan keeps it), with its ``apiVersion`` and ``kind``; then the agent backs
the tree up as it backs up a volume, so objects are encrypted, deduplicated and pruned like all
data. Left out: what a controller made (Pods, ReplicaSets and Jobs with a controlling owner: the
owner is kept and makes them again), ServiceAccount token Secrets and the cluster's own
``kube-root-ca.crt`` ConfigMap, which every namespace gets anyway.

The reader uses the pod's own ServiceAccount (in-cluster credentials; ``KUBECONFIG`` when set:
:func:`lifeline.agent.objects_restore.connect`),
which the operator bound to get and list exactly these kinds in this namespace: a kind it may not
read fails the backup with the API server's words rather than leaving a hole in the point.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from lifeline.errors import LifelineError
from lifeline.messages import ResourcePlan, ResourcesPlan

from .objects_restore import Api, Refused, connect

PAGE = 500
SERVER_SET = ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation", "selfLink",
              "deletionTimestamp", "deletionGracePeriodSeconds")
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"


class ObjectsUnreadable(LifelineError):
    """A kind the plan names could not be listed (forbidden, not served, the API server unreachable)."""


@dataclass
class Written:
    """What :func:`write_objects` wrote: objects per kind, and those left out on purpose."""

    kinds: Counter = field(default_factory=Counter)
    left_out: int = 0

    @property
    def objects(self) -> int:
        return sum(self.kinds.values())


def cleaned(obj: dict, resource: ResourcePlan, keep_status: bool) -> dict:
    """The object as stored in a point: its apiVersion and kind, without what the server sets."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_SET}
    out = {"apiVersion": resource.api_version, "kind": resource.kind, **obj, "metadata": meta}
    if not keep_status:
        out.pop("status", None)
    return out


def left_out(obj: dict, resource: ResourcePlan) -> bool:
    """Whether the cluster makes this object again by itself (see the module's docstring)."""
    meta = obj.get("metadata") or {}
    if resource.owned and any(r.get("controller") for r in meta.get("ownerReferences") or ()):
        return True
    if resource.kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        return True
    return resource.kind == "ConfigMap" and meta.get("name") == ROOT_CA_CONFIGMAP


def file_name(name: str) -> str:
    """``<name>.json``; a name too long for a file (253 characters are allowed) by its digest: the
    document holds the name itself, and one long name must not fail the namespace's backup."""
    return f"{name}.json" if len(name) <= 200 else f"{hashlib.sha256(name.encode()).hexdigest()}.json"


def folder(resource: ResourcePlan) -> str:
    """``deployments.apps``, ``configmaps``: the kind's folder, as kubectl names the resource."""
    group = resource.api_version.rpartition("/")[0]
    return f"{resource.plural}.{group}" if group else resource.plural


def _pages(api: Api, resource: ResourcePlan, plan: ResourcesPlan):
    prefix = "/api" if "/" not in resource.api_version else "/apis"
    path = f"{prefix}/{resource.api_version}/namespaces/{plan.namespace}/{resource.plural}"
    token = None
    while True:
        query = {"limit": PAGE, **({"labelSelector": plan.selector} if plan.selector else {}),
                 **({"continue": token} if token else {})}
        try:
            page = api.call("GET", f"{path}?{urlencode(query)}")
        except Refused as exc:
            raise ObjectsUnreadable(f"cannot list {folder(resource)} in {plan.namespace}: {exc.message} "
                                    f"(HTTP {exc.status})") from None
        yield from page.get("items") or ()
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return


def _write(into: Path, resource: ResourcePlan, doc: dict, written: Written) -> None:
    where = into / folder(resource)
    where.mkdir(parents=True, exist_ok=True)
    (where / file_name(doc["metadata"]["name"])).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    written.kinds[folder(resource)] += 1


def write_objects(plan: ResourcesPlan, into: Path, api: Api | None = None) -> Written:
    """Every object the plan selects, one JSON file each under ``into`` (and, when the plan asks, the
    cluster-scoped objects they depend on); what was written."""
    api = api or connect()
    written = Written()
    claims: list[dict] = []
    for resource in plan.resources:
        (into / folder(resource)).mkdir(parents=True, exist_ok=True)
        for obj in _pages(api, resource, plan):
            if left_out(obj, resource):
                written.left_out += 1
                continue
            doc = cleaned(obj, resource, bool(plan.status))
            _write(into, resource, doc, written)
            if resource.kind == "PersistentVolumeClaim":
                claims.append(doc)
    if plan.cluster_dependencies:
        for resource, name in dependencies(plan, written, claims):
            obj = _get_cluster_object(api, resource, name)
            if obj is not None:
                _write(into, resource, cleaned(obj, resource, False), written)
    return written


# The cluster-scoped objects a namespace's objects depend on (source.resources.clusterDependencies).
CRDS = ResourcePlan(api_version="apiextensions.k8s.io/v1", plural="customresourcedefinitions",
                    kind="CustomResourceDefinition")
STORAGE_CLASSES = ResourcePlan(api_version="storage.k8s.io/v1", plural="storageclasses", kind="StorageClass")
VOLUMES = ResourcePlan(api_version="v1", plural="persistentvolumes", kind="PersistentVolume")


def dependencies(plan: ResourcesPlan, written: Written, claims: list[dict]) -> list[tuple[ResourcePlan, str]]:
    """What to read besides: the CRD of every kind of a dotted group that has objects here (a built-in
    or aggregated group has none: its 404 is skipped), each claim's StorageClass and bound volume."""
    out: list[tuple[ResourcePlan, str]] = []
    for resource in plan.resources:
        group = resource.api_version.rpartition("/")[0]
        if "." in group and written.kinds.get(folder(resource)):
            out.append((CRDS, f"{resource.plural}.{group}"))
    for claim in claims:
        spec = claim.get("spec") or {}
        if spec.get("storageClassName"):
            out.append((STORAGE_CLASSES, spec["storageClassName"]))
        if spec.get("volumeName"):
            out.append((VOLUMES, spec["volumeName"]))
    unique = {(r.plural, name): (r, name) for r, name in out}
    return list(unique.values())


def _get_cluster_object(api: Api, resource: ResourcePlan, name: str) -> dict | None:
    prefix = "/api" if "/" not in resource.api_version else "/apis"
    try:
        return api.call("GET", f"{prefix}/{resource.api_version}/{resource.plural}/{name}")
    except Refused as exc:
        if exc.status == 404:  # a built-in kind (no CRD), a class or volume since deleted
            return None
        raise ObjectsUnreadable(f"cannot read {folder(resource)} {name}, which the namespace's objects depend on: "
                                f"{exc.message} (HTTP {exc.status}); the admin allows it by binding the "
                                "ClusterRole lifeline-objects-cluster-reader to this policy's reader") from None
