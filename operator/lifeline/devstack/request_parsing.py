"""Reading a request the way the API server reads it, where kmock reads it otherwise.

kmock parses URLs and bodies for a generic mock; the API server differs in a few
places a client notices: core/v1 namespace URLs, Go's booleans in query parameters,
which body encodings it accepts, and ``dryRun``. Those readings live here.
"""
from __future__ import annotations

import json
import re
from typing import Any

import aiohttp.web
import kmock
import yaml
from kmock._internal import parsing  # kmock 0.8's URL grammar, for the one URL it gets wrong

from lifeline.devstack.api_errors import bad_request, unsupported_media_type
from lifeline.devstack.resources import NAMESPACES

# Kubernetes' binary encodings: their schemas live in the Go types, which are not here.
_BINARY_MEDIA_TYPES = frozenset({"application/vnd.kubernetes.protobuf", "application/cbor"})
_NAMESPACE_URL = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?")


def namespace_url(path: str) -> re.Match | None:
    """A core/v1 namespace URL (kmock misreads those), or None for any other."""
    return _NAMESPACE_URL.fullmatch(path)


def namespace_request(raw_request: aiohttp.web.BaseRequest, match: re.Match, body: bytes,
                      request_id: int) -> kmock.Request:
    """The request to a :func:`namespace_url` (``match``): the namespaces resource, never a namespace."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    path = parsing.ParsedPath(group="", version="v1", plural="namespaces", name=match["name"],
                              subresource=match["sub"])
    return kmock.Request(
        id=request_id, raw_request=raw_request, url=raw_request.url, method=raw_request.method,
        params=dict(raw_request.query), headers=dict(raw_request.headers), cookies=dict(raw_request.cookies),
        data=data, body=body, text=body.decode("utf-8", "replace"),
        action=parsing.guess_k8s(path, kmock.method(raw_request.method), dict(raw_request.query)),
        resource=NAMESPACES, namespace=None, name=match["name"], subresource=match["sub"])


def flag(request: kmock.Request, name: str) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool reads it."""
    return request.params.get(name) in ("1", "t", "T", "true", "TRUE", "True")


def is_dry_run(request: kmock.Request) -> bool:
    return request.params.get("dryRun") == "All"


def media_type(request: kmock.Request) -> str:
    """The Content-Type without its parameters, lower-cased; JSON when none is sent."""
    for header, value in request.headers.items():
        if header.lower() == "content-type":
            return value.split(";")[0].strip().lower()
    return "application/json"


def read_body(request: kmock.Request) -> Any:
    """The decoded body: JSON, or YAML for server-side apply; binary encodings are a 415."""
    encoding = media_type(request)
    if encoding in _BINARY_MEDIA_TYPES:
        raise unsupported_media_type(
            f"the emulator cannot decode {encoding} (the schemas live in the Go types); "
            "accepted media types include: application/json. kubectl's typed commands "
            "(create namespace/configmap/secret) send protobuf: use `kubectl apply -f` or `create -f`")
    try:
        if encoding.startswith("application/apply-patch+yaml"):
            return yaml.safe_load(request.body or b"")
        return json.loads(request.body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the request body is not valid: {exc}") from None
