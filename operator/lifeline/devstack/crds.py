"""CustomResourceDefinitions: what serving one means, and the ones a test cluster has.

The apiextensions server turns a stored CRD into a served resource and fills its
status; the emulator does the same from :func:`crd_status` and :func:`served_resources`.
The rest builds and installs CRDs: the schemaless third-party kinds the operator
uses but does not define, and Lifeline's own, exactly as ``crds/`` holds them.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import kmock

from lifeline.devstack.resources import ALL_VERBS, CRDS, meta_of
from lifeline.devstack.tables import AGE_COLUMN

if TYPE_CHECKING:
    from lifeline.devstack.emulator import HonestEmulator


def crd_status(crd: dict) -> None:
    """Fill in the status the apiextensions server gives a CRD: names accepted, established."""
    spec = crd.get("spec") or {}
    status = crd.setdefault("status", {})
    status["acceptedNames"] = copy.deepcopy(spec.get("names") or {})
    status["storedVersions"] = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    stamp = (crd.get("metadata") or {}).get("creationTimestamp")
    status["conditions"] = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": stamp}
        for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"))
    ]


def served_resources(crd: Mapping[str, Any]) -> dict[kmock.resource, tuple[kmock.ResourceInfo, list[dict]]]:
    """Each resource a CRD serves (one per served version), with its info and printer columns."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = {}
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        res = kmock.resource(spec["group"], version["name"], names["plural"])
        info = kmock.ResourceInfo(
            kind=names.get("kind"), singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced", verbs=set(ALL_VERBS),
            shortnames=set(names.get("shortNames") or ()), categories=set(names.get("categories") or ()),
            subresources={"status"} & set(version.get("subresources") or {}),  # no scale served here
        )
        served[res] = (info, list(version.get("additionalPrinterColumns") or [AGE_COLUMN]))
    return served


def install_crd(emulator: HonestEmulator, crd: Mapping[str, Any]) -> dict:
    """Create a CustomResourceDefinition as `kubectl apply` would; its resource is then served."""
    existing = emulator.stored(CRDS, None, meta_of(crd)["name"])
    return existing if existing is not None else emulator.seed(CRDS, crd)


def simple_crd(group: str, version: str, plural: str, kind: str, *, namespaced: bool = True,
               status: bool = True, short_names: Iterable[str] = ()) -> dict:
    """A schemaless CRD, for third-party kinds the operator uses but does not define."""
    version_entry: dict[str, Any] = {
        "name": version, "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    if status:
        version_entry["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced" if namespaced else "Cluster",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List",
                           "shortNames": list(short_names)},
                 "versions": [version_entry]},
    }


# What a cluster the operator runs in has besides the builtins: CSI snapshots and kopf's peering.
THIRD_PARTY_CRDS = (
    simple_crd("snapshot.storage.k8s.io", "v1", "volumesnapshots", "VolumeSnapshot", short_names=("vs",)),
    simple_crd("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass",
               namespaced=False, status=False, short_names=("vsclass", "vsclasses")),
    simple_crd("snapshot.storage.k8s.io", "v1", "volumesnapshotcontents", "VolumeSnapshotContent",
               namespaced=False, short_names=("vsc", "vscs")),
    simple_crd("kopf.dev", "v1", "kopfpeerings", "KopfPeering", status=False),
    simple_crd("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False, status=False),
)


def register_lifeline_crds(emulator: HonestEmulator) -> None:
    """Install the CRD of every kind in ``lifeline.api.KINDS``, exactly as ``crds/`` holds it."""
    from lifeline.api import KINDS
    from lifeline.crd import crd_for

    for info in KINDS:
        install_crd(emulator, crd_for(info))
