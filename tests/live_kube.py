"""What a test asks of the Kubernetes API, asked of the session's real control plane.

One :class:`LiveKube` per test, on a fresh namespace of the session cluster
(:mod:`tests.cluster_fixtures`): read objects (``stored``, ``objects``, ``events``), put objects in
place as an admin would (``seed``, ``claim``, ``secret``), wait for a state (``wait_for``, bounded
polling: the controllers run on real time), count the operator's writes from the API server's own
audit log (``writes``, ``count_writes``), and run the operator in the test's process as the chart's
ServiceAccount (``operator``), restricted to the test's namespace, with the test's clock.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.error
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifeline.api import BY_KIND, KINDS
from lifeline.devstack import install, live
from lifeline.devstack.children import wait_for
from lifeline.devstack.operator_thread import running_operator

# Plurals tests name without a group: where they live.
_API_OF = {
    "namespaces": ("", "v1"), "secrets": ("", "v1"), "configmaps": ("", "v1"), "pods": ("", "v1"),
    "persistentvolumeclaims": ("", "v1"), "persistentvolumes": ("", "v1"), "events": ("", "v1"),
    "serviceaccounts": ("", "v1"), "services": ("", "v1"),
    "jobs": ("batch", "v1"), "cronjobs": ("batch", "v1"),
    "deployments": ("apps", "v1"), "statefulsets": ("apps", "v1"),
    "leases": ("coordination.k8s.io", "v1"),
    "volumesnapshots": ("snapshot.storage.k8s.io", "v1"),
    "volumesnapshotclasses": ("snapshot.storage.k8s.io", "v1"),
    "volumesnapshotcontents": ("snapshot.storage.k8s.io", "v1"),
    **{k.plural: (k.group, k.version) for k in KINDS},
}
_KIND_PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps", "PersistentVolumeClaim": "persistentvolumeclaims",
                 "Job": "jobs", "CronJob": "cronjobs", "Pod": "pods", "Deployment": "deployments",
                 "StatefulSet": "statefulsets", "VolumeSnapshot": "volumesnapshots",
                 "VolumeSnapshotClass": "volumesnapshotclasses", "ServiceAccount": "serviceaccounts"}
_CLUSTER_SCOPED = {"namespaces", "persistentvolumes", "volumesnapshotclasses", "volumesnapshotcontents"}
_METHOD = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE"}


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str

    @classmethod
    def of(cls, resource: Any) -> "Resource":
        """From ``"v1/secrets"``, ``"batch/v1/jobs"``, a bare known plural, or a Lifeline kind's info."""
        if isinstance(resource, Resource):
            return resource
        if hasattr(resource, "plural") and hasattr(resource, "group"):
            return cls(resource.group, resource.version, resource.plural)
        parts = str(resource).split("/")
        if len(parts) == 1:
            if parts[0] in BY_KIND:
                info = BY_KIND[parts[0]]
                return cls(info.group, info.version, info.plural)
            group, version = _API_OF[parts[0]]
            return cls(group, version, parts[0])
        if len(parts) == 2:
            return cls("", parts[0], parts[1])
        return cls(parts[0], parts[1], parts[2])

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace and self.plural not in _CLUSTER_SCOPED:
            base += f"/namespaces/{namespace}"
        out = f"{base}/{self.plural}"
        if name:
            out += f"/{name}"
        return f"{out}/{sub}" if sub else out


@dataclass(frozen=True)
class Write:
    """One write the API server finished, as its audit log records it."""
    method: str
    path: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None
    status: int | None
    user: str


@dataclass(frozen=True)
class JobRun:
    job: str
    phase: str  # Succeeded | Failed


def _b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


