"""Authentication, SubjectAccessReviews and admission webhooks for the emulator.

A real API server knows who sends each request, can say what a user may do, and
calls the admission webhooks registered with it before it stores a write. The
emulator does the same, far enough for Lifeline's two-person approval to be
tested through the very path a cluster takes:

- **identities**: a bearer token maps to a user name and groups (:meth:`Admission.add_user`;
  :func:`lifeline.devstack.kubeconfig.write_kubeconfig` writes a kubeconfig per token). A
  request with an unknown token (or none) is the cluster admin, as the single-user
  kubeconfig of kind is (``kubernetes-admin`` in ``system:masters``) -- unless
  ``strict`` is set, in which case it is answered 401 Unauthorized;
- **SubjectAccessReview** (and Local/Self): answered from the Roles, ClusterRoles and
  bindings stored in the emulator (:mod:`lifeline.devstack.rbac`), never stored;
- **admission webhooks**: ``Mutating``- then ``ValidatingWebhookConfiguration`` objects
  stored in the emulator (and webhooks registered directly with :meth:`Admission.register`)
  are called over HTTP(S) for CREATE and UPDATE (PUT and every kind of PATCH) of matching
  resources, with an ``admission.k8s.io/v1`` AdmissionReview carrying ``userInfo``,
  ``object``, ``oldObject``, ``dryRun``; a JSONPatch answer is applied, a denial is the
  request's answer (``admission webhook "<name>" denied the request: ...``), an
  unreachable webhook denies unless its ``failurePolicy`` is ``Ignore``. TLS is verified
  against ``clientConfig.caBundle``. If the object changed while the webhooks looked at it,
  the write starts again from the new state (as the server's GuaranteedUpdate retries).

Simplifications: ``clientConfig.service`` is reachable only through ``service_urls``
(``{(namespace, name): base URL}``); ``namespaceSelector``/``objectSelector`` and
``matchConditions`` are not evaluated; webhooks are not called for DELETE, CONNECT, or
server-side-apply creates; no reinvocation; ``warnings`` are dropped.
"""
from __future__ import annotations

import base64
import copy
import json
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kmock

from lifeline.devstack import rbac
from lifeline.devstack.api_errors import ApiError, bad_request
from lifeline.devstack.patching import json_patch
from lifeline.devstack.request_parsing import is_dry_run
from lifeline.devstack.resources import api_version_of, kind_of

