"""A fake kubelet for the API emulator, and the endpoints its "pods" serve.

The emulator stores Deployments and StatefulSets but nothing runs them: no
controller fills ``status.readyReplicas``, so nothing ever becomes ready. The
:class:`FakeKubelet` is that missing controller, talking to the API over HTTP as
a real one would: it watches both kinds in every namespace and, when
``spec.replicas`` changes, patches the status subresource (``replicas``,
``readyReplicas``, ``availableReplicas``, ``updatedReplicas``, ``observedGeneration``)
after an optional start-up delay. :meth:`FakeKubelet.hold` keeps new replicas from
becoming ready until :meth:`FakeKubelet.release` (to catch an operator mid-step).

:class:`PodEndpoint` is what a site's pods would serve, on loopback: Prometheus'
``/-/ready`` and ``/api/v1/query``. It is healthy only while its workload has ready
replicas (:meth:`FakeKubelet.bind`) and it is not :attr:`~PodEndpoint.broken` (an
outage); it can also answer garbage, hang, or stop listening altogether.

Used by the failover tests, ``bench/failover.py`` and the failover demo scene.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import aiohttp
import aiohttp.web

log = logging.getLogger(__name__)

WORKLOADS = (("apps/v1", "deployments", "Deployment"), ("apps/v1", "statefulsets", "StatefulSet"))


def ready_status(obj: dict, replicas: int) -> dict:
    status = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
              "updatedReplicas": replicas, "observedGeneration": (obj.get("metadata") or {}).get("generation", 1)}
    if obj.get("kind") == "StatefulSet":
        status["currentReplicas"] = replicas
    return status


def is_settled(obj: dict) -> bool:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (status.get("readyReplicas", 0) == wanted and status.get("replicas", 0) == wanted
            and status.get("observedGeneration") == (obj.get("metadata") or {}).get("generation", 1))


class FakeKubelet:
    """Marks Deployments and StatefulSets ready in an emulator, through its HTTP API."""

    def __init__(self, url: str, *, startup: float = 0.0):
        self.url = url.rstrip("/")
        self.startup = startup
        self._released = asyncio.Event()
        self._released.set()
        self._pending: dict[tuple, asyncio.Task] = {}
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self._bindings: dict[tuple[str, str, str], list[PodEndpoint]] = {}
        self.ready: dict[tuple[str, str, str], int] = {}  # (namespace, kind, name) -> ready replicas
        self._changed = asyncio.Event()

    async def __aenter__(self) -> "FakeKubelet":
        self._session = aiohttp.ClientSession()
        for api, plural, kind in WORKLOADS:
            self._tasks.append(asyncio.create_task(self._watch(api, plural, kind), name=f"kubelet-{plural}"))
        return self

    async def __aexit__(self, *exc) -> None:
        for task in [*self._tasks, *self._pending.values()]:
            task.cancel()
        for task in [*self._tasks, *self._pending.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._pending.clear()
        await self._session.close()

    def hold(self) -> None:
        """New replicas stay unready until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def bind(self, namespace: str, kind: str, name: str, endpoint: "PodEndpoint") -> None:
        """``endpoint`` serves while that workload has ready replicas."""
        key = (namespace, kind, name)
        self._bindings.setdefault(key, []).append(endpoint)
        endpoint.up = self.ready.get(key, 0) > 0

    async def wait_ready(self, namespace: str, kind: str, name: str, replicas: int | None = None,
                         timeout: float = 10.0) -> None:
        """Until the workload has ``replicas`` ready (any number above zero when None)."""
        key = (namespace, kind, name)
        async with asyncio.timeout(timeout):
            while not (self.ready.get(key, 0) > 0 if replicas is None else self.ready.get(key, 0) == replicas):
                self._changed.clear()
                await self._changed.wait()

    async def _watch(self, api: str, plural: str, kind: str) -> None:
        url = f"{self.url}/apis/{api}/{plural}"
        while True:
            try:
                async with self._session.get(url, params={"watch": "true"},
                                             timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self._seen(api, plural, kind, event["object"])
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("kubelet watch of %s: %s", plural, exc)
                await asyncio.sleep(0.1)

    def _seen(self, api: str, plural: str, kind: str, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace"), kind, meta.get("name"))
        wanted = (obj.get("spec") or {}).get("replicas", 1)
        self._note(key, (obj.get("status") or {}).get("readyReplicas", 0) or 0)
        if is_settled(obj):
            return
        generation = meta.get("generation", 1)
        pending = self._pending.get(key)
        if pending is not None and not pending.done():
            if getattr(pending, "lifeline_target", None) == (generation, wanted):
                return
            pending.cancel()
        task = asyncio.create_task(self._settle(api, plural, key, obj, wanted))
        task.lifeline_target = (generation, wanted)  # type: ignore[attr-defined]
        self._pending[key] = task

    async def _settle(self, api: str, plural: str, key: tuple, obj: dict, wanted: int) -> None:
        if wanted > 0:
            await self._released.wait()
            if self.startup:
                await asyncio.sleep(self.startup)
        namespace, _, name = key
        url = f"{self.url}/apis/{api}/namespaces/{namespace}/{plural}/{name}/status"
        body = {"status": ready_status(obj, wanted)}
        async with self._session.patch(url, data=json.dumps(body),
                                       headers={"Content-Type": "application/merge-patch+json"}) as resp:
            if resp.status >= 400:
                log.debug("kubelet: %s answered %s", url, resp.status)
                return
        self._note(key, wanted)

    def _note(self, key: tuple, ready: int) -> None:
        if self.ready.get(key) == ready:
            return
        self.ready[key] = ready
        for endpoint in self._bindings.get(key, ()):
            endpoint.up = ready > 0
        self._changed.set()


class PodEndpoint:
    """A stand-in for a monitoring site's pods: Prometheus' readiness and query API on loopback.

    Healthy while :attr:`up` (its workload has ready replicas) and not :attr:`broken`.
    :attr:`garbage` answers the query API with HTML; :attr:`hang` never answers.
    """

    def __init__(self, name: str, *, job: str = "prometheus"):
        self.name = name
        self.job = job
        self.up = True
        self.broken = False
        self.garbage = False
        self.hang = False
        self.port: int | None = None
        self.requests = 0
        self._runner: aiohttp.web.AppRunner | None = None
        self.on_request: Callable[[], None] | None = None

    @property
    def healthy(self) -> bool:
        return self.up and not self.broken

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "PodEndpoint":
        """Listen (again, on the same port when it listened before)."""
        app = aiohttp.web.Application()
        app.router.add_get("/-/ready", self._ready)
        app.router.add_get("/-/healthy", self._ready)
        app.router.add_get("/api/v1/query", self._query)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", self.port or 0, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port picked when asked for 0
        return self

    async def stop(self) -> None:
        """Stop listening: connections are refused, as from a dead site."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "PodEndpoint":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _gate(self) -> None:
        self.requests += 1
        if self.on_request is not None:
            self.on_request()
        if self.hang:
            await asyncio.Event().wait()

    async def _ready(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        await self._gate()
        if self.healthy:
            return aiohttp.web.Response(text="Prometheus Server is Ready.\n")
        return aiohttp.web.Response(status=503, text="Service Unavailable\n")

    async def _query(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        await self._gate()
        if self.garbage:
            return aiohttp.web.Response(text="<html><body>It works!</body></html>", content_type="text/html")
        if not self.healthy:
            return aiohttp.web.Response(status=503, text="Service Unavailable\n")
        sample = {"metric": {"__name__": "up", "job": self.job, "site": self.name}, "value": [time.time(), "1"]}
        return aiohttp.web.json_response({"status": "success", "data": {"resultType": "vector", "result": [sample]}})
