"""An honest Kubernetes API emulator, for `make demo` and the tests.

No kube-apiserver can run on the project's machines, so the operator is driven
against kmock's ``KubernetesEmulator`` over real HTTP. Out of the box that
emulator stores whatever it is sent: lists have no ``kind``, every
``resourceVersion`` is ``"..."``, nothing gets a uid, a creation time or a
generation, and status writes land in the spec. An operator tested against
that can be wrong in exactly the places where a real cluster bites: optimistic
concurrency, ``observedGeneration``, status subresources, finalizers.

:class:`HonestEmulator` keeps what kmock does well -- discovery, request
parsing, the per-object version history (``emulator.objects[...]``), the
request log (iterate the emulator) and user reactions (``emulator[...] << 500``
intercepts a request *before* it is applied) -- and replaces the object
semantics with the API server's:

- uid and creationTimestamp on create, immutable afterwards;
- one global, increasing ``resourceVersion``, bumped by every stored change;
  a stale one in an update or a patch is a 409 Conflict; a no-op write
  stores nothing, bumps nothing and notifies no watcher (as etcd's
  GuaranteedUpdate does);
- ``generation`` 1 on create, bumped when anything but metadata and status
  changes (and on graceful deletion, as the API server does);
- the status subresource: the main resource ignores status, ``/status``
  changes nothing but status; status is dropped on create;
- finalizers: DELETE marks ``deletionTimestamp``; emptying the finalizers
  removes the object; new finalizers on a deleting object are a 422;
- lists with ``kind``/``apiVersion``/``resourceVersion``, label and field
  selectors, ``limit``/``continue`` paging;
- watches that resume from a ``resourceVersion`` (410 Gone when it is older
  than the kept history), ``sendInitialEvents`` with the closing bookmark,
  ``timeoutSeconds``, and exactly one event per stored change;
- merge, JSON and strategic merge patches, and a simplified server-side apply;
- CustomResourceDefinitions: creating one serves its resource, as the real
  apiextensions server does; deleting it removes the resource and its objects;
- the controllers a test leans on without noticing: namespace termination
  (contents deleted, then the namespace) and owner-reference garbage
  collection, both run synchronously right after the write that triggers them.

Deliberate simplifications are listed in :data:`SIMPLIFICATIONS`.
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import copy
import hashlib
import json
import re
import secrets
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import parsing  # kmock 0.8's URL grammar, for the one URL it gets wrong

from lifeline.clock import Clock, SystemClock, rfc3339

SIMPLIFICATIONS = (
    "No authentication, authorization or admission webhooks; every request is served.",
    "No schema validation or defaulting: objects are stored as sent (names are checked); "
    "fieldValidation=Strict is accepted and ignored.",
    "JSON and YAML bodies only: protobuf and CBOR are refused with 415, so kubectl's typed "
    "commands (create namespace/configmap/secret) fail; `kubectl apply -f`/`create -f` work.",
    "Server-side Tables (kubectl's columns) only for CRDs, from their printer columns; builtins "
    "answer plain lists and kubectl prints NAME and AGE for them.",
    "Field selectors accept any dotted path (the real server allows a few fields per kind).",
    "Reads and lists always serve the latest state (resourceVersion on GET/list is ignored); "
    "watches send no periodic bookmarks, only the initial-events one.",
    "Strategic merge patch knows the common merge keys (containers, env, volumes, ports, "
    "conditions, ...) by field name, not from the Go types; finalizers merge as a set.",
    "Server-side apply merges the applied configuration like a strategic merge patch: "
    "it never removes fields a manager stopped applying, tracks no managedFields, "
    "and never reports field-ownership conflicts.",
    "core/v1 Events and events.k8s.io/v1 Events are stored apart, not converted.",
    "A removal caused by emptying finalizers emits one DELETED event carrying the "
    "final (finalizer-less) state; the real server emits the last stored state.",
    "Garbage collection and namespace termination run synchronously after the write "
    "that triggers them, not in a separate controller a moment later.",
    "A continued list (continue=) is served from the current state, not a snapshot.",
    "No subresources but status (e.g. no scale, log, exec, eviction, token).",
    "By default an object may be created in a namespace that does not exist (a real server "
    "answers 404); set require_namespaces=True for the real rule.",
    "The garbage collector runs when an owner is removed; dependents pointing at owners that "
    "never existed are never collected.",
    "DELETE answers with the object for every resource (some real ones answer a Status).",
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
JSON = {"Content-Type": "application/json"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's: no vowels, no lookalikes
NAMESPACES = kmock.resource("", "v1", "namespaces")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An API failure answered as a Kubernetes ``Status``, not a traceback."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": self.details, "code": self.code,
        }


def _qualified(res: kmock.resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _details(res: kmock.resource, name: str | None, causes: list | None = None) -> dict:
    details = {"name": name, "group": res.group, "kind": res.plural}
    if causes:
        details["causes"] = causes
    return {k: v for k, v in details.items() if v}


def not_found(res: kmock.resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(res)} "{name}" not found', _details(res, name))


def no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def conflict(res: kmock.resource, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {_qualified(res)} "{name}": {why}',
                    _details(res, name))


def invalid(res: kmock.resource, kind: str, name: str, field: str, detail: str,
            cause: str = "FieldValueInvalid") -> ApiError:
    group = f".{res.group}" if res.group else ""
    message = f'{kind}{group} "{name}" is invalid: {field}: {detail}'
    causes = [{"reason": cause, "message": detail, "field": field}]
    return ApiError(422, "Invalid", message, {"name": name, "group": res.group, "kind": kind, "causes": causes})


def patch_failed(message: str) -> ApiError:
    """A JSON patch that does not apply (a failed ``test`` op included): 422, as the server says."""
    return ApiError(422, "Invalid", message)


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise patch_failed(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list, token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit():
        raise patch_failed(f"invalid list index {token!r}")
    index = int(token)
    if index > len(container) or (not adding and index == len(container)):
        raise patch_failed(f"list index {index} out of range")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, adding=False)]
        else:
            raise patch_failed(f"path /{'/'.join(tokens)} does not exist")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) on a copy of ``doc``."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)

    def put(tokens: list[str], value: Any, *, replace: bool) -> None:
        nonlocal doc
        if not tokens:
            doc = value
            return
        parent = _resolve(doc, tokens[:-1])
        last = tokens[-1]
        if isinstance(parent, dict):
            if replace and last not in parent:
                raise patch_failed(f"cannot replace missing /{'/'.join(tokens)}")
            parent[last] = value
        elif isinstance(parent, list):
            i = _index(parent, last, adding=not replace)
            if replace:
                parent[i] = value
            else:
                parent.insert(i, value)
        else:
            raise patch_failed(f"cannot add to a scalar at /{'/'.join(tokens[:-1])}")

    def take(tokens: list[str]) -> Any:
        if not tokens:
            raise patch_failed("cannot remove the whole document")
        parent = _resolve(doc, tokens[:-1])
        last = tokens[-1]
        if isinstance(parent, dict) and last in parent:
            return parent.pop(last)
        if isinstance(parent, list):
            return parent.pop(_index(parent, last, adding=False))
        raise patch_failed(f"cannot remove missing /{'/'.join(tokens)}")

    for op in ops:
        kind, path = op.get("op"), _pointer(op.get("path", ""))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"JSON patch op {kind!r} needs a value")
        if kind == "add":
            put(path, copy.deepcopy(op["value"]), replace=False)
        elif kind == "replace":
            put(path, copy.deepcopy(op["value"]), replace=True)
        elif kind == "remove":
            take(path)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = take(source) if kind == "move" else copy.deepcopy(_resolve(doc, source))
            put(path, value, replace=False)
        elif kind == "test":
            if _resolve(doc, path) != op["value"]:
                raise patch_failed(f"testing value /{'/'.join(path)} failed")
        else:
            raise bad_request(f"unknown JSON patch op {kind!r}")
    return doc


# Merge keys of the lists strategic merge patch merges item by item (patchMergeKey in the Go types).
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",), "imagePullSecrets": ("name",), "hostAliases": ("ip",),
    "ports": ("containerPort", "port"), "conditions": ("type",), "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",), "resourceClaims": ("name",),
}
_SET_LISTS = frozenset({"finalizers"})  # primitive lists with patchStrategy=merge


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch, as far as kubectl and controllers use it on builtins.

    Maps merge as in a merge patch; lists named in ``_MERGE_KEYS`` merge item by item
    on their key; ``finalizers`` merges as a set. The directives ``$patch``
    (replace/delete/merge), ``$retainKeys``, ``$setElementOrder/<list>`` and
    ``$deleteFromPrimitiveList/<list>`` are honoured. Anything else replaces.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in value]
        elif key.startswith("$setElementOrder/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = _reorder(field, result[field], value)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_key(field: str, items: Iterable[Any]) -> str | None:
    for candidate in _MERGE_KEYS.get(field, ()):
        if all(isinstance(i, dict) and candidate in i for i in items):
            return candidate
    return None


def _merge_list(field: str, current: Any, patch: list) -> list:
    current = current if isinstance(current, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if field in _SET_LISTS:
        return current + [copy.deepcopy(i) for i in patch if i not in current]
    key = _merge_key(field, [i for i in patch if isinstance(i, dict)] or [{}])
    if key is None or not all(isinstance(i, dict) and key in i for i in current):
        return [copy.deepcopy(i) for i in patch]
    merged = list(current)
    for item in patch:
        at = next((n for n, old in enumerate(merged) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if at is not None:
                merged.pop(at)
        elif at is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[at] = strategic_merge_patch(merged[at], item)
    return merged


def _reorder(field: str, items: list, order: list) -> list:
    key = _merge_key(field, items + order)
    ident = (lambda x: x.get(key)) if key else (lambda x: json.dumps(x, sort_keys=True))
    rank = {ident(x): n for n, x in enumerate(order)}
    return sorted(items, key=lambda x: rank.get(ident(x), len(rank)))


# --------------------------------------------------------------------------- selectors

_LABEL_REQUIREMENT = re.compile(
    r"^(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?$"
)


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """``a=b,c!=d,e,!f,g in (x,y),h notin (z)`` as a predicate on a labels dict (400 if malformed)."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_top_level(text or ""):
        m = _LABEL_REQUIREMENT.match(part)
        if not m or (m["neg"] and (m["op"] or m["set"])):
            raise bad_request(f"unable to parse requirement: {part!r}")
        key, value = m["key"], m["value"]
        if m["neg"]:
            checks.append(lambda ls, k=key: k not in ls)
        elif m["op"] in ("=", "=="):
            checks.append(lambda ls, k=key, v=value: ls.get(k) == v)
        elif m["op"] == "!=":
            checks.append(lambda ls, k=key, v=value: ls.get(k) != v)
        elif m["set"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if m["set"] == "in":
                checks.append(lambda ls, k=key, vs=values: k in ls and ls[k] in vs)
            else:
                checks.append(lambda ls, k=key, vs=values: ls.get(k) not in vs)
        else:
            checks.append(lambda ls, k=key: k in ls)
    return lambda labels: all(check(labels) for check in checks)


def field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """``metadata.name=x,status.phase!=Done`` as a predicate on an object (any dotted path)."""
    checks = []
    for part in _split_top_level(text or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid field selector: {part!r}")
        checks.append((m[1].split("."), m[2] != "!=", m[3]))

    def value_at(obj: Any, path: list[str]) -> str:
        for step in path:
            obj = obj.get(step) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj).lower() if isinstance(obj, bool) else str(obj)

    return lambda obj: all((value_at(obj, path) == want) == equal for path, equal, want in checks)


# --------------------------------------------------------------------------- the emulator


@dataclass(frozen=True)
class Change:
    """One stored change, as every watcher of its resource sees it."""

    rv: int
    resource: kmock.resource
    namespace: str | None
    type: str  # ADDED, MODIFIED, DELETED
    object: dict
    old: dict | None


@dataclass(frozen=True)
class Write:
    """One write request (POST, PUT, PATCH, DELETE) and what it did."""

    method: str
    path: str
    resource: kmock.resource | None
    namespace: str | None
    name: str | None
    subresource: str | None
    status: int | None  # None: a user reaction answered it, the emulator never saw it
    changed: bool  # whether anything was stored (no-op writes store nothing)


def _meta(obj: Mapping[str, Any]) -> dict:
    return obj.get("metadata") or {}


def _spec_part(obj: Mapping[str, Any]) -> dict:
    """What ``generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


def _selectable(spec: Any) -> kmock.resource:
    return spec if isinstance(spec, kmock.resource) else kmock.resource(spec)


@attrs.define(kw_only=True)
class HonestEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's object semantics (see the module docstring).

    Extra knobs: ``clock`` stamps creation and deletion times; ``history_limit``
    is how many changes are kept for resuming watches (older ones answer 410 Gone);
    ``garbage_collection`` deletes dependents whose owners are all gone;
    ``require_namespaces`` refuses to create into a namespace that does not exist.

    Everything runs in the event loop that serves it: call :meth:`seed`, :meth:`stored`
    and friends from that loop's thread, and blocking clients from another thread.
    """

    clock: Clock = attrs.field(factory=SystemClock)
    history_limit: int = 100_000
    garbage_collection: bool = True
    require_namespaces: bool = False

    _rv: int = attrs.field(default=0, init=False)
    _changes: list[Change] = attrs.field(factory=list, init=False)
    _forgotten_rv: int = attrs.field(default=0, init=False)  # changes up to this rv are dropped
    _wakeup: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _outcomes: dict[int, tuple[int, bool]] = attrs.field(factory=dict, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    _crd_served: dict[str, set[kmock.resource]] = attrs.field(factory=dict, init=False)
    _columns: dict[kmock.resource, list[dict]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock routes PATCH, POST, DELETE by action; PUT and collection-wide DELETE have none.
        self.fallback[kmock.method.PUT] << self._serve_put
        self.fallback[kmock.method.DELETE] << self._serve_delete_collection
        self.fallback[kmock.method.POST] << self._serve_unroutable
        self.fallback["get", re.compile(r"/openapi/v3(/.*)?")] << self._serve_openapi
        self.fallback["get", re.compile(r"/openapi/v2")] << self._serve_unroutable

    # ---- public helpers for tests and the demo

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion handed out (what a list made now would carry)."""
        return str(self._rv)

    @property
    def changes(self) -> list[Change]:
        """Every stored change still kept, oldest first: what watchers are fed from."""
        return list(self._changes)

    @property
    def writes(self) -> list[Write]:
        """All write requests so far, in arrival order, from kmock's own request log."""
        result = []
        for request in self._requests:
            if request.method.value not in WRITE_METHODS:
                continue
            status, changed = self._outcomes.get(request.id, (None, False))
            result.append(Write(request.method.value, request.url.path, request.resource,
                                request.namespace, request.name, request.subresource, status, changed))
        return result

    def count_writes(self, resource: Any = None, *, namespace: str | None = None, name: str | None = None,
                     method: str | None = None, subresource: Any = ...,
                     changed_only: bool = False, since: int = 0) -> int:
        """How many write requests match; ``resource`` may be partial: 'deployments', a KindInfo.

        ``since`` is an index into :attr:`writes` (take ``len(emulator.writes)`` before the
        part under test); ``changed_only`` counts only writes that stored something.
        """
        spec = None if resource is None else _selectable(resource)
        return sum(
            1 for w in self.writes[since:]
            if (spec is None or (w.resource is not None and spec.check(w.resource)))
            and (namespace is None or w.namespace == namespace)
            and (name is None or w.name == name)
            and (method is None or w.method == method.upper())
            and (subresource is ... or w.subresource == subresource)
            and (not changed_only or w.changed)
        )

    def seed(self, resource: Any, body: Mapping[str, Any]) -> dict:
        """Store an object as a POST would (uid, rv, generation, one ADDED event), keeping its status.

        For tests that need an object to exist in some state before the code under test
        runs; everything else should go through the API.
        """
        res = _selectable(resource)
        info = self._info(res)
        namespace = _meta(body).get("namespace") if info.namespaced is not False else None
        if info.namespaced is not False and not namespace:
            raise ValueError("seed() needs metadata.namespace for a namespaced resource")
        return copy.deepcopy(self._create(res, info, namespace, body, keep_status=True))

    def stored(self, resource: Any, namespace: str | None, name: str) -> dict | None:
        """A copy of the object as stored now, or None."""
        current = self._live((_selectable(resource), namespace, name))
        return copy.deepcopy(current) if current is not None else None

    async def wait_for(self, predicate: Callable[[], Any], timeout: float | None = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy, re-checking after every stored change; return it.

        For tests driving an operator: wait for the state it should reach, not for time.
        """
        async with asyncio.timeout(timeout):
            while not (result := predicate()):
                await self._wakeup.wait()
        return result

    def close_watches(self) -> None:
        """End every open watch stream (the server is going away)."""
        self._closing = True
        self._notify()

    # ---- request plumbing

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's entry point, except that core/v1 namespace URLs are parsed right.

        kmock reads ``/api/v1/namespaces/x`` as "namespace x, no resource" (and crashes on
        ``/api/v1/namespaces``): the segment is the namespaced-URL prefix to it, never the
        resource. Those requests are parsed here; everything else goes to kmock as is.
        """
        match = _NAMESPACE_URL.fullmatch(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        path = parsing.ParsedPath(group="", version="v1", plural="namespaces", name=match["name"],
                                  subresource=match["sub"])
        request = kmock.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url, method=raw_request.method,
            params=dict(raw_request.query), headers=dict(raw_request.headers), cookies=dict(raw_request.cookies),
            data=data, body=body, text=body.decode("utf-8", "replace"),
            action=parsing.guess_k8s(path, kmock.method(raw_request.method), dict(raw_request.query)),
            resource=NAMESPACES, namespace=None, name=match["name"], subresource=match["sub"])
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as exc:  # as kmock does: keep it for the test's teardown, answer a Status
            if not self._errors:
                raise
            self._errors[-1].append(exc)
            return await self._render_error(exc)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # The server parses booleans as Go does: the Python client sends watch=True, not "true".
        if request.action in (kmock.action.LIST, kmock.action.FETCH) and _flag(request, "watch"):
            request = attrs.evolve(request, action=kmock.action.WATCH)
            self._requests[request.id] = request
        # Skip kmock's own state mutation (it happens before reactions and ignores the rules);
        # the state changes here only in the fallback handlers, i.e. when no reaction answered.
        try:
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        except ApiError as exc:
            self._outcomes[request.id] = (exc.code, False)
            return aiohttp.web.json_response(exc.status(), status=exc.code)

    def _reply(self, request: kmock.Request, payload: Any, code: int = 200, changed: bool = False) -> kmock.Response:
        self._outcomes[request.id] = (code, changed)
        return kmock.Response(status=code, payload=payload, headers=JSON)

    def _info(self, res: kmock.resource | None) -> kmock.ResourceInfo:
        if res is None or res.plural is None or res not in self.resources:
            raise no_route()
        return self.resources[res]

    def _target(self, request: kmock.Request, *, subresources: Iterable[str] = ()) -> tuple:
        """The resource, its info and the object key a request addresses (404 when none)."""
        res = request.resource
        info = self._info(res)
        if request.subresource is not None and (
                request.subresource not in info.subresources or request.subresource not in subresources):
            raise no_route()
        namespaced = info.namespaced is not False
        if not namespaced and request.namespace is not None:
            raise no_route()  # cluster-scoped kinds have no namespaced URLs
        if namespaced and request.namespace is None and request.action not in (kmock.action.LIST,
                                                                               kmock.action.WATCH):
            raise no_route()  # namespaced kinds are listed and watched cluster-wide, nothing else
        return res, info, (res, request.namespace, request.name)

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        content_type = _content_type(request)
        if content_type in _BINARY_MEDIA_TYPES:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the emulator cannot decode {content_type} (the schemas live in the Go types); "
                           "accepted media types include: application/json. kubectl's typed commands "
                           "(create namespace/configmap/secret) send protobuf: use `kubectl apply -f` or `create -f`")
        try:
            if content_type.startswith("application/apply-patch+yaml"):
                return yaml.safe_load(request.body or b"")
            return json.loads(request.body or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the request body is not valid: {exc}") from None

    @staticmethod
    def _dry_run(request: kmock.Request) -> bool:
        return request.params.get("dryRun") == "All"

    def _kind(self, res: kmock.resource, info: kmock.ResourceInfo) -> str:
        return info.kind or str(res.plural).capitalize()

    @staticmethod
    def _api_version(res: kmock.resource) -> str:
        return f"{res.group}/{res.version}" if res.group else str(res.version)

    def _live(self, key: tuple) -> dict | None:
        if key not in self._objects:
            return None
        obj = self._objects[key]
        return None if obj.deleted else obj.last.raw

    def _objects_of(self, res: kmock.resource | None = None) -> Iterator[tuple[tuple, dict]]:
        for key, obj in list(self._objects.items()):
            if (res is None or key[0] == res) and not obj.deleted:
                yield key, obj.last.raw

    def _now(self) -> str:
        return rfc3339(self.clock.now())

    # ---- storing: every change goes through _commit, which is what watchers see

    def _commit(self, key: tuple, type_: str, new: dict, old: dict | None) -> dict:
        self._rv += 1
        new = copy.deepcopy(new)
        new.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        if type_ == "DELETED":
            self._objects[key].delete()
        elif key in self._objects:
            if self._objects[key].deleted:
                self._objects[key].create(new)
            else:
                self._objects[key].history.append(new)
        else:
            self._objects[key] = new
        self._changes.append(Change(self._rv, key[0], key[1], type_, copy.deepcopy(new), copy.deepcopy(old)))
        if len(self._changes) > self.history_limit:
            drop = len(self._changes) - self.history_limit // 2
            self._forgotten_rv = self._changes[drop - 1].rv
            del self._changes[:drop]
        self._notify()
        return new

    def _notify(self) -> None:
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    # ---- create

    def _create(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
                body: Any, *, dry_run: bool = False, keep_status: bool = False) -> dict:
        kind, api_version = self._kind(res, info), self._api_version(res)
        if not isinstance(body, dict):
            raise bad_request("the request body must be an object")
        if body.get("kind") not in (None, kind) or body.get("apiVersion") not in (None, api_version):
            raise bad_request(f"the body is a {body.get('apiVersion')}/{body.get('kind')}, "
                              f"the URL is for {api_version}/{kind}")
        obj = copy.deepcopy(body)
        obj.pop("kind", None), obj.pop("apiVersion", None)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        name = meta.get("name") or self._generate_name(res, namespace, meta.get("generateName"))
        if not name:
            raise invalid(res, kind, "", "metadata.name", "Required value: name or generateName is required")
        if len(name) > 253 or not _NAME.match(name):
            raise invalid(res, kind, name, "metadata.name",
                          f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                          "alphanumeric characters, '-' or '.'")
        key = (res, namespace, name)
        if self._live(key) is not None:
            raise ApiError(409, "AlreadyExists", f'{_qualified(res)} "{name}" already exists', _details(res, name))
        if namespace is not None:
            self._check_namespace(res, kind, name, namespace)

        obj = {"apiVersion": api_version, "kind": kind, **obj}
        meta = obj["metadata"]
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=self._now(), generation=1)
        if namespace is not None:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(field, None)
        if "status" in info.subresources and not keep_status:
            obj.pop("status", None)
        if res == NAMESPACES:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {})["phase"] = "Active"
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        if res == CRDS:
            self._crd_status(obj)
        if dry_run:
            return obj
        stored = self._commit(key, "ADDED", obj, None)
        if res == CRDS:
            self._serve_crd(stored)
        return stored

    def _generate_name(self, res: kmock.resource, namespace: str | None, prefix: str | None) -> str | None:
        if not prefix:
            return None
        while True:
            name = prefix[:58] + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))
            if self._live((res, namespace, name)) is None:
                return name

    def _check_namespace(self, res: kmock.resource, kind: str, name: str, namespace: str) -> None:
        ns = self._live((NAMESPACES, None, namespace))
        if ns is None and self.require_namespaces:
            raise not_found(NAMESPACES, namespace)
        if ns is not None and _meta(ns).get("deletionTimestamp"):
            raise ApiError(403, "Forbidden",
                           f'{res.plural} "{name}" is forbidden: unable to create new content in namespace '
                           f"{namespace} because it is being terminated", _details(res, name))

    # ---- update (PUT and PATCH end here)

    def _update(self, res: kmock.resource, info: kmock.ResourceInfo, key: tuple, old: dict, candidate: Any,
                subresource: str | None, *, via_patch: bool, dry_run: bool = False) -> tuple[dict, bool]:
        """Admit ``candidate`` as the next state of ``old``; store it unless nothing changed."""
        kind, name = self._kind(res, info), key[2]
        if not isinstance(candidate, dict):
            raise bad_request("the object must be a JSON object")
        old_meta, cand_meta = _meta(old), candidate.setdefault("metadata", {})
        if not isinstance(cand_meta, dict):
            raise bad_request("metadata must be an object")

        # Optimistic concurrency: a resourceVersion that is given must be the current one.
        given_rv = cand_meta.get("resourceVersion")
        if given_rv:
            if str(given_rv) != old_meta.get("resourceVersion"):
                raise conflict(res, name)
        elif not via_patch and res in self._custom:
            raise invalid(res, kind, name, "metadata.resourceVersion",
                          "Invalid value: 0x0: must be specified for an update")
        if cand_meta.get("name", name) != name:
            if via_patch:
                raise invalid(res, kind, name, "metadata.name", "Invalid value: field is immutable")
            raise bad_request(f"the name of the object ({cand_meta.get('name')}) does not match "
                              f"the name on the URL ({name})")
        if cand_meta.get("namespace") not in (None, "", key[1]):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if cand_meta.get("uid") and cand_meta["uid"] != old_meta.get("uid"):
            if via_patch:
                raise invalid(res, kind, name, "metadata.uid", "Invalid value: field is immutable")
            raise conflict(res, name, f"Precondition failed: UID in precondition: {cand_meta['uid']}, "
                                      f"UID in object meta: {old_meta.get('uid')}")

        # The status subresource: each half of the object is written through its own door.
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(candidate)
            if "status" in info.subresources:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                          "generation", "namespace", "name"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            if old_meta.get("deletionTimestamp"):
                added = [f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
                if added:
                    raise invalid(res, kind, name, "metadata.finalizers",
                                  f"Forbidden: no new finalizers can be added if the object is being deleted, "
                                  f"found new finalizers {json.dumps(added)}", cause="FieldValueForbidden")
        new["kind"], new["apiVersion"] = self._kind(res, info), self._api_version(res)
        new["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        if res == NAMESPACES and subresource != "status":
            new["status"] = copy.deepcopy(old.get("status", {}))
        if res == CRDS:
            self._crd_status(new)
        if _spec_part(new) != _spec_part(old) and "generation" in old_meta:
            new["metadata"]["generation"] = old_meta["generation"] + 1

        if new == old:
            return old, False  # a no-op: nothing stored, nothing bumped, nobody notified
        if dry_run:
            return new, False
        if new["metadata"].get("deletionTimestamp") and not self._has_finalizers(res, new):
            return self._remove(key, new, old), True
        stored = self._commit(key, "MODIFIED", new, old)
        if res == CRDS:
            self._serve_crd(stored)
        return stored, True

    @staticmethod
    def _has_finalizers(res: kmock.resource, obj: Mapping[str, Any]) -> bool:
        spec_finalizers = (obj.get("spec") or {}).get("finalizers") if res == NAMESPACES else None
        return bool(_meta(obj).get("finalizers") or spec_finalizers)

    # ---- delete

    def _delete(self, res: kmock.resource, key: tuple, *, options: Mapping[str, Any] | None = None,
                dry_run: bool = False) -> tuple[dict, bool]:
        options = options or {}
        current = self._live(key)
        if current is None:
            raise not_found(res, key[2])
        meta = _meta(current)
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") not in (None, meta.get("uid")):
            raise conflict(res, key[2], f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                        f"UID in object meta: {meta.get('uid')}")
        if preconditions.get("resourceVersion") not in (None, meta.get("resourceVersion")):
            raise conflict(res, key[2])
        if meta.get("deletionTimestamp") or dry_run:
            return current, False  # already being deleted: nothing more to do
        if options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True:
            self._orphan_dependents(meta.get("uid"))
        if not self._has_finalizers(res, current):
            return self._remove(key, current, current), True
        new = copy.deepcopy(current)
        new["metadata"].update(deletionTimestamp=self._now(), deletionGracePeriodSeconds=0)
        if "generation" in meta:
            new["metadata"]["generation"] = meta["generation"] + 1  # the server marks deletion so
        if res == NAMESPACES:
            new.setdefault("status", {})["phase"] = "Terminating"
        stored = self._commit(key, "MODIFIED", new, current)
        if res == NAMESPACES:
            self._terminate_namespace(key[2])
            return self._live(key) or stored, True
        return stored, True

    def _remove(self, key: tuple, final: dict, old: dict) -> dict:
        """The object is gone: tell the watchers, then run the controllers that care."""
        gone = self._commit(key, "DELETED", final, old)
        res, namespace, name = key
        if res == CRDS:
            self._unserve_crd(name)
        if res == NAMESPACES:
            for k, _ in list(self._objects_of()):
                if k[1] == name:  # a namespace only goes once it is empty; a forced removal empties it
                    self._remove(k, self._live(k), self._live(k))
        if self.garbage_collection:
            self._collect_dependents(_meta(final).get("uid"))
        if namespace is not None:
            self._finish_namespace(namespace)
        return gone

    def _collect_dependents(self, owner_uid: str | None) -> None:
        """The garbage collector: dependents whose owners are all gone are deleted (background)."""
        if not owner_uid:
            return
        live = {_meta(obj).get("uid") for _, obj in self._objects_of()}
        for key, obj in list(self._objects_of()):
            refs = _meta(obj).get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs) and not any(r.get("uid") in live for r in refs):
                if self._live(key) is not None:
                    self._delete(key[0], key)

    def _orphan_dependents(self, owner_uid: str | None) -> None:
        for key, obj in list(self._objects_of()):
            refs = _meta(obj).get("ownerReferences") or []
            if owner_uid and any(r.get("uid") == owner_uid for r in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                self._commit(key, "MODIFIED", new, obj)

    def _terminate_namespace(self, namespace: str) -> None:
        """The namespace controller: delete the contents, then let the namespace go."""
        for key, _ in list(self._objects_of()):
            if key[1] == namespace and self._live(key) is not None:
                self._delete(key[0], key)
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        key = (NAMESPACES, None, namespace)
        ns = self._live(key)
        if ns is None or not _meta(ns).get("deletionTimestamp") or (ns.get("spec") or {}).get("finalizers") == []:
            return
        if any(k[1] == namespace for k, _ in self._objects_of()):
            return
        new = copy.deepcopy(ns)
        new.setdefault("spec", {})["finalizers"] = []
        if _meta(new).get("finalizers"):
            self._commit(key, "MODIFIED", new, ns)
        else:
            self._remove(key, new, ns)

    # ---- CustomResourceDefinitions: creating one serves its resource

    @staticmethod
    def _crd_status(crd: dict) -> None:
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

    def _serve_crd(self, crd: Mapping[str, Any]) -> None:
        spec, name = crd.get("spec") or {}, _meta(crd)["name"]
        names = spec.get("names") or {}
        served = set()
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            res = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[res] = kmock.ResourceInfo(
                kind=names.get("kind"), singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced", verbs=set(ALL_VERBS),
                shortnames=set(names.get("shortNames") or ()), categories=set(names.get("categories") or ()),
                subresources={"status"} & set(version.get("subresources") or {}),  # no scale served here
            )
            self._custom.add(res)
            self._columns[res] = list(version.get("additionalPrinterColumns") or [_AGE_COLUMN])
            served.add(res)
        for res in self._crd_served.get(name, set()) - served:
            self._forget_resource(res)
        self._crd_served[name] = served

    def _unserve_crd(self, name: str) -> None:
        for res in self._crd_served.pop(name, set()):
            for key, obj in list(self._objects_of(res)):
                self._commit(key, "DELETED", obj, obj)
            self._forget_resource(res)

    def _forget_resource(self, res: kmock.resource) -> None:
        self._custom.discard(res)
        self._columns.pop(res, None)
        if res in self.resources:
            del self.resources[res]

    # ---- the HTTP handlers (kmock's fallbacks: they run only when no user reaction answered)

    async def _serve_create(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        if request.name is not None:
            raise no_route()
        obj = self._create(res, info, request.namespace, self._body(request), dry_run=self._dry_run(request))
        return self._reply(request, obj, 201, changed=not self._dry_run(request))

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request, subresources=("status",))
        current = self._live(key)
        if current is None:
            raise not_found(res, key[2])
        if _wants_table(request) and res in self._columns and request.subresource is None:
            return self._reply(request, self._table(request, res, [current]))
        return self._reply(request, current)

    async def _serve_put(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request, subresources=("status",))
        if request.name is None:
            raise no_route()
        current = self._live(key)
        if current is None:
            raise not_found(res, key[2])
        obj, changed = self._update(res, info, key, current, self._body(request), request.subresource,
                                    via_patch=False, dry_run=self._dry_run(request))
        return self._reply(request, obj, 200, changed)

    async def _serve_update(self, request: kmock.Request) -> kmock.Response:  # PATCH
        res, info, key = self._target(request, subresources=("status",))
        content_type = _content_type(request)
        patch = self._body(request)
        current = self._live(key)
        if content_type == "application/apply-patch+yaml":
            if not request.params.get("fieldManager"):
                raise invalid(res, "PatchOptions", "", "fieldManager", "Required value: is required for apply patch")
            if current is None:
                if request.subresource:
                    raise not_found(res, key[2])
                body = dict(patch or {}, metadata=dict((patch or {}).get("metadata") or {}, name=key[2]))
                obj = self._create(res, info, key[1], body, dry_run=self._dry_run(request))
                return self._reply(request, obj, 201, changed=not self._dry_run(request))
            candidate = strategic_merge_patch(current, patch)
        elif current is None:
            raise not_found(res, key[2])
        elif content_type == "application/merge-patch+json":
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            candidate = merge_patch(current, patch)
        elif content_type == "application/json-patch+json":
            candidate = json_patch(current, patch)
        elif content_type == "application/strategic-merge-patch+json":
            if res in self._custom:
                raise ApiError(415, "UnsupportedMediaType",
                               "strategic merge patch is not supported for custom resources")
            if not isinstance(patch, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            candidate = strategic_merge_patch(current, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                                        f"accepted media types include: application/json-patch+json, "
                                                        f"application/merge-patch+json, application/apply-patch+yaml")
        obj, changed = self._update(res, info, key, current, candidate, request.subresource,
                                    via_patch=True, dry_run=self._dry_run(request))
        return self._reply(request, obj, 200, changed)

    async def _serve_delete(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        options = self._body(request) if request.body else {}
        options = dict(options or {}, **{k: request.params[k] for k in ("propagationPolicy",) if k in request.params})
        obj, changed = self._delete(res, key, options=options, dry_run=self._dry_run(request))
        return self._reply(request, obj, 200, changed)

    async def _serve_delete_collection(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        if request.name is not None or request.subresource is not None:
            raise no_route()
        items, options = self._select(request, res), (self._body(request) if request.body else {})
        deleted = [self._delete(res, (res, _meta(o).get("namespace"), _meta(o)["name"]), options=options,
                                dry_run=self._dry_run(request))[0] for o in items]
        return self._reply(request, self._list_body(res, info, deleted), 200, changed=bool(deleted))

    async def _serve_unroutable(self, request: kmock.Request) -> kmock.Response:
        raise no_route()

    # ---- list

    def _select(self, request: kmock.Request, res: kmock.resource) -> list[dict]:
        labels = label_selector(request.params.get("labelSelector"))
        fields = field_selector(request.params.get("fieldSelector"))
        found = [
            obj for (r, ns, name), obj in self._objects_of(res)
            if (request.namespace is None or ns == request.namespace)
            and (request.name is None or name == request.name)
            and labels(_meta(obj).get("labels") or {}) and fields(obj)
        ]
        return sorted(found, key=lambda o: (_meta(o).get("namespace") or "", _meta(o)["name"]))

    def _list_body(self, res: kmock.resource, info: kmock.ResourceInfo, items: list[dict],
                   continue_token: str | None = None, remaining: int = 0) -> dict:
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if continue_token:
            metadata.update({"continue": continue_token, "remainingItemCount": remaining})
        return {"kind": f"{self._kind(res, info)}List", "apiVersion": self._api_version(res),
                "metadata": metadata, "items": items}

    async def _serve_list(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        items = self._select(request, res)
        token = request.params.get("continue")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("invalid continue token") from None
            items = [o for o in items if [_meta(o).get("namespace") or "", _meta(o)["name"]] > after]
        limit = int(request.params.get("limit") or 0)
        next_token = None
        if limit and len(items) > limit:
            last = items[limit - 1]
            start = [_meta(last).get("namespace") or "", _meta(last)["name"]]
            next_token = base64.urlsafe_b64encode(json.dumps({"rv": self._rv, "start": start}).encode()).decode()
            remaining, items = len(items) - limit, items[:limit]
        else:
            remaining = 0
        if _wants_table(request) and res in self._columns:
            return self._reply(request, self._table(request, res, items, next_token))
        return self._reply(request, self._list_body(res, info, items, next_token, remaining))

    def _table(self, request: kmock.Request, res: kmock.resource, items: list[dict],
               continue_token: str | None = None) -> dict:
        """A meta.k8s.io/v1 Table from the CRD's printer columns, as kubectl asks for (Accept: as=Table)."""
        columns = self._columns[res]
        now = self.clock.now()
        whole = request.params.get("includeObject") == "Object"
        rows = []
        for obj in items:
            cells = [_meta(obj)["name"]] + [_cell(_jsonpath(obj, c.get("jsonPath", "")), c.get("type"), now)
                                            for c in columns]
            partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}
            rows.append({"cells": cells, "object": obj if whole else partial})
        definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                        "description": "Name must be unique within a namespace."}]
        definitions += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                         "description": c.get("description", ""), "priority": c.get("priority", 0)}
                        for c in columns]
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if continue_token:
            metadata["continue"] = continue_token
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
                "columnDefinitions": definitions, "rows": rows}

    # ---- discovery and OpenAPI: what kubectl needs to find kinds and to apply manifests

    async def _serve_version(self, request: kmock.Request) -> kmock.Response:
        """An APIResourceList as the server lists it: subresources bare, without short names."""
        gv = request.resource
        entries = []
        for res in sorted(self._resources_of(gv.group, gv.version), key=lambda r: r.plural):
            info = self.resources[res]
            kind, namespaced = self._kind(res, info), info.namespaced is not False
            entry = {"name": res.plural, "singularName": info.singular or kind.lower(), "namespaced": namespaced,
                     "kind": kind, "verbs": sorted(info.verbs or ALL_VERBS)}
            if info.shortnames:
                entry["shortNames"] = sorted(info.shortnames)
            if info.categories:
                entry["categories"] = sorted(info.categories)
            entries.append(entry)
            entries += [{"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": namespaced,
                         "kind": kind, "verbs": ["get", "patch", "update"]} for sub in sorted(info.subresources)]
        if not entries and gv.group:
            raise no_route()
        body = {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": self._api_version(kmock.resource(gv.group, gv.version, "x")), "resources": entries}
        return kmock.Response(status=200, payload=body, headers=JSON)

    def _resources_of(self, group: str | None, version: str | None) -> list[kmock.resource]:
        return [r for r in self.resources if r.group == group and r.version == version and r.plural]

    def _openapi_documents(self) -> dict[str, dict]:
        """One OpenAPI v3 document per group-version, with paths and verbs only (no schemas).

        kubectl reads two things from it: that PATCH and POST take ``fieldValidation`` (so it
        leaves validation to the server instead of downloading OpenAPI v2), and which patch
        types a kind accepts (no strategic merge here, so kubectl falls back to its built-in
        types for builtins and to a JSON merge patch for custom resources, as it does for CRDs).
        """
        documents: dict[str, dict] = {}
        for res in self.resources:
            if not res.plural:
                continue
            info = self.resources[res]
            gv = f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"
            gvk = {"group": res.group, "version": res.version, "kind": self._kind(res, info)}
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

    async def _serve_openapi(self, request: kmock.Request) -> kmock.Response:
        documents = self._openapi_documents()
        wanted = request.url.path.removeprefix("/openapi/v3").strip("/")
        if not wanted:
            index = {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_digest(doc)}"}
                     for gv, doc in sorted(documents.items())}
            return kmock.Response(status=200, payload={"paths": index}, headers=JSON)
        if wanted not in documents:
            raise no_route()
        return kmock.Response(status=200, payload=documents[wanted], headers=JSON)

    # ---- watch

    async def _serve_watch(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        labels = label_selector(request.params.get("labelSelector"))
        fields = field_selector(request.params.get("fieldSelector"))
        since = request.params.get("resourceVersion") or ""
        if since and not since.isdigit():
            raise bad_request(f"invalid resourceVersion {since!r}")
        try:
            timeout = float(request.params.get("timeoutSeconds") or 0) or None  # 0: the server's default
        except ValueError:
            raise bad_request("invalid timeoutSeconds") from None

        def matches(obj: dict | None, namespace: str | None) -> bool:
            return (obj is not None
                    and (request.namespace is None or namespace == request.namespace)
                    and (request.name is None or _meta(obj).get("name") == request.name)
                    and labels(_meta(obj).get("labels") or {}) and fields(obj))

        stream = self._watch_stream(
            res, info, matches, since=since,
            initial=_flag(request, "sendInitialEvents"), bookmarks=_flag(request, "allowWatchBookmarks"),
            timeout=timeout, select=lambda: self._select(request, res))
        self._outcomes[request.id] = (200, False)
        return kmock.Response(status=200, payload=stream, headers=JSON)

    async def _watch_stream(self, res: kmock.resource, info: kmock.ResourceInfo, matches: Callable,
                            *, since: str, initial: bool, bookmarks: bool, timeout: float | None,
                            select: Callable[[], list[dict]]) -> AsyncIterator[Any]:
        yield b""  # send the headers now: a quiet watch is still a watch
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if not since or since == "0" or initial:
            cursor = self._rv
            for obj in select():
                yield {"type": "ADDED", "object": obj}
            if initial and bookmarks:
                yield self._bookmark(res, info, {INITIAL_EVENTS_END: "true"})
        else:
            cursor = int(since)
        while not self._closing:
            if cursor < self._forgotten_rv:
                yield {"type": "ERROR", "object": ApiError(
                    410, "Expired", f"too old resource version: {cursor} ({self._forgotten_rv + 1})").status()}
                return
            wakeup = self._wakeup
            start = bisect.bisect_right([c.rv for c in self._changes], cursor)
            for change in self._changes[start:]:
                cursor = change.rv
                event = self._project(change, matches) if change.resource == res else None
                if event is not None:
                    yield event
            if self._closing or wakeup.is_set():
                continue
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return

    @staticmethod
    def _project(change: Change, matches: Callable) -> dict | None:
        """What a filtered watcher sees: objects entering or leaving its selector appear or vanish."""
        now = matches(change.object, change.namespace)
        before = matches(change.old, change.namespace)
        if change.type == "MODIFIED" and now != before:
            return {"type": "ADDED" if now else "DELETED", "object": change.object}
        if now or (change.type == "DELETED" and before):
            return {"type": change.type, "object": change.object}
        return None

    def _bookmark(self, res: kmock.resource, info: kmock.ResourceInfo, annotations: dict) -> dict:
        return {"type": "BOOKMARK", "object": {
            "kind": self._kind(res, info), "apiVersion": self._api_version(res),
            "metadata": {"resourceVersion": str(self._rv), "annotations": annotations}}}


_AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_JSONPATH_STEP = re.compile(
    r"""\.(?P<field>[^.\[]+)|\[(?P<index>\d+)\]|\[\?\(@\.(?P<key>[\w-]+)\s*==\s*["'](?P<value>[^"']*)["']\)\]""")


def _jsonpath(obj: Any, path: str) -> Any:
    """The printer-column JSONPath subset: ``.a.b``, ``.a[0]``, ``.a[?(@.k=="v")].b``."""
    path = path.strip().removeprefix("{").removesuffix("}")
    position, current = 0, obj
    for m in _JSONPATH_STEP.finditer(path):
        if m.start() != position or current is None:
            return None
        position = m.end()
        if m["field"] is not None:
            current = current.get(m["field"]) if isinstance(current, dict) else None
        elif m["index"] is not None:
            i = int(m["index"])
            current = current[i] if isinstance(current, list) and i < len(current) else None
        else:
            items = current if isinstance(current, list) else []
            current = next((x for x in items if isinstance(x, dict) and str(x.get(m["key"])) == m["value"]), None)
    return current if position == len(path) else None


def _human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration, which `kubectl get` shows as AGE."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _cell(value: Any, type_: str | None, now: datetime) -> Any:
    if value is None:
        return None
    if type_ == "date" and isinstance(value, str):
        try:
            then = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        return _human_duration((now - then).total_seconds())
    if type_ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if type_ == "boolean" and isinstance(value, bool):
        return value
    return value if isinstance(value, str) else json.dumps(value)


def _wants_table(request: kmock.Request) -> bool:
    accept = next((v for k, v in request.headers.items() if k.lower() == "accept"), "")
    return "as=Table" in accept


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32].upper()


