"""The vocabulary the other emulator modules share: well-known resources and naming.

How a served resource is named (its kind and apiVersion), where an object keeps
its metadata, and the two resources the emulator gives behaviour of their own:
namespaces and CustomResourceDefinitions.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kmock

NAMESPACES = kmock.resource("", "v1", "namespaces")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def meta_of(obj: Mapping[str, Any]) -> dict:
    return obj.get("metadata") or {}


def kind_of(res: kmock.resource, info: kmock.ResourceInfo) -> str:
    return info.kind or str(res.plural).capitalize()


def api_version_of(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def selectable(spec: Any) -> kmock.resource:
    """A resource from what a test may name one by: 'apps/v1/deployments', a KindInfo, a resource."""
    return spec if isinstance(spec, kmock.resource) else kmock.resource(spec)
