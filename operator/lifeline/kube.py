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
    }
)

# Calls made on a person's behalf by the CLI and the demo (their own credentials).
CLI_VERBS: frozenset[tuple[str, str, str]] = frozenset(
    {("dr.lifeline.io", plural, verb)
     for plural in ("backuppolicies", "recoverypoints", "restoredrills", "restores", "failoverplans")
     for verb in ("create", "list")}
)


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

    def __init__(self, api_client: kubernetes.client.ApiClient):
        self._api = api_client
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()

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

    async def patch_status(self, info: KindInfo, namespace: str, name: str, status: dict) -> None:
        """Merge-patch the status subresource of one of Lifeline's own objects."""
        await self._call(
            f"patch status of {info.kind} {namespace}/{name}",
            self._custom.patch_namespaced_custom_object_status,
            info.group, info.version, namespace, info.plural, name, {"status": status},
        )

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


def _status_message(exc: ApiException) -> str:
    import json

    try:
        return json.loads(exc.body).get("message", "") if exc.body else ""
    except (ValueError, AttributeError):
        return str(exc.body)[:200]