ADMIN = {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]}
MUTATING = kmock.resource("admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
VALIDATING = kmock.resource("admissionregistration.k8s.io/v1/validatingwebhookconfigurations")
REVIEWS = {"subjectaccessreviews", "localsubjectaccessreviews", "selfsubjectaccessreviews"}
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class Hook:
    """One webhook: an entry of a webhook configuration, and whether it mutates."""

    config: str
    mutating: bool
    spec: dict

    @property
    def name(self) -> str:
        return self.spec.get("name") or self.config


@dataclass
class Admission:
    """The emulator's authentication, authorization reviews and admission chain."""

    strict: bool = False
    tokens: dict[str, dict] = field(default_factory=dict)
    registered: list[Hook] = field(default_factory=list)
    service_urls: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: list[dict] = field(default_factory=list)  # every AdmissionReview sent, for tests to inspect

    # ---- identities

    def add_user(self, token: str, username: str, groups: list[str] | tuple[str, ...] = (),
                 uid: str | None = None) -> dict:
        """Requests bearing ``token`` come from ``username`` (plus ``system:authenticated``)."""
        info = {"username": username, "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_OID, username)),
                "groups": [*groups, "system:authenticated"]}
        self.tokens[token] = info
        return info

    def user_of(self, request: kmock.Request) -> dict:
        header = (request.headers or {}).get("Authorization") or (request.headers or {}).get("authorization") or ""
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token in self.tokens:
            return copy.deepcopy(self.tokens[token])
        if self.strict:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return copy.deepcopy(ADMIN)

    # ---- SubjectAccessReviews

    def access_review(self, emulator, request: kmock.Request, res: kmock.resource, body: Any) -> dict | None:
        """The answer to a (Local/Self)SubjectAccessReview create; None for any other resource."""
        if res.group != "authorization.k8s.io" or res.plural not in REVIEWS:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise bad_request("a SubjectAccessReview needs a spec")
        spec = body["spec"]
        if res.plural == "selfsubjectaccessreviews":
            me = self.user_of(request)
            user, groups = me["username"], me["groups"]
        else:
            user, groups = spec.get("user", ""), spec.get("groups") or []
        attrs = rbac.Attributes.of(spec)
        if res.plural == "localsubjectaccessreviews" and attrs.namespace not in ("", request.namespace):
            raise bad_request("spec.resourceAttributes.namespace must match the namespace of the request")
        if res.plural == "localsubjectaccessreviews":
            attrs = rbac.Attributes(**{**attrs.__dict__, "namespace": request.namespace or ""})
        ok, reason = rbac.allowed(lambda plural, ns: self._rbac_objects(emulator, plural, ns), user, groups, attrs)
        out = {"apiVersion": "authorization.k8s.io/v1", "kind": body.get("kind") or "SubjectAccessReview",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": {"allowed": ok}}
        if reason:
            out["status"]["reason"] = reason
        return out

    @staticmethod
    def _rbac_objects(emulator, plural: str, namespace: str | None) -> list[dict]:
        res = kmock.resource(f"{rbac.RBAC}/{plural}")
        return [obj for (r, ns, _), obj in emulator._objects_of(res) if namespace is None or ns == namespace]

    # ---- webhooks

    def register(self, webhook: dict, *, mutating: bool, config: str = "direct") -> Hook:
        """Call this webhook (an entry as in a webhook configuration's ``webhooks`` list) from now on."""
        hook = Hook(config, mutating, copy.deepcopy(webhook))
        self.registered.append(hook)
        return hook

    def _hooks(self, emulator, res: kmock.resource, operation: str, subresource: str | None) -> list[Hook]:
        stored: list[Hook] = []
        for kind, mutating in ((MUTATING, True), (VALIDATING, False)):
            if kind in emulator.resources:
                for _, cfg in sorted(emulator._objects_of(kind), key=lambda kv: kv[0][2]):
                    stored += [Hook(cfg["metadata"]["name"], mutating, w) for w in cfg.get("webhooks") or []]
        hooks = [h for h in stored + self.registered if _matches(h.spec, res, operation, subresource)]
        return [h for h in hooks if h.mutating] + [h for h in hooks if not h.mutating]

    async def create(self, emulator, request: kmock.Request, res: kmock.resource, info, body: Any) -> Any:
        """``body`` as the admission chain lets it be created (mutated), or ApiError."""
        hooks = self._hooks(emulator, res, "CREATE", None)
        if not hooks:
            return body
        obj = emulator._create(res, info, request.namespace, copy.deepcopy(body), dry_run=True)
        return await self._review(hooks, request, res, info, "CREATE", obj, None, None)

    async def update(self, emulator, request: kmock.Request, res: kmock.resource, info, key: tuple, current: dict,
                     candidate: Any, subresource: str | None, *, via_patch: bool) -> Any:
        """The candidate as admitted; None when the object changed meanwhile (start the write again)."""
        hooks = self._hooks(emulator, res, "UPDATE", subresource)
        if not hooks:
            return candidate
        new, _ = emulator._update(res, info, key, current, copy.deepcopy(candidate), subresource,
                                  via_patch=via_patch, dry_run=True)
        if new == current:
            return candidate  # a no-op stores nothing: nothing to admit
        admitted = await self._review(hooks, request, res, info, "UPDATE", new, current, subresource)
        live = emulator._live(key)
        if live is None or live["metadata"].get("resourceVersion") != current["metadata"].get("resourceVersion"):
            return None
        return admitted

    async def _review(self, hooks: list[Hook], request: kmock.Request, res: kmock.resource, info, operation: str,
                      obj: dict, old: dict | None, subresource: str | None) -> dict:
        user = self.user_of(request)
        for hook in hooks:
            review = _review_request(res, info, operation, obj, old, subresource, user, is_dry_run(request))
            self.calls.append({"webhook": hook.name, "review": review})
            try:
                answer = await self._call(hook, review)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                if hook.spec.get("failurePolicy") == "Ignore":
                    continue
                raise ApiError(500, "InternalError", f'Internal error occurred: failed calling webhook '
                                                     f'"{hook.name}": {exc}') from None
            response = answer.get("response") or {}
            if response.get("uid") != review["request"]["uid"]:
                raise ApiError(500, "InternalError", f'Internal error occurred: webhook "{hook.name}" answered '
                                                     "another request's uid")
            if not response.get("allowed"):
                status = response.get("status") or {}
                code = status.get("code") if isinstance(status.get("code"), int) and status["code"] >= 400 else 403
                message = status.get("message") or ""
                raise ApiError(code, status.get("reason") or _REASONS.get(code, "Forbidden"),
                               f'admission webhook "{hook.name}" denied the request: {message}'.rstrip(": "))
            if hook.mutating and response.get("patch"):
                if response.get("patchType") != "JSONPatch":
                    raise ApiError(500, "InternalError", f'webhook "{hook.name}" answered an unknown patchType')
                obj = json_patch(obj, json.loads(base64.b64decode(response["patch"])))
        return obj

    async def _call(self, hook: Hook, review: dict) -> dict:
        client = hook.spec.get("clientConfig") or {}
        url = client.get("url")
        if not url and client.get("service"):
            svc = client["service"]
            base = self.service_urls.get((svc.get("namespace"), svc.get("name")))
            if base is None:
                raise ValueError(f"service {svc.get('namespace')}/{svc.get('name')} is not reachable from the "
                                 "emulator (give its URL in Admission.service_urls)")
            url = base.rstrip("/") + (svc.get("path") or "")
        if not url:
            raise ValueError("the webhook has no clientConfig.url or service")
        context: ssl.SSLContext | bool = False if url.startswith("http://") else ssl.create_default_context(
            cadata=base64.b64decode(client["caBundle"]).decode() if client.get("caBundle") else None)
        timeout = aiohttp.ClientTimeout(total=float(hook.spec.get("timeoutSeconds") or 10))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, json=review, ssl=context) as answer:
                if answer.status != 200:
                    raise ValueError(f"HTTP {answer.status}: {(await answer.text())[:300]}")
                return await answer.json(content_type=None)


def _matches(spec: dict, res: kmock.resource, operation: str, subresource: str | None) -> bool:
    wanted = f"{res.plural}/{subresource}" if subresource else str(res.plural)
    for rule in spec.get("rules") or []:
        def has(values, value) -> bool:
            return "*" in (values or []) or value in (values or [])

        resources = rule.get("resources") or []
        resource_ok = (wanted in resources or (not subresource and "*" in resources) or "*/*" in resources
                       or (subresource and f"{res.plural}/*" in resources)
                       or (subresource and f"*/{subresource}" in resources))
        if has(rule.get("apiGroups"), res.group) and has(rule.get("apiVersions"), res.version) \
                and resource_ok and has(rule.get("operations"), operation):
            return True
    return False


def _review_request(res: kmock.resource, info, operation: str, obj: dict, old: dict | None,
                    subresource: str | None, user: dict, dry_run: bool) -> dict:
    meta = obj.get("metadata") or {}
    kind = {"group": res.group, "version": res.version, "kind": kind_of(res, info)}
    resource = {"group": res.group, "version": res.version, "resource": res.plural}
    request = {
        "uid": str(uuid.uuid4()), "kind": kind, "resource": resource, "requestKind": kind,
        "requestResource": resource, "name": meta.get("name", ""), "operation": operation, "userInfo": user,
        "object": copy.deepcopy(obj), "oldObject": copy.deepcopy(old), "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1",
                    "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions"},
    }
    if meta.get("namespace"):
        request["namespace"] = meta["namespace"]
    if subresource:
        request["subResource"] = subresource
        request["requestSubResource"] = subresource
    obj.setdefault("apiVersion", api_version_of(res))
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
