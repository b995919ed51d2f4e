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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import urllib3
from kubernetes.client.rest import ApiException

from lifeline.api import KindInfo
from lifeline.labels import LABEL_SANDBOX, LABEL_SANDBOX_NAMESPACE
from lifeline.sources.resources import Served

log = logging.getLogger(__name__)

COMPONENT = "lifeline-operator"
DISCOVERY_TTL = 300.0  # seconds a discovery answer is used: a CRD installed later joins within this

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
        # backup, continuous sources: the policy's shipping Deployment (one replica); its status.json is
        # read with pods list + pods/exec, which backups already use
        ("apps", "deployments", "list"),
        ("apps", "deployments", "watch"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "update"),
        ("apps", "deployments", "delete"),
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
        ("batch", "jobs", "delete"),  # a snapshot's recorded data mover (controllers/backup_snapshots.py)
        # backup: a finished Job's pod carries the agent's summary in its termination message
        ("", "pods", "list"),
        # backup: do the PVCs and Secrets a policy names exist? (Secrets: only their key names are kept)
        ("", "persistentvolumeclaims", "get"),
        # backup: the RecoveryPoint catalogue, its owner references (deletionPolicy) and a fresh policy read
        ("dr.lifeline.io", "recoverypoints", "get"),
        # shred (deletionPolicy Shred, controllers/shred.py): the shred finalizer (a metadata patch), the
        # fresh list of a point's epoch mates before its key is destroyed, and the shred Job (jobs
        # create/list/watch above)
        ("dr.lifeline.io", "recoverypoints", "list"),
        ("dr.lifeline.io", "recoverypoints", "create"),
        ("dr.lifeline.io", "recoverypoints", "patch"),
        ("dr.lifeline.io", "backuppolicies", "get"),
        # backup, volumeSnapshot sources: the snapshot, the PVC made from it, and old snapshots pruned;
        # the class named by a policy (does it exist?)
        ("snapshot.storage.k8s.io", "volumesnapshots", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "create"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "delete"),
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", "get"),
        ("", "persistentvolumeclaims", "create"),
        ("", "persistentvolumeclaims", "delete"),
        # backup hooks: a command in a workload's container (websocket exec is a GET upgrade; newer
        # API servers check create for it too)
        ("", "pods/exec", "get"),
        ("", "pods/exec", "create"),
        # backup: the trigger Job of a snapshot pipeline, read back after an operator restart
        ("batch", "jobs", "get"),
        # adoption (adopt-points): the points a catalogue Job lists in its log
        ("", "pods/log", "get"),
        # /report (lifeline.observability.report): every kind it reports on, read only
        ("dr.lifeline.io", "backuppolicies", "list"),
        ("dr.lifeline.io", "restoredrills", "list"),
        ("dr.lifeline.io", "failoverplans", "list"),
        # restore: the approval webhook asks whether a person may `approve` restores (a custom verb)
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
        # /metrics and /report: whose bearer token a caller sent (then a SubjectAccessReview on the path)
        ("authentication.k8s.io", "tokenreviews", "create"),
        # restore: the target claim is labelled with the restore's outcome (verified / failed)
        ("", "persistentvolumeclaims", "patch"),
        # drills: a sandbox namespace per run (deleted only when it carries dr.lifeline.io/sandbox=true),
        # its quota, deny-egress policies, Secret copies, PVCs, throwaway database, restore and verify Jobs
        ("", "namespaces", "get"),
        ("", "namespaces", "create"),
        ("", "namespaces", "delete"),  # only inside sandboxes: a RoleBinding there to the sandbox role
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
        ("rbac.authorization.k8s.io", "clusterroles", "bind"),  # that sandbox role only (resourceNames)
        ("authentication.k8s.io", "selfsubjectreviews", "create"),  # the subject of those RoleBindings
        # /report's access review: who holds which Lifeline role
        ("rbac.authorization.k8s.io", "rolebindings", "list"),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "list"),
        ("", "resourcequotas", "create"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("", "secrets", "create"),
        ("", "pods", "create"),
        ("", "services", "create"),
        ("dr.lifeline.io", "restoredrills", "get"),
        # drills: read-only mirrors of a repository claim's volume for the sandbox (Retain), removed with it
        ("", "persistentvolumes", "get"),
        ("", "persistentvolumes", "list"),
        ("", "persistentvolumes", "create"),
        ("", "persistentvolumes", "delete"),
        # restores: re-read a Restore before acting on it (a real API server's RBAC found this missing)
        ("dr.lifeline.io", "restores", "get"),
        # backup, resources sources: the account a policy's Jobs read its namespace's objects as (a
        # ServiceAccount, a Role of exactly the kinds it selects, a RoleBinding; in tenant namespaces
        # only). escalate: the Role grants reads of kinds the operator itself does not read; bind: the
        # RoleBinding to it
        ("", "serviceaccounts", "get"),
        ("", "serviceaccounts", "create"),
        ("", "serviceaccounts", "update"),
        ("", "serviceaccounts", "delete"),
        ("rbac.authorization.k8s.io", "roles", "get"),
        ("rbac.authorization.k8s.io", "roles", "create"),
        ("rbac.authorization.k8s.io", "roles", "update"),
        ("rbac.authorization.k8s.io", "roles", "delete"),
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("rbac.authorization.k8s.io", "roles", "bind"),
        ("rbac.authorization.k8s.io", "rolebindings", "get"),
        ("rbac.authorization.k8s.io", "rolebindings", "update"),
        ("rbac.authorization.k8s.io", "rolebindings", "delete"),
        # application drills (inside sandboxes only: the sandbox role): the containers' default requests, the
        # restore Job's writer account there (ServiceAccount, Role and RoleBinding: the verbs above; its
        # binding deleted when the restore ends), and the restored workloads read while they start
        ("", "limitranges", "create"),
        ("apps", "statefulsets", "list"),
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
    # `lifeline drill run|report`: annotate a drill with a run-now request, read its status
    | {("dr.lifeline.io", "restoredrills", verb) for verb in ("get", "patch")}
)

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """A kind as the API serves it: what every :class:`Kube` call is told it acts on.

    Lifeline's own kinds are :class:`lifeline.api.KindInfo`, which has these three fields too; the
    other kinds Lifeline touches are below.
    """

    api_version: str  # "v1", "batch/v1", ...
    plural: str  # the resource name in the URL: "jobs"
    kind: str  # "Job"