# Kubernetes' binary encodings: their schemas live in the Go types, which are not here.
_BINARY_MEDIA_TYPES = frozenset({"application/vnd.kubernetes.protobuf", "application/cbor"})
_NAMESPACE_URL = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?")


def _flag(request: kmock.Request, name: str) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool reads it."""
    return request.params.get(name) in ("1", "t", "T", "true", "TRUE", "True")


def _content_type(request: kmock.Request) -> str:
    for header, value in request.headers.items():
        if header.lower() == "content-type":
            return value.split(";")[0].strip().lower()
    return "application/json"


# --------------------------------------------------------------------------- assembly


def install_crd(emulator: HonestEmulator, crd: Mapping[str, Any]) -> dict:
    """Create a CustomResourceDefinition as `kubectl apply` would; its resource is then served."""
    existing = emulator.stored(CRDS, None, _meta(crd)["name"])
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
    simple_crd("kopf.dev", "v1", "kopfpeerings", "KopfPeering", status=False),
    simple_crd("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False, status=False),
)

# The builtins the operator touches; make_emulator() fails loudly if kmock's bundle lacks one.
REQUIRED_BUILTINS = (
    "v1/namespaces", "v1/events", "v1/configmaps", "v1/secrets", "v1/serviceaccounts", "v1/services",
    "v1/pods", "v1/persistentvolumeclaims", "apps/v1/deployments", "apps/v1/statefulsets",
    "batch/v1/jobs", "batch/v1/cronjobs", "coordination.k8s.io/v1/leases", "events.k8s.io/v1/events",
    "apiextensions.k8s.io/v1/customresourcedefinitions",
)


def register_lifeline_crds(emulator: HonestEmulator) -> None:
    """Install the CRD of every kind in ``lifeline.api.KINDS``, exactly as ``crds/`` holds it."""
    from lifeline.api import KINDS
    from lifeline.crd import crd_for

    for info in KINDS:
        install_crd(emulator, crd_for(info))


def make_emulator(**options: Any) -> HonestEmulator:
    """An emulator serving the builtins, the third-party CRDs and Lifeline's own CRDs.

    It starts with the ``default`` and ``kube-system`` namespaces, as a fresh cluster does.
    """
    emulator = HonestEmulator(**options)
    with warnings.catch_warnings():  # kmock 0.8 reads its bundle with a deprecated importlib call
        warnings.simplefilter("ignore", DeprecationWarning)
        emulator.resources.load_bundled()
    missing = [r for r in REQUIRED_BUILTINS if r not in emulator.resources]
    if missing:
        raise RuntimeError(f"kmock's bundled resources lack {missing}; declare them in make_emulator()")
    for crd in THIRD_PARTY_CRDS:
        install_crd(emulator, crd)
    register_lifeline_crds(emulator)
    for namespace in ("default", "kube-system"):
        emulator.seed(NAMESPACES, {"metadata": {"name": namespace}})
    return emulator


@contextlib.asynccontextmanager
async def serve(emulator: HonestEmulator, port: int = 0, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``emulator`` over HTTP on ``host:port`` (0: any free port); yields the base URL."""
    emulator._closing = False
    async with emulator, kmock.Server(emulator, host=host, port=port or None) as server:
        try:
            yield str(server.url).rstrip("/")
        finally:
            emulator.close_watches()  # open watches would otherwise hold the server's shutdown


def write_kubeconfig(url: str, path: str | Path, *, namespace: str = "default", token: str = "emulator") -> Path:
    """A kubeconfig for kubectl, kopf and the kubernetes client; the token is a dummy nobody checks."""
    path = Path(path)
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "lifeline-emulator", "cluster": {"server": url}}],
        "users": [{"name": "lifeline-emulator", "user": {"token": token}}],
        "contexts": [{"name": "lifeline-emulator",
                      "context": {"cluster": "lifeline-emulator", "user": "lifeline-emulator",
                                  "namespace": namespace}}],
        "current-context": "lifeline-emulator",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
