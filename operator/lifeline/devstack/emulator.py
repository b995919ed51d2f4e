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

This module holds :class:`HonestEmulator`, the API in front of the stored objects,
and :func:`make_emulator`/:func:`serve`. The rest lives beside it, one job a module:
``store`` (what a write stores: the rules above and the controllers), ``api_errors``
(the Status answers), ``patching`` (merge, JSON and strategic merge patch),
``selectors`` (label and field selectors), ``tables`` (kubectl's server-side Tables),
``discovery`` (resource lists and OpenAPI), ``request_parsing`` (what kmock reads
differently from the server), ``crds`` (serving and installing CRDs), ``resources``
(shared naming) and ``kubeconfig``. Their public names are re-exported here, so
``lifeline.devstack.emulator`` stays the one place to import from.

Deliberate simplifications are listed in :data:`SIMPLIFICATIONS`.
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import copy
import json
import re
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock

from lifeline.devstack.admission import Admission
from lifeline.devstack.api_errors import (
    ApiError,
    bad_request,
    conflict,
    expired,
    invalid,
    no_route,
    not_found,
    patch_failed,
    unsupported_media_type,
)
from lifeline.devstack.crds import THIRD_PARTY_CRDS, install_crd, register_lifeline_crds, simple_crd
from lifeline.devstack.discovery import openapi, resource_list
from lifeline.devstack.kubeconfig import write_kubeconfig
from lifeline.devstack.patching import json_patch, merge_patch, strategic_merge_patch
from lifeline.devstack.request_dispatch import dispatch
from lifeline.devstack.request_parsing import (
    flag,
    is_dry_run,
    media_type,
    namespace_request,
    namespace_url,
    read_body,
)
from lifeline.devstack.resources import ALL_VERBS, CRDS, NAMESPACES, api_version_of, kind_of, meta_of, selectable
from lifeline.devstack.selectors import field_selector, label_selector
from lifeline.devstack.store import Change, ObjectStore
from lifeline.devstack.tables import table, wants_table

__all__ = [  # what callers import from here, wherever it is defined
    "ALL_VERBS", "CRDS", "INITIAL_EVENTS_END", "JSON", "NAMESPACES", "REQUIRED_BUILTINS", "SIMPLIFICATIONS",
    "THIRD_PARTY_CRDS", "WRITE_METHODS", "ApiError", "Change", "HonestEmulator", "Write", "bad_request",
    "conflict", "field_selector", "install_crd", "invalid", "json_patch", "label_selector", "make_emulator",
    "merge_patch", "no_route", "not_found", "patch_failed", "register_lifeline_crds", "serve", "simple_crd",
    "strategic_merge_patch", "write_kubeconfig",
]

SIMPLIFICATIONS = (
    "Authentication maps bearer tokens to users (unknown tokens are the cluster admin unless "
    "admission.strict); RBAC answers SubjectAccessReviews but does not gate requests; admission "
    "webhooks are called for CREATE and UPDATE only (see lifeline.devstack.admission).",
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
    "No subresources but status and exec (no scale, log, eviction, token); exec speaks the v4 "
    "channel websocket protocol but runs the registered exec_handler callback, not a container.",
    "By default an object may be created in a namespace that does not exist (a real server "
    "answers 404); set require_namespaces=True for the real rule.",
    "The garbage collector runs when an owner is removed; dependents pointing at owners that "
    "never existed are never collected.",
    "DELETE answers with the object for every resource (some real ones answer a Status).",
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON = {"Content-Type": "application/json"}
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


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


@attrs.define(kw_only=True)
class HonestEmulator(ObjectStore):
    """kmock's emulator with the API server's semantics (see the module docstring).

    :class:`~lifeline.devstack.store.ObjectStore` keeps the rules for what a write
    stores; this class is the API in front of it: the HTTP handlers, lists, watches,
    Tables and discovery, and the helpers tests and the demo call.

    Extra knobs: ``clock`` stamps creation and deletion times; ``history_limit``
    is how many changes are kept for resuming watches (older ones answer 410 Gone);
    ``garbage_collection`` deletes dependents whose owners are all gone;
    ``require_namespaces`` refuses to create into a namespace that does not exist.

    Everything runs in the event loop that serves it: call :meth:`seed`, :meth:`stored`
    and friends from that loop's thread, and blocking clients from another thread.
    """

    _closing: bool = attrs.field(default=False, init=False)
    # pods/exec: called with a lifeline.devstack.pod_exec.ExecRequest, returns (exit code, stdout, stderr)
    exec_handler: Callable | None = attrs.field(default=None)
    _outcomes: dict[int, tuple[int, bool]] = attrs.field(factory=dict, init=False)
    # Identities, SubjectAccessReviews and admission webhooks (lifeline.devstack.admission).
    admission: Admission | None = attrs.field(factory=Admission)

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
        spec = None if resource is None else selectable(resource)
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
        res = selectable(resource)
        info = self._info(res)
        namespace = meta_of(body).get("namespace") if info.namespaced is not False else None
        if info.namespaced is not False and not namespace:
            raise ValueError("seed() needs metadata.namespace for a namespaced resource")
        return copy.deepcopy(self._create(res, info, namespace, body, keep_status=True))

    def stored(self, resource: Any, namespace: str | None, name: str) -> dict | None:
        """A copy of the object as stored now, or None."""
        current = self._live((selectable(resource), namespace, name))
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
        from lifeline.devstack.pod_exec import EXEC_PATH, serve_exec

        exec_match = EXEC_PATH.match(raw_request.path)
        if exec_match is not None and raw_request.method == "GET":  # the websocket upgrade of pods/exec
            return await serve_exec(raw_request, exec_match,
                                    lambda ns, pod: self.stored("v1/pods", ns, pod), self.exec_handler)
        match = namespace_url(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        body = await raw_request.read()
        request = namespace_request(raw_request, match, body, request_id=len(self._requests))
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
        if request.action in (kmock.action.LIST, kmock.action.FETCH) and flag(request, "watch"):
            request = attrs.evolve(request, action=kmock.action.WATCH)
            self._requests[request.id] = request
        # Skip kmock's own state mutation (it happens before reactions and ignores the rules);
        # the state changes here only in the fallback handlers, i.e. when no reaction answered.
        # kmock's own dispatch filters the whole request log per request (O(n^2) over a run);
        # request_dispatch picks the same reaction in constant time.
        try:
            return await dispatch(self, request)
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

    # ---- the HTTP handlers (kmock's fallbacks: they run only when no user reaction answered)

    async def _serve_create(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        if request.name is not None:
            raise no_route()
        body = read_body(request)
        if self.admission is not None:  # SubjectAccessReviews are answered, not stored; webhooks may mutate
            if (review := self.admission.access_review(self, request, res, body)) is not None:
                return self._reply(request, review, 201)
            body = await self.admission.create(self, request, res, info, body)
        obj = self._create(res, info, request.namespace, body, dry_run=is_dry_run(request))
        return self._reply(request, obj, 201, changed=not is_dry_run(request))

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request, subresources=("status",))
        current = self._live(key)
        if current is None:
            raise not_found(res, key[2])
        if wants_table(request) and res in self._columns and request.subresource is None:
            return self._reply(request, self._table(request, res, [current]))
        return self._reply(request, current)

    async def _serve_put(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request, subresources=("status",))
        if request.name is None:
            raise no_route()
        current = self._live(key)
        if current is None:
            raise not_found(res, key[2])
        candidate = read_body(request)
        if self.admission is not None:
            candidate = await self.admission.update(self, request, res, info, key, current, candidate,
                                                    request.subresource, via_patch=False)
            if candidate is None:  # changed while the webhooks looked: again, from the new state
                return await self._serve_put(request)
        obj, changed = self._update(res, info, key, current, candidate, request.subresource,
                                    via_patch=False, dry_run=is_dry_run(request))
        return self._reply(request, obj, 200, changed)

    async def _serve_update(self, request: kmock.Request) -> kmock.Response:  # PATCH
        res, info, key = self._target(request, subresources=("status",))
        content_type = media_type(request)
        patch = read_body(request)
        current = self._live(key)
        if content_type == "application/apply-patch+yaml":
            if not request.params.get("fieldManager"):
                raise invalid(res, "PatchOptions", "", "fieldManager", "Required value: is required for apply patch")
            if current is None:
                if request.subresource:
                    raise not_found(res, key[2])
                body = dict(patch or {}, metadata=dict((patch or {}).get("metadata") or {}, name=key[2]))
                obj = self._create(res, info, key[1], body, dry_run=is_dry_run(request))
                return self._reply(request, obj, 201, changed=not is_dry_run(request))
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
                raise unsupported_media_type("strategic merge patch is not supported for custom resources")
            if not isinstance(patch, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            candidate = strategic_merge_patch(current, patch)
        else:
            raise unsupported_media_type("the body of the request was in an unknown format - "
                                         "accepted media types include: application/json-patch+json, "
                                         "application/merge-patch+json, application/apply-patch+yaml")
        if self.admission is not None:
            candidate = await self.admission.update(self, request, res, info, key, current, candidate,
                                                    request.subresource, via_patch=True)
            if candidate is None:  # changed while the webhooks looked: again, from the new state
                return await self._serve_update(request)
        obj, changed = self._update(res, info, key, current, candidate, request.subresource,
                                    via_patch=True, dry_run=is_dry_run(request))
        return self._reply(request, obj, 200, changed)

    async def _serve_delete(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        options = read_body(request) if request.body else {}
        options = dict(options or {}, **{k: request.params[k] for k in ("propagationPolicy",) if k in request.params})
        obj, changed = self._delete(res, key, options=options, dry_run=is_dry_run(request))
        return self._reply(request, obj, 200, changed)

    async def _serve_delete_collection(self, request: kmock.Request) -> kmock.Response:
        res, info, key = self._target(request)
        if request.name is not None or request.subresource is not None:
            raise no_route()
        items, options = self._select(request, res), (read_body(request) if request.body else {})
        deleted = [self._delete(res, (res, meta_of(o).get("namespace"), meta_of(o)["name"]), options=options,
                                dry_run=is_dry_run(request))[0] for o in items]
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
            and labels(meta_of(obj).get("labels") or {}) and fields(obj)
        ]
        return sorted(found, key=lambda o: (meta_of(o).get("namespace") or "", meta_of(o)["name"]))

    def _list_body(self, res: kmock.resource, info: kmock.ResourceInfo, items: list[dict],
                   continue_token: str | None = None, remaining: int = 0) -> dict:
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if continue_token:
            metadata.update({"continue": continue_token, "remainingItemCount": remaining})
        return {"kind": f"{kind_of(res, info)}List", "apiVersion": api_version_of(res),
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
            items = [o for o in items if [meta_of(o).get("namespace") or "", meta_of(o)["name"]] > after]
        limit = int(request.params.get("limit") or 0)
        next_token = None
        if limit and len(items) > limit:
            last = items[limit - 1]
            start = [meta_of(last).get("namespace") or "", meta_of(last)["name"]]
            next_token = base64.urlsafe_b64encode(json.dumps({"rv": self._rv, "start": start}).encode()).decode()
            remaining, items = len(items) - limit, items[:limit]
        else:
            remaining = 0
        if wants_table(request) and res in self._columns:
            return self._reply(request, self._table(request, res, items, next_token))
        return self._reply(request, self._list_body(res, info, items, next_token, remaining))

    def _table(self, request: kmock.Request, res: kmock.resource, items: list[dict],
               continue_token: str | None = None) -> dict:
        """A Table from the CRD's printer columns, as kubectl asks for (Accept: as=Table)."""
        return table(self._columns[res], items, now=self.clock.now(), resource_version=str(self._rv),
                     include_object=request.params.get("includeObject") == "Object",
                     continue_token=continue_token)

    # ---- discovery and OpenAPI: what kubectl needs to find kinds and to apply manifests

    async def _serve_version(self, request: kmock.Request) -> kmock.Response:
        body = resource_list(self.resources, request.resource.group, request.resource.version)
        return kmock.Response(status=200, payload=body, headers=JSON)

    async def _serve_openapi(self, request: kmock.Request) -> kmock.Response:
        return kmock.Response(status=200, payload=openapi(self.resources, request.url.path), headers=JSON)

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
                    and (request.name is None or meta_of(obj).get("name") == request.name)
                    and labels(meta_of(obj).get("labels") or {}) and fields(obj))

        stream = self._watch_stream(
            res, info, matches, since=since,
            initial=flag(request, "sendInitialEvents"), bookmarks=flag(request, "allowWatchBookmarks"),
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
                yield {"type": "ERROR", "object": expired(cursor, self._forgotten_rv + 1).status()}
                return
            wakeup = self._wakeup
            # O(log n): every watch wakes on every change, so no list of all rvs per wakeup
            start = bisect.bisect_right(self._changes, cursor, key=lambda c: c.rv)
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
            "kind": kind_of(res, info), "apiVersion": api_version_of(res),
            "metadata": {"resourceVersion": str(self._rv), "annotations": annotations}}}


# The builtins the operator touches; make_emulator() fails loudly if kmock's bundle lacks one.
REQUIRED_BUILTINS = (
    "v1/namespaces", "v1/events", "v1/configmaps", "v1/secrets", "v1/serviceaccounts", "v1/services",
    "v1/pods", "v1/persistentvolumeclaims", "apps/v1/deployments", "apps/v1/statefulsets",
    "batch/v1/jobs", "batch/v1/cronjobs", "coordination.k8s.io/v1/leases", "events.k8s.io/v1/events",
    "apiextensions.k8s.io/v1/customresourcedefinitions",
)


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