class LiveKube:
    """A test's view of the real API server, in its own namespace (see the module docstring)."""

    def __init__(self, cluster, namespace: str, release: install.Release, workdir: Path):
        self.cluster, self.namespace, self.release, self.workdir = cluster, namespace, release, workdir
        self.operator_user = release.service_account
        self.mark = cluster.audit_position()
        self._volumes: list[str] = []

    # ---- reading

    def request(self, method: str, path: str, body: dict | None = None, **kwargs) -> Any:
        """``Cluster.request``; a refusal keeps its code and carries the API server's message."""
        try:
            return self.cluster.request(method, path, body, **kwargs)
        except urllib.error.HTTPError as exc:
            message = (exc.read() or b"").decode(errors="replace")
            with contextlib.suppress(ValueError):
                message = json.loads(message).get("message", message)
            raise urllib.error.HTTPError(exc.url, exc.code, f"{method} {path}: {message}", exc.hdrs, None) from None

    def stored(self, resource: Any, namespace: str | None = None, name: str | None = None) -> dict | None:
        """The object as the API server has it now, or None."""
        res = Resource.of(resource)
        return live.get(self.cluster, res.path(namespace if namespace is not None else self.namespace, name))

    def objects(self, resource: Any, namespace: str | None = ..., selector: str | None = None) -> list[dict]:
        """Objects of a kind in the test's namespace (``namespace=None``: every namespace)."""
        res = Resource.of(resource)
        ns = self.namespace if namespace is ... else namespace
        query = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        answer = self.request("GET", res.path(ns) + query)
        items, kind = answer["items"], (answer.get("kind") or "").removesuffix("List")
        for item in items:  # lists leave out each item's kind; callers compare whole objects
            item.setdefault("kind", kind)
        return items

    def events(self, name: str | None = None, reason: str | None = None) -> list[dict]:
        """Events about ``name`` (optionally of one reason), oldest first."""
        found = [e for e in self.objects("events")
                 if (name is None or e.get("involvedObject", {}).get("name") == name)
                 and (reason is None or e.get("reason") == reason)]
        return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
        """Poll ``predicate`` (in a thread: it may call the API) until it is truthy; return its value."""
        return await live.until(predicate, timeout, getattr(predicate, "__name__", "a condition"), interval)

    # ---- putting things in place, as an admin

    def seed(self, resource: Any, body: dict) -> dict:
        """Create an object as an admin; a ``status`` in ``body`` is written to the status subresource too."""
        res = Resource.of(resource)
        meta = body.setdefault("metadata", {})
        namespace = meta.setdefault("namespace", self.namespace) if res.plural not in _CLUSTER_SCOPED else None
        created = self.request("POST", res.path(namespace), body)
        if body.get("status"):
            created = self.request("PATCH", res.path(namespace, created["metadata"]["name"], "status"),
                                   {"status": body["status"]}, content_type="application/merge-patch+json")
        return created

    def create(self, body: dict, user: str | None = None) -> dict:
        """Create an object through the API (and its admission webhooks), as the admin or ``user``."""
        res = Resource.of(body["kind"] if body["kind"] in BY_KIND else _KIND_PLURALS[body["kind"]])
        namespace = (body.get("metadata") or {}).get("namespace") or self.namespace
        kwargs = {"user": user} if user else {}
        return self.request("POST", res.path(namespace), body, **kwargs)

    def claim(self, name: str, path: Path, size: str = "10Gi", *, csi: bool = False) -> Path:
        """A PersistentVolumeClaim whose data is the host directory ``path`` (a pre-bound host-path PV,
        or with ``csi`` one of the stand-in CSI driver, for snapshots)."""
        live.host_claim(self.cluster, self.namespace, name, path, size, csi=csi)
        self._volumes.append(f"{self.namespace}-{name}")
        # The scheduler refuses a Pod whose claim is not Bound yet and tries again only ~10 s later.
        bound = lambda: (self.stored("persistentvolumeclaims", None, name) or {}).get("status", {}).get("phase")
        wait_for(lambda: bound() == "Bound", 30, f"claim {name} to bind", interval=0.05)
        return path

    def close(self) -> None:
        """Remove the cluster-scoped PersistentVolumes this test made (its namespace goes by itself)."""
        for volume in self._volumes:
            with contextlib.suppress(Exception):
                self.request("DELETE", f"/api/v1/persistentvolumes/{volume}")

    def secret(self, name: str, data: dict[str, str | bytes]) -> dict:
        return self.seed("v1/secrets", {"metadata": {"name": name}, "data": {k: _b64(v) for k, v in data.items()}})

    def patch(self, resource: Any, name: str, patch: dict, namespace: str | None = None, sub: str | None = None,
              user: str | None = None) -> dict:
        res = Resource.of(resource)
        kwargs = {"user": user} if user else {}
        return self.request("PATCH", res.path(namespace or self.namespace, name, sub), patch,
                            content_type="application/merge-patch+json", **kwargs)

    def delete(self, resource: Any, name: str, namespace: str | None = None) -> None:
        res = Resource.of(resource)
        try:
            self.request("DELETE", res.path(namespace or self.namespace, name))
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    # ---- Jobs, run by the real Job controller and the process kubelet

    async def run_cronjob(self, cronjob: str, timeout: float = 120) -> "JobRun":
        """``kubectl create job --from=cronjob/NAME`` and wait for the Job's end."""
        name = await asyncio.to_thread(live.start_cronjob, self.cluster, self.namespace, cronjob)
        return await self.finished(name, timeout)

    async def finished(self, job: str, timeout: float = 120) -> "JobRun":
        """Wait for a Job's end: its name and Succeeded or Failed."""
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{job}"
        phase = await self.wait_for(lambda: live.job_end(live.get(self.cluster, path)), timeout=timeout)
        return JobRun(job, phase)

    async def run_pending(self, selector: str | None = None, timeout: float = 120) -> list["JobRun"]:
        """Wait for every Job now in the namespace (optionally matching a label selector) to end."""
        jobs = self.objects("jobs", selector=selector)
        return [await self.finished(j["metadata"]["name"], timeout) for j in jobs]

    def job_log(self, job: str, container: str = "agent") -> str:
        return live.job_log(self.cluster, self.namespace, job, container)

    # ---- the operator's writes

    @property
    def writes(self) -> list[Write]:
        """The operator's write requests since this test began, oldest first."""
        out = []
        for event in self.cluster.writes(self.operator_user, since=self.mark):
            ref = event.get("objectRef") or {}
            if ref.get("resource", "").endswith("reviews"):
                continue  # access, token and self reviews: questions asked by POST, nothing is stored
            out.append(Write(_METHOD.get(event["verb"], event["verb"].upper()), event.get("requestURI", ""),
                             ref.get("resource", ""), ref.get("namespace"), ref.get("name"),
                             ref.get("subresource"), (event.get("responseStatus") or {}).get("code"),
                             event["user"]["username"]))
        return out

    def count_writes(self, resource: Any = None, *, namespace: str | None = None, name: str | None = None,
                     method: str | None = None, subresource: Any = ..., since: int = 0) -> int:
        """How many of the operator's writes match (``since``: an index into :attr:`writes`)."""
        plural = None if resource is None else Resource.of(resource).plural
        return sum(1 for w in self.writes[since:]
                   if (plural is None or w.resource == plural)
                   and (namespace is None or w.namespace == namespace)
                   and (name is None or w.name == name)
                   and (method is None or w.method == method.upper())
                   and (subresource is ... or w.subresource == subresource))

    # ---- the operator, in this process

    def watched(self, since: int = 0) -> set[str]:
        """Lifeline plurals the operator has opened a watch on in this namespace (or cluster-wide) since
        audit line ``since``."""
        return {e["objectRef"]["resource"] for e in self.cluster.watches(self.operator_user, since=since or self.mark)
                if e.get("objectRef", {}).get("namespace") in (self.namespace, None)}

    @contextlib.asynccontextmanager
    async def operator(self, clock=None, namespaces: list[str] | None = None, *, standby: bool = False,
                       **options) -> AsyncIterator[Any]:
        """The operator as the chart's ServiceAccount, watching this namespace (or ``namespaces``; ``[]``:
        every namespace, as the chart installs it), serving the chart's webhooks.

        ``standby``: a replica that a peer of higher priority keeps paused; it opens no watches, so
        it is not waited for."""
        request = self.cluster.request
        config = install.operator_kubeconfig(request, self.release, self.cluster.url, self.cluster.ca,
                                             self.workdir / "operator.kubeconfig")
        certs = install.webhook_certificates(request, self.release, self.workdir / "webhook-tls")
        client_ca = install.webhook_client_ca_file(self.release, self.workdir)
        options = {"webhook_port": self.release.webhook_port, "webhook_cert_dir": str(certs),
                   "webhook_host": "127.0.0.1", "webhook_addr": "127.0.0.1",
                   "webhook_client_ca": str(client_ca) if client_ca else None, **options}
        since = self.cluster.audit_position()
        watched = (lambda: {k.plural for k in KINDS}) if standby else (lambda: self.watched(since))
        async with running_operator(config, watched, clock=clock,
                                    namespaces=[self.namespace] if namespaces is None else namespaces,
                                    **options) as ctx:
            yield ctx


__all__ = ["JobRun", "LiveKube", "Resource", "Write"]
