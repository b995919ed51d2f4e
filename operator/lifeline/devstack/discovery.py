"""Discovery and OpenAPI: how kubectl finds the served kinds and learns how to write them.

kmock answers the group lists itself; the per-version resource lists are rebuilt
here as the real server lists them, and an OpenAPI v3 document with paths and
verbs only is served so that ``kubectl apply`` works without schemas.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import kmock

from lifeline.devstack.api_errors import no_route
from lifeline.devstack.resources import ALL_VERBS, api_version_of, kind_of

Resources = Mapping[kmock.resource, kmock.ResourceInfo]  # kmock's ResourcesArray is one


def resource_list(resources: Resources, group: str | None, version: str | None) -> dict:
    """An APIResourceList as the server lists it: subresources bare, without short names."""
    entries = []
    served = [r for r in resources if r.group == group and r.version == version and r.plural]
    for res in sorted(served, key=lambda r: r.plural):
        info = resources[res]
        kind, namespaced = kind_of(res, info), info.namespaced is not False
        entry = {"name": res.plural, "singularName": info.singular or kind.lower(), "namespaced": namespaced,
                 "kind": kind, "verbs": sorted(info.verbs or ALL_VERBS)}
        if info.shortnames:
            entry["shortNames"] = sorted(info.shortnames)
        if info.categories:
            entry["categories"] = sorted(info.categories)
        entries.append(entry)
        entries += [{"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": namespaced,
                     "kind": kind, "verbs": ["get", "patch", "update"]} for sub in sorted(info.subresources)]
    if not entries and group:
        raise no_route()
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": api_version_of(kmock.resource(group, version, "x")), "resources": entries}


def openapi(resources: Resources, path: str) -> dict:
    """The answer to ``GET /openapi/v3[/<group-version>]``: the index, or one document."""
    documents = _openapi_documents(resources)
    wanted = path.removeprefix("/openapi/v3").strip("/")
    if not wanted:
        return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_digest(doc)}"}
                          for gv, doc in sorted(documents.items())}}
    if wanted not in documents:
        raise no_route()
    return documents[wanted]


def _openapi_documents(resources: Resources) -> dict[str, dict]:
    """One OpenAPI v3 document per group-version, with paths and verbs only (no schemas).

    kubectl reads two things from it: that PATCH and POST take ``fieldValidation`` (so it
    leaves validation to the server instead of downloading OpenAPI v2), and which patch
    types a kind accepts (no strategic merge here, so kubectl falls back to its built-in
    types for builtins and to a JSON merge patch for custom resources, as it does for CRDs).
    """
    documents: dict[str, dict] = {}
    for res in resources:
        if not res.plural:
            continue
        info = resources[res]
        gv = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
        gvk = {"group": res.group, "version": res.version, "kind": kind_of(res, info)}
        base = "/" + gv + ("/namespaces/{namespace}" if info.namespaced is not False else "") + f"/{res.plural}"
        params = [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for p in ("dryRun", "fieldManager", "fieldValidation")]

        def operation(action: str, media_types: Iterable[str]) -> dict:
            return {"operationId": f"{action}{gvk['kind']}", "parameters": params,
                    "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in media_types}},
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}

        patch_types = ("application/json-patch+json", "application/merge-patch+json",
                       "application/apply-patch+yaml")
        paths = documents.setdefault(gv, {"openapi": "3.0.0", "info": {"title": "Kubernetes",
                                                                         "version": "lifeline-emulator"},
                                          "paths": {}, "components": {"schemas": {}}})["paths"]
        paths[base] = {"post": operation("post", ["application/json"])}
        paths[base + "/{name}"] = {"put": operation("put", ["application/json"]),
                                   "patch": operation("patch", patch_types)}
    return documents


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32].upper()