NAMESPACES = Resource("v1", "namespaces", "Namespace")
PODS = Resource("v1", "pods", "Pod")
SECRETS = Resource("v1", "secrets", "Secret")
SERVICES = Resource("v1", "services", "Service")
EVENTS = Resource("v1", "events", "Event")
RESOURCEQUOTAS = Resource("v1", "resourcequotas", "ResourceQuota")
LIMITRANGES = Resource("v1", "limitranges", "LimitRange")
PERSISTENTVOLUMECLAIMS = Resource("v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PERSISTENTVOLUMES = Resource("v1", "persistentvolumes", "PersistentVolume")
JOBS = Resource("batch/v1", "jobs", "Job")
CRONJOBS = Resource("batch/v1", "cronjobs", "CronJob")
DEPLOYMENTS = Resource("apps/v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps/v1", "statefulsets", "StatefulSet")
INGRESSES = Resource("networking.k8s.io/v1", "ingresses", "Ingress")
NETWORKPOLICIES = Resource("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy")
DNSENDPOINTS = Resource("externaldns.k8s.io/v1alpha1", "dnsendpoints", "DNSEndpoint")
VOLUMESNAPSHOTS = Resource("snapshot.storage.k8s.io/v1", "volumesnapshots", "VolumeSnapshot")
VOLUMESNAPSHOTCLASSES = Resource("snapshot.storage.k8s.io/v1", "volumesnapshotclasses", "VolumeSnapshotClass")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding")
ROLES = Resource("rbac.authorization.k8s.io/v1", "roles", "Role")
SERVICEACCOUNTS = Resource("v1", "serviceaccounts", "ServiceAccount")
CLUSTERROLEBINDINGS = Resource("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding")
SUBJECTACCESSREVIEWS = Resource("authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview")
TOKENREVIEWS = Resource("authentication.k8s.io/v1", "tokenreviews", "TokenReview")
SELFSUBJECTREVIEWS = Resource("authentication.k8s.io/v1", "selfsubjectreviews", "SelfSubjectReview")
# Workload kinds failover scales (lifeline.api.failoverplan's Workload.kind).
WORKLOADS = {r.kind: r for r in (DEPLOYMENTS, STATEFULSETS)}
# Kinds an annotation switch may write to (lifeline.api.failoverplan.ANNOTATABLE).
ANNOTATABLE = {r.kind: r for r in (SERVICES, INGRESSES, DNSENDPOINTS)}
Kind = Resource | KindInfo  # what every Kube call acts on


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
    """An API connection; build one with :meth:`connect`.

    One set of calls for every kind: :meth:`get`, :meth:`list` (:meth:`list_pages`), :meth:`create`,
    :meth:`replace`, :meth:`patch` and :meth:`delete`, each told what it acts on by a :class:`Resource`
    or a :class:`~lifeline.api.KindInfo`; the rest (Events, Secrets, reviews, sandboxes) is built on them.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient, *, request_timeout: float | tuple | None = None):
        self._api = api_client
        self._instance = os.environ.get("POD_NAME") or socket.gethostname()
        self._me: str | None = None  # whoami()
        self._served: tuple[float, tuple[Served, ...]] | None = None  # discover(): when, and what
        # (connect, read) seconds for every call: a dead site (failover) must not hang a thread.
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
        api = kubernetes.config.new_client_from_config(config_file=path, context=context)
        for header, value in _impersonation(path, context).items():
            api.set_default_header(header, value)
        return cls(api)

    def credentials(self) -> dict:
        """The connection this client uses, for kopf's login handler to reuse as is."""
        cfg = self._api.configuration
        # In-cluster config keys the token as "authorization", a kubeconfig's token as "BearerToken".
        keys = cfg.api_key or {}
        auth = keys.get("authorization") or keys.get("BearerToken") or ""
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

    # ---- the one set of calls: any kind (a Resource, or a KindInfo for Lifeline's own), by namespace and name

    @staticmethod
    def _path(res: Kind, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{res.api_version}" if "/" not in res.api_version else f"/apis/{res.api_version}"
        path = f"{base}/namespaces/{namespace}/{res.plural}" if namespace else f"{base}/{res.plural}"
        if name:
            path = f"{path}/{name}"
        return f"{path}/{subresource}" if subresource else path

    @staticmethod
    def _what(verb: str, res: Kind, namespace: str | None, name: str) -> str:
        return f"{verb} {res.kind} {namespace}/{name}" if namespace else f"{verb} {res.kind} {name}"

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

    def _text(self, path: str, query: list) -> str:
        response = self._api.call_api(
            path, "GET", {}, query, {"Accept": "*/*"}, response_types_map={}, auth_settings=["BearerToken"],
            _return_http_data_only=True, _preload_content=False, _request_timeout=self.request_timeout)
        return (response.data or b"").decode("utf-8", "replace")

    async def pod_log(self, namespace: str, pod: str, container: str) -> str:
        """A container's whole log, as ``kubectl logs`` gives it (a catalogue Job's listing)."""
        return await self._call(f"read the log of {namespace}/{pod}", self._text,
                                f"/api/v1/namespaces/{namespace}/pods/{pod}/log", [("container", container)])

    async def follow_pod_log(self, namespace: str, pod: str, container: str, *, tail_lines: int | None = None,
                             idle: float = 300.0):
        """A container's log line by line as it is written (``kubectl logs -f``): an async iterator that
        ends when the container does (``tail_lines``: start with only the last lines written so far).

        The stream is read in a thread of its own; a caller that stops early (``aclose``, a cancelled
        task) shuts the connection, which ends the thread. A refusal is a KubeError (403: reading a Pod's
        log takes ``get`` on ``pods/log``), and so is ``idle`` seconds without a byte."""
        what = f"follow the log of {namespace}/{pod}"
        query = [("container", container), ("follow", "true")]
        if tail_lines is not None:
            query.append(("tailLines", str(tail_lines)))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        held: dict = {}
        stop = threading.Event()
        end = object()
        connect = self.request_timeout[0] if isinstance(self.request_timeout, tuple) else self.request_timeout

        def put(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody reads any more
                stop.set()

        def read() -> None:
            try:
                held["response"] = response = self._api.call_api(
                    f"/api/v1/namespaces/{namespace}/pods/{pod}/log", "GET", {}, query, {"Accept": "*/*"},
                    response_types_map={}, auth_settings=["BearerToken"], _return_http_data_only=True,
                    _preload_content=False, _request_timeout=(connect, idle))
                if stop.is_set():  # the reader left while we connected
                    response.close()
                    return
                pending = b""
                while not stop.is_set() and (data := response.read1(65536)):
                    *whole, pending = (pending + data).split(b"\n")
                    for line in whole:
                        put(line.decode("utf-8", "replace"))
                if pending and not stop.is_set():
                    put(pending.decode("utf-8", "replace"))
                put(end)
            except Exception as exc:  # noqa: BLE001 - handed to the reader, as a KubeError when it is one
                put(end if stop.is_set() else _api_error(what, exc))

        threading.Thread(target=read, name=f"log {namespace}/{pod}", daemon=True).start()
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            response = held.get("response")
            if response is not None:
                try:
                    response.shutdown()  # a read blocked in the thread returns now
                except (OSError, ValueError, RuntimeError):
                    pass
                response.close()  # never back to the pool: the socket is half shut

    async def get(self, res: Kind, namespace: str | None, name: str, *, missing_ok: bool = False) -> dict | None:
        """One object as stored now. One that does not exist is KubeError 404, or None with ``missing_ok``."""
        try:
            return await self._call(self._what("get", res, namespace, name), self._raw, "GET",
                                    self._path(res, namespace, name))
        except KubeError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise

    async def list_pages(self, res: Kind, namespace: str | None = None, label_selector: str | None = None,
                         limit: int = 500):
        """Every object of a kind in a namespace (None: in all), one page (a list) at a time.

        A caller that keeps only a few fields of each object never holds the whole list: at a few
        thousand CronJobs that is the difference between one page and ~100 MiB of parsed JSON.
        """
        token = None
        while True:
            query = [("limit", str(limit))] + ([("labelSelector", label_selector)] if label_selector else [])
            if token:
                query.append(("continue", token))
            result = await self._call(f"list {res.plural} in {namespace or 'every namespace'}", self._raw, "GET",
                                      self._path(res, namespace), query=query)
            token = (result.get("metadata") or {}).get("continue")
            page = result.get("items") or []
            del result
            yield page
            if not token:
                return

    async def list(self, res: Kind, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        """Every object of a kind in a namespace (None: in all), read page by page."""
        items: list[dict] = []
        async for page in self.list_pages(res, namespace, label_selector):
            items += page
        return items

    async def create(self, res: Kind, namespace: str | None, body: dict) -> dict:
        """Create an object (None: a cluster-scoped one); returns it as stored."""
        name = (body.get("metadata") or {}).get("name", "")
        return await self._call(self._what("create", res, namespace, name), self._raw, "POST",
                                self._path(res, namespace), body)

    async def replace(self, res: Kind, namespace: str | None, name: str, body: dict) -> dict:
        """PUT: the object becomes ``body`` (give metadata.resourceVersion for optimistic concurrency)."""
        return await self._call(self._what("update", res, namespace, name), self._raw, "PUT",
                                self._path(res, namespace, name), body)

    async def patch(self, res: Kind, namespace: str | None, name: str, patch: dict, *,
                    subresource: str | None = None) -> dict:
        """Merge-patch an object, or its ``subresource`` ("status"); returns the object as stored.

        A ``metadata.resourceVersion`` in the patch makes the write succeed only if nobody wrote in
        between (409 otherwise).
        """
        verb = f"patch {subresource} of" if subresource else "patch"
        return await self._call(self._what(verb, res, namespace, name), self._raw, "PATCH",
                                self._path(res, namespace, name, subresource), patch, content_type=MERGE_PATCH)

    async def delete(self, res: Kind, namespace: str | None, name: str, *, missing_ok: bool = False,
                     propagation: str = "Background") -> None:
        """Delete an object. One that does not exist is KubeError 404, or nothing with ``missing_ok``."""
        try:
            await self._call(self._what("delete", res, namespace, name), self._raw, "DELETE",
                             self._path(res, namespace, name),
                             {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation})
        except KubeError as exc:
            if not (missing_ok and exc.status == 404):
                raise

    # ---- built on those

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
            await self.create(EVENTS, ref.namespace, body)
        except KubeError as exc:
            log.warning("could not post event %s/%s: %s", ref.kind, ref.name, exc)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret, decoded; KubeError 404 when the Secret or the key is missing."""
        import base64

        data = (await self.get(SECRETS, namespace, name)).get("data") or {}
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r} (keys: {keys})", 404)
        return base64.b64decode(data[key])

    async def exec(self, namespace: str, pod: str, container: str | None, command: list[str],
                   timeout: float = 60.0) -> "ExecResult":
        """Run a command in a container (pods/exec); see :func:`exec_in_pod`."""
        return await exec_in_pod(self, namespace, pod, container, command, timeout)

    async def access_review(self, *, user: str, groups: list[str], namespace: str, verb: str, group: str,
                            resource: str, name: str | None = None, uid: str | None = None,
                            extra: dict | None = None) -> bool:
        """May ``user`` (with ``groups``) do ``verb`` on the resource? A SubjectAccessReview answers."""
        attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": resource}
        if name:
            attributes["name"] = name
        return await self._subject_review(user, groups, uid, extra, resourceAttributes=attributes)

    async def path_review(self, *, user: str, groups: list[str], path: str, verb: str = "get",
                          uid: str | None = None, extra: dict | None = None) -> bool:
        """May ``user`` ``verb`` the non-resource URL ``path`` (``/metrics``)? A SubjectAccessReview answers."""
        return await self._subject_review(user, groups, uid, extra, nonResourceAttributes={"path": path, "verb": verb})

    async def _subject_review(self, user: str, groups: list[str], uid: str | None, extra: dict | None,
                              **attributes: dict) -> bool:
        spec: dict = {"user": user, "groups": groups, **attributes}
        if uid:
            spec["uid"] = uid
        if extra:
            spec["extra"] = extra
        review = await self.create(SUBJECTACCESSREVIEWS, None,
                                   {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                    "spec": spec})
        return bool((review.get("status") or {}).get("allowed"))

    async def token_review(self, token: str) -> dict | None:
        """Whose bearer token is this (``userInfo``), or None when the API server does not know it."""
        review = await self.create(TOKENREVIEWS, None,
                                   {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                    "spec": {"token": token}})
        status = review.get("status") or {}
        return status.get("user") or {} if status.get("authenticated") else None

    async def discover(self, max_age: float = DISCOVERY_TTL) -> tuple[Served, ...]:
        """Every resource the API server serves, at each group's preferred version (discovery: readable
        by every authenticated user, so no RBAC rule of its own); asked again only when the last answer
        is older than ``max_age`` seconds, so the controller and the webhook share one."""
        if self._served is not None and time.monotonic() - self._served[0] < max_age:
            return self._served[1]
        self._served = (time.monotonic(), await self._discover())
        return self._served[1]

    async def _discover(self) -> tuple[Served, ...]:

        def served(group: str, version: str, listing: dict) -> list[Served]:
            return [Served(group, version, r["name"], r["kind"], bool(r.get("namespaced")), frozenset(r.get("verbs") or ()))
                    for r in listing.get("resources") or ()]

        out = served("", "v1", await self._call("discover core", self._raw, "GET", "/api/v1"))
        groups = await self._call("discover groups", self._raw, "GET", "/apis")
        for g in groups.get("groups") or ():
            preferred = (g.get("preferredVersion") or {}).get("version")
            if preferred:
                listing = await self._call(f"discover {g['name']}", self._raw, "GET", f"/apis/{g['name']}/{preferred}")
                out += served(g["name"], preferred, listing)
        return tuple(sorted(out, key=lambda r: (r.group, r.plural)))

    async def whoami(self) -> str:
        """The user name the API server knows this client as (a SelfSubjectReview), once."""
        if self._me is None:
            review = await self.create(SELFSUBJECTREVIEWS, None,
                                       {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            self._me = ((review.get("status") or {}).get("userInfo") or {}).get("username") or ""
        return self._me

    async def create_sandbox_namespace(self, body: dict, role: str) -> dict | None:
        """Create a drill's sandbox namespace (refused unless it carries Lifeline's sandbox label) and bind
        ``role`` -- the right to delete it -- to this client in it; None when it existed already."""
        labels = (body.get("metadata") or {}).get("labels") or {}
        name = (body.get("metadata") or {}).get("name")
        if labels.get(LABEL_SANDBOX) != "true":
            raise KubeError(f"refusing to create namespace {name}: not labelled {LABEL_SANDBOX}=true", 400)
        try:
            created = await self.create(NAMESPACES, None, body)
        except KubeError as exc:
            if exc.status != 409:  # a resumed start: bind anyway, the first try may have stopped before
                raise
            created = None
        await self._bind_in_sandbox(name, role)
        return created

    async def _bind_in_sandbox(self, namespace: str, role: str) -> None:
        me = await self.whoami()
        if me.startswith("system:serviceaccount:"):
            _, _, sa_namespace, sa = me.split(":", 3)
            subject = {"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace}
        else:
            subject = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": me}
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "lifeline-sandbox", "labels": {LABEL_SANDBOX: "true"}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                   "subjects": [subject]}
        try:
            await self.create(ROLEBINDINGS, namespace, binding)
        except KubeError as exc:
            if exc.status != 409:
                raise

    async def delete_sandbox_namespace(self, name: str, role: str) -> bool:
        """Delete a drill's sandbox namespace, only if Lifeline labelled it so; False when it was not one.
        The right to delete it is ``role``, bound inside the sandbox when it was made (and bound now for
        a sandbox made before that was so)."""
        found = await self.get(NAMESPACES, None, name, missing_ok=True)
        if found is None:
            return True
        if ((found.get("metadata") or {}).get("labels") or {}).get(LABEL_SANDBOX) != "true":
            log.error("not deleting namespace %s: it is not a Lifeline sandbox (no %s=true)", name, LABEL_SANDBOX)
            return False
        try:
            await self.delete(NAMESPACES, None, name, missing_ok=True)
        except KubeError as exc:
            if exc.status != 403:
                raise
            await self._bind_in_sandbox(name, role)
            await self.delete(NAMESPACES, None, name, missing_ok=True)
        return True

    async def delete_mirror_volumes(self, sandbox: str) -> None:
        """Delete the read-only mirror volumes made for a sandbox (Retain: the data stays where it is)."""
        selector = f"{LABEL_SANDBOX}=true,{LABEL_SANDBOX_NAMESPACE}={sandbox}"
        for pv in await self.list(PERSISTENTVOLUMES, None, label_selector=selector):
            await self.delete(PERSISTENTVOLUMES, None, pv["metadata"]["name"], missing_ok=True)

    async def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The key names of a Secret (None when it does not exist); its values are dropped at once."""
        secret = await self.get(SECRETS, namespace, name, missing_ok=True)
        if secret is None:
            return None
        return set(secret.get("data") or {}) | set(secret.get("stringData") or {})


@dataclass(frozen=True)
class ExecResult:
    """How a command run in a container ended (``exit_code`` None: it did not end in time)."""

    exit_code: int | None
    stdout: str
    stderr: str


def _exec_blocking(api_client: kubernetes.client.ApiClient, namespace: str, pod: str, container: str | None,
                   command: list[str], timeout: float) -> ExecResult:
    from kubernetes.stream import stream

    # stream() swaps the request method of the ApiClient it is given while it runs: a private client
    # keeps the operator's other threads (sharing the main one) off the websocket.
    private = kubernetes.client.ApiClient(api_client.configuration)
    try:
        core = kubernetes.client.CoreV1Api(private)
        kwargs = {"container": container} if container else {}
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=list(command), stdin=False,
                        stdout=True, stderr=True, tty=False, _preload_content=False, **kwargs)
        except (ApiException, AttributeError) as exc:
            # A refused handshake surfaces as ApiException(status=0), which the client's own error path
            # then trips over (AttributeError): dig the server's answer out of the reason text.
            raise _exec_refusal(exc) from None
        try:
            ws.run_forever(timeout=timeout)
            try:
                code = ws.returncode if not ws.is_open() else None
            except ValueError as exc:
                # The error channel carries text, not a Status, when the kubelet refused the stream
                # ("unable to upgrade connection: container ... not found or not running").
                raise KubeError(str(exc).split("base 10: ", 1)[-1].strip("'"), 400) from None
            return ExecResult(code, ws.read_stdout(timeout=0) or "", ws.read_stderr(timeout=0) or "")
        finally:
            ws.close()
    finally:
        private.close()


def _exec_refusal(exc: Exception) -> KubeError:
    import json
    import re

    cause = exc if isinstance(exc, ApiException) else exc.__context__
    text = str(getattr(cause, "reason", None) or cause or exc)
    found = re.search(r"Handshake status (\d+)", text)
    status = int(found.group(1)) if found else 0
    message = text
    body = re.search(r"b'(\{.*\})'", text)
    if body:
        try:
            message = json.loads(body.group(1)).get("message") or text
        except ValueError:
            pass
    return KubeError(f"{status or ''} {message}".strip(), status)


async def exec_in_pod(kube: "Kube", namespace: str, pod: str, container: str | None, command: list[str],
                      timeout: float) -> ExecResult:
    """Run ``command`` in a pod's container through pods/exec (the v4 channel websocket protocol)."""
    return await kube._call(f"exec in pod {namespace}/{pod}", _exec_blocking, kube._api, namespace, pod,
                            container, command, timeout)


def _api_error(what: str, exc: Exception) -> Exception:
    """An exception of the client as :meth:`Kube._call` reports it (others as they are)."""
    if isinstance(exc, ApiException):
        return KubeError(f"{what}: {exc.status} {exc.reason}: {_status_message(exc)}", exc.status)
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return KubeError(f"{what}: no answer from the API server: {_short(getattr(exc, 'reason', None) or exc)}")
    if isinstance(exc, (OSError, kubernetes.client.exceptions.OpenApiException)):
        return KubeError(f"{what}: {exc}")
    return exc


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


def _impersonation(path: str | None, context: str | None) -> dict[str, str]:
    """The ``as`` / ``as-groups`` of the kubeconfig user in use, as impersonation headers.

    kubectl honours them and the Python client does not: without this, ``lifeline --context carol``
    with a user entry that impersonates carol would act as the entry's own credentials instead."""
    import yaml

    files = (path or str(Path.home() / ".kube" / "config")).split(os.pathsep)
    docs = []
    for name in files:
        try:
            doc = yaml.safe_load(Path(name).expanduser().read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict):
            docs.append(doc)
    current = context or next((d["current-context"] for d in docs if d.get("current-context")), None)
    contexts = [c for d in docs for c in d.get("contexts") or [] if isinstance(c, dict)]
    users = [u for d in docs for u in d.get("users") or [] if isinstance(u, dict)]
    ctx = next((c.get("context") or {} for c in contexts if c.get("name") == current), {})
    user = next((u.get("user") or {} for u in users if u.get("name") == ctx.get("user")), {})
    headers = {}
    if user.get("as"):
        headers["Impersonate-User"] = str(user["as"])
    groups = user.get("as-groups") or []
    if len(groups) > 1:
        # the client sends one value per header; a comma-joined value would name one odd group
        raise KubeError(f"the kubeconfig user {ctx.get('user')!r} impersonates {len(groups)} groups; "
                        "lifeline can impersonate one: bind the person by user name instead", 400)
    if groups:
        headers["Impersonate-Group"] = str(groups[0])
    return headers
