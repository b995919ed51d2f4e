"""The one door to the Kubernetes API.

Controllers and commands decide; this module acts. Keeping every call here
means one place to count writes, to check RBAC against (the chart's roles are
compared with :data:`VERBS_USED`), and to change client libraries.

The official ``kubernetes`` client is synchronous, so each call runs in a
worker thread and never blocks the operator's event loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from lifeline.api import KindInfo

log = logging.getLogger(__name__)

COMPONENT = "lifeline-operator"

# (api group, resource, verb) for every call the operator makes below; the Helm chart's
# ClusterRole must grant these (a test checks it).
VERBS_USED: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("dr.lifeline.io", "backuppolicies/status", "patch"),
        ("dr.lifeline.io", "recoverypoints/status", "patch"),
        ("dr.lifeline.io", "restoredrills/status", "patch"),
        ("dr.lifeline.io", "restores/status", "patch"),
        ("dr.lifeline.io", "failoverplans/status", "patch"),
        ("", "events", "create"),
        # failover: re-read a plan after a conflicting status write
        ("dr.lifeline.io", "failoverplans", "get"),
        # failover: a site's workloads (readiness, fencing, promotion), in this or another cluster
        ("apps", "deployments", "get"),
        ("apps", "deployments", "patch"),
        ("apps", "statefulsets", "get"),
        ("apps", "statefulsets", "patch"),
        # failover: the traffic switch (a Service's selector, or an annotation for external-dns/GitOps)
        ("", "services", "patch"),
        ("networking.k8s.io", "ingresses", "patch"),
        ("externaldns.k8s.io", "dnsendpoints", "patch"),
        # failover: the kubeconfig of another cluster's site
        ("", "secrets", "get"),
        # backup: a policy's CronJobs (a schedule kind removed from the spec deletes its CronJob)
        ("batch", "cronjobs", "get"),
        ("batch", "cronjobs", "list"),
        ("batch", "cronjobs", "watch"),
        ("batch", "cronjobs", "create"),
        ("batch", "cronjobs", "update"),
        ("batch", "cronjobs", "delete"),
        # backup: on-demand Jobs; finished Jobs are annotated once their outcome is recorded
        ("batch", "jobs", "list"),
        ("batch", "jobs", "watch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "patch"),
        # backup: a finished Job's pod carries the agent's summary in its termination message
        ("", "pods", "list"),
        # backup: do the PVCs and Secrets a policy names exist? (Secrets: only their key names are kept)
        ("", "persistentvolumeclaims", "get"),
        # backup: the RecoveryPoint catalogue, its owner references (deletionPolicy) and a fresh policy read
        ("dr.lifeline.io", "recoverypoints", "get"),
        ("dr.lifeline.io", "recoverypoints", "create"),
        ("dr.lifeline.io", "recoverypoints", "patch"),
        ("dr.lifeline.io", "backuppolicies", "get"),
    }
)

# Calls made on a person's behalf by the CLI and the demo (their own credentials).
CLI_VERBS: frozenset[tuple[str, str, str]] = frozenset(
    {("dr.lifeline.io", plural, verb)
     for plural in ("backuppolicies", "recoverypoints", "restoredrills", "restores", "failoverplans")
     for verb in ("create", "list")}
    # `lifeline failover approve|back|switch|status`: read a plan, annotate it with a request
    | {("dr.lifeline.io", "failoverplans", verb) for verb in ("get", "patch", "delete")}
    # `lifeline backup now|status`: annotate a policy with a backup-now request, read policies
    | {("dr.lifeline.io", "backuppolicies", verb) for verb in ("get", "patch")}
)

MERGE_PATCH = "application/merge-patch+json"
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
# Kinds an annotation switch may write to (lifeline.api.failoverplan.ANNOTATABLE), as (group, version, plural).
ANNOTATABLE = {
    "Service": ("", "v1", "services"),
    "Ingress": ("networking.k8s.io", "v1", "ingresses"),
    "DNSEndpoint": ("externaldns.k8s.io", "v1alpha1", "dnsendpoints"),
}


class KubeError(RuntimeError):
    """An API call failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to point an Event at it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None
    resource_version: str | None = None

    @classmethod
    def of(cls, body: dict) -> "ObjectRef":
        meta = body.get("metadata") or {}
        return cls(
            api_version=body.get("apiVersion", ""),
            kind=body.get("kind", ""),
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        )


class Kube:
    """An API connection; build one with :meth:`connect`."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, request_timeout: float | tuple | None = None):
        self._api = api_client
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._networking = kubernetes.client.NetworkingV1Api(api_client)
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()
        # (connect, read) seconds for the calls failover makes: a dead site must not hang a thread.
        self.request_timeout = request_timeout or (5, 15)

    @classmethod
    def from_kubeconfig_text(cls, text: str | bytes, *, request_timeout: float | tuple | None = None) -> "Kube":
        """A client for another cluster, from a kubeconfig's content (as a Secret holds it)."""
        import yaml

        try:
            config = yaml.safe_load(text)
            if not isinstance(config, dict):
                raise ValueError("not a YAML mapping")
            configuration = kubernetes.client.Configuration()
            kubernetes.config.load_kube_config_from_dict(config, client_configuration=configuration,
                                                         persist_config=False)
        except Exception as exc:  # the kubernetes loader raises many kinds; the user needs the text
            raise KubeError(f"not a usable kubeconfig: {exc}", 400) from None
        # urllib3 retries a refused connection three times by default; a dead site should say so at once
        configuration.retries = 0
        return cls(kubernetes.client.ApiClient(configuration), request_timeout=request_timeout)

    @classmethod
    def connect(cls, kubeconfig: str | Path | None = None, context: str | None = None) -> "Kube":
        """In-cluster credentials inside a pod, otherwise the kubeconfig (or $KUBECONFIG)."""
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            config = kubernetes.client.Configuration()
            kubernetes.config.load_incluster_config(client_configuration=config)
            return cls(kubernetes.client.ApiClient(config))
        path = str(kubeconfig) if kubeconfig else os.environ.get("KUBECONFIG") or None
        return cls(kubernetes.config.new_client_from_config(config_file=path, context=context))

    def credentials(self) -> dict:
        """The connection this client uses, for kopf's login handler to reuse as is."""
        cfg = self._api.configuration
        auth = (cfg.api_key or {}).get("authorization") or ""
        scheme, token = auth.split(" ", 1) if " " in auth else (None, auth or None)
        return {
            "server": cfg.host,
            "ca_path": cfg.ssl_ca_cert,
            "insecure": not cfg.verify_ssl,
            "certificate_path": cfg.cert_file,
            "private_key_path": cfg.key_file,
            "scheme": scheme,
            "token": token,
            "username": cfg.username or None,
            "password": cfg.password or None,
        }

    def close(self) -> None:
        self._api.close()

    async def _call(self, what: str, fn, *args, **kwargs):
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            raise KubeError(f"{what}: {exc.status} {exc.reason}: {_status_message(exc)}", exc.status) from None
        except (OSError, kubernetes.client.exceptions.OpenApiException) as exc:
            raise KubeError(f"{what}: {exc}") from None
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, timed out: no answer at all
            reason = getattr(exc, "reason", None) or exc
            raise KubeError(f"{what}: no answer from the API server: {_short(reason)}") from None

    async def patch_status(self, info: KindInfo, namespace: str, name: str, status: dict,
                           *, resource_version: str | None = None) -> dict:
        """Merge-patch the status subresource of one of Lifeline's own objects; returns the object.

        With ``resource_version`` the write succeeds only if nobody wrote in between (409 otherwise).
        """
        body: dict = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._call(
            f"patch status of {info.kind} {namespace}/{name}",
            self._custom.patch_namespaced_custom_object_status,
            info.group, info.version, namespace, info.plural, name, body,
        )

    async def get(self, info: KindInfo, namespace: str, name: str) -> dict:
        """One of Lifeline's objects as stored now."""
        return await self._call(
            f"get {info.kind} {namespace}/{name}", self._custom.get_namespaced_custom_object,
            info.group, info.version, namespace, info.plural, name,
        )

    async def patch_metadata(self, info: KindInfo, namespace: str, name: str, metadata: dict) -> dict:
        """Merge-patch the metadata (labels, annotations) of one of Lifeline's objects."""
        return await self._call(
            f"patch {info.kind} {namespace}/{name}", self._custom.patch_namespaced_custom_object,
            info.group, info.version, namespace, info.plural, name, {"metadata": metadata},
            _content_type=MERGE_PATCH,
        )

    async def delete(self, info: KindInfo, namespace: str, name: str) -> None:
        """Delete one of Lifeline's objects (the CLI and the demo, on a person's behalf)."""
        await self._call(
            f"delete {info.kind} {namespace}/{name}", self._custom.delete_namespaced_custom_object,
            info.group, info.version, namespace, info.plural, name,
        )

    # ---- failover: workloads, traffic, other clusters

    def _workload_api(self, kind: str, verb: str):
        if kind not in WORKLOAD_KINDS:
            raise KubeError(f"{kind} is not a workload kind Lifeline scales ({', '.join(WORKLOAD_KINDS)})", 400)
        plural = "deployment" if kind == "Deployment" else "stateful_set"
        return getattr(self._apps, f"{verb}_namespaced_{plural}")

    def _plain(self, obj) -> dict:
        return self._api.sanitize_for_serialization(obj)

    async def get_workload(self, kind: str, namespace: str, name: str) -> dict:
        """A Deployment or StatefulSet as a plain dict (camelCase, as the API serves it)."""
        obj = await self._call(f"get {kind} {namespace}/{name}", self._workload_api(kind, "read"),
                               name, namespace, _request_timeout=self.request_timeout)
        return self._plain(obj)

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: dict) -> dict:
        """Merge-patch a Deployment or StatefulSet (spec.replicas, annotations)."""
        obj = await self._call(f"patch {kind} {namespace}/{name}", self._workload_api(kind, "patch"),
                               name, namespace, patch, _content_type=MERGE_PATCH,
                               _request_timeout=self.request_timeout)
        return self._plain(obj)

    async def patch_service(self, namespace: str, name: str, patch: dict) -> dict:
        """Merge-patch a Service (its selector, its annotations)."""
        obj = await self._call(f"patch Service {namespace}/{name}", self._core.patch_namespaced_service,
                               name, namespace, patch, _content_type=MERGE_PATCH,
                               _request_timeout=self.request_timeout)
        return self._plain(obj)

    async def annotate(self, kind: str, namespace: str, name: str, annotations: dict) -> dict:
        """Set annotations on a Service, an Ingress or an external-dns DNSEndpoint."""
        if kind not in ANNOTATABLE:
            raise KubeError(f"Lifeline does not annotate {kind} objects (only {', '.join(ANNOTATABLE)})", 400)
        patch = {"metadata": {"annotations": annotations}}
        what = f"annotate {kind} {namespace}/{name}"
        if kind == "Service":
            return await self.patch_service(namespace, name, patch)
        if kind == "Ingress":
            obj = await self._call(what, self._networking.patch_namespaced_ingress, name, namespace, patch,
                                   _content_type=MERGE_PATCH, _request_timeout=self.request_timeout)
            return self._plain(obj)
        group, version, plural = ANNOTATABLE[kind]
        return await self._call(what, self._custom.patch_namespaced_custom_object, group, version, namespace,
                                plural, name, patch, _content_type=MERGE_PATCH,
                                _request_timeout=self.request_timeout)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret, decoded; KubeError 404 when the Secret or the key is missing."""
        import base64

        secret = await self._call(f"get Secret {namespace}/{name}", self._core.read_namespaced_secret,
                                  name, namespace, _request_timeout=self.request_timeout)
        data = secret.data or {}
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r} (keys: {keys})", 404)
        return base64.b64decode(data[key])

    async def create(self, info: KindInfo, namespace: str, body: dict) -> dict:
        """Create one of Lifeline's objects (as `kubectl create` would)."""
        name = (body.get("metadata") or {}).get("name", "")
        return await self._call(
            f"create {info.kind} {namespace}/{name}",
            self._custom.create_namespaced_custom_object, info.group, info.version, namespace, info.plural, body,
        )

    async def list(self, info: KindInfo, namespace: str | None = None) -> list[dict]:
        """Every object of a kind, in one namespace or all."""
        if namespace:
            result = await self._call(f"list {info.plural} in {namespace}",
                                      self._custom.list_namespaced_custom_object,
                                      info.group, info.version, namespace, info.plural)
        else:
            result = await self._call(f"list {info.plural}", self._custom.list_cluster_custom_object,
                                      info.group, info.version, info.plural)
        return result.get("items", [])

    async def emit_event(self, ref: ObjectRef, type_: str, reason: str, message: str, now: str) -> None:
        """Post a core/v1 Event about ``ref``; losing one is logged, never fatal."""
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                **({"uid": ref.uid} if ref.uid else {}),
                **({"resourceVersion": ref.resource_version} if ref.resource_version else {}),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": f"dr.lifeline.io/{COMPONENT}",
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call(
                f"create Event for {ref.kind} {ref.namespace}/{ref.name}",
                self._core.create_namespaced_event, ref.namespace, body,
            )
        except KubeError as exc:
            log.warning("could not post event %s/%s: %s", ref.kind, ref.name, exc)


    # ---- any namespaced object by apiVersion and plural (backups: CronJobs, Jobs, Pods, PVCs, Secrets)

    @staticmethod
    def _path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        return f"{path}/{name}" if name else path

    def _raw(self, method: str, path: str, body=None, query: list | None = None,
             content_type: str = "application/json"):
        import json

        response = self._api.call_api(
            path, method, {}, query or [], {"Accept": "application/json", "Content-Type": content_type},
            body=body, response_types_map={}, auth_settings=["BearerToken"],
            _return_http_data_only=True, _preload_content=False, _request_timeout=self.request_timeout,
        )
        data = response.data
        return json.loads(data) if data else {}

    async def get_object(self, api_version: str, plural: str, namespace: str, name: str) -> dict | None:
        """One object as stored now, or None when it does not exist."""
        try:
            return await self._call(f"get {plural} {namespace}/{name}", self._raw, "GET",
                                    self._path(api_version, plural, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_objects(self, api_version: str, plural: str, namespace: str | None,
                           label_selector: str | None = None) -> list[dict]:
        """Every object of a kind in a namespace (None: in all), page by page."""
        items: list[dict] = []
        token = None
        while True:
            query = [("limit", "500")] + ([("labelSelector", label_selector)] if label_selector else [])
            if token:
                query.append(("continue", token))
            result = await self._call(f"list {plural} in {namespace or 'every namespace'}", self._raw, "GET",
                                      self._path(api_version, plural, namespace), query=query)
            items += result.get("items") or []
            token = (result.get("metadata") or {}).get("continue")
            if not token:
                return items

    async def create_object(self, api_version: str, plural: str, namespace: str, body: dict) -> dict:
        name = (body.get("metadata") or {}).get("name", "")
        return await self._call(f"create {plural} {namespace}/{name}", self._raw, "POST",
                                self._path(api_version, plural, namespace), body)

    async def replace_object(self, api_version: str, plural: str, namespace: str, name: str, body: dict) -> dict:
        """PUT: the object becomes ``body`` (give metadata.resourceVersion for optimistic concurrency)."""
        return await self._call(f"update {plural} {namespace}/{name}", self._raw, "PUT",
                                self._path(api_version, plural, namespace, name), body)

    async def patch_object(self, api_version: str, plural: str, namespace: str, name: str, patch: dict) -> dict:
        """Merge-patch an object."""
        return await self._call(f"patch {plural} {namespace}/{name}", self._raw, "PATCH",
                                self._path(api_version, plural, namespace, name), patch, content_type=MERGE_PATCH)

    async def delete_object(self, api_version: str, plural: str, namespace: str, name: str,
                            propagation: str = "Background") -> None:
        """Delete an object (404 is not an error: it is gone either way)."""
        try:
            await self._call(f"delete {plural} {namespace}/{name}", self._raw, "DELETE",
                             self._path(api_version, plural, namespace, name),
                             {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation})
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The key names of a Secret (None when it does not exist); its values are dropped at once."""
        secret = await self.get_object("v1", "secrets", namespace, name)
        if secret is None:
            return None
        return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


def _short(reason) -> str:
    """urllib3's "HTTPConnection(host=..., port=...): Failed to establish ...: [Errno 111] Connection refused"."""
    text = str(reason)
    return text.split("): ", 1)[-1] if "): " in text else text


def _status_message(exc: ApiException) -> str:
    import json

    try:
        return json.loads(exc.body).get("message", "") if exc.body else ""
    except (ValueError, AttributeError):
        return str(exc.body)[:200]
