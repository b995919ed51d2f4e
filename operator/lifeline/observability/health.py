"""HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz, /metrics (and /report for auditors).

Liveness answers while the event loop runs; readiness only once kopf has
started its watches (and, with peering, while this replica is active is
kopf's business, not the probe's).

The probes say nothing and stay open. ``/metrics`` and ``/report`` tell who is backed up where and
how it went, so with ``callers`` (:class:`lifeline.observability.callers.KubeCallers`) each request
must carry a token the API server accepts, of someone allowed to get that path; without it, the
server listens on loopback only (:func:`check_exposure`). The report reads every audit record: it
is built at most once per ``report_ttl`` seconds and shared by the requests in between.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

REPORT_TTL = 60.0


class ExposureError(ValueError):
    """Unauthenticated /metrics and /report on an address other machines reach."""


def check_exposure(host: str, authenticated: bool) -> None:
    if authenticated:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ExposureError(f"/metrics and /report without authentication are served on loopback only, not on "
                            f"{host}: use --metrics-auth kubernetes, or --health-host 127.0.0.1")


class CachedPage:
    """The newest page, rebuilt when older than ``ttl``; concurrent requests wait for one build."""

    def __init__(self, build, ttl: float = REPORT_TTL, clock=time.monotonic):
        self._build, self._ttl, self._clock = build, ttl, clock
        self._page: str | None = None
        self._built_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            if self._page is None or self._clock() - self._built_at >= self._ttl:
                self._page = await self._build()
                self._built_at = self._clock()
            return self._page


class HealthServer:
    def __init__(self, registry, ready, host: str = "0.0.0.0", port: int = 8080, report=None, *,
                 callers=None, report_ttl: float = REPORT_TTL):
        check_exposure(host, callers is not None)
        self._registry = registry
        self._report = CachedPage(report, report_ttl) if report is not None else None  # async () -> HTML
        self._callers = callers
        self._ready = ready
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._guarded(self._metrics))
        if self._report is not None:
            app.router.add_get("/report", self._guarded(self._report_page))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the real one when port=0

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _guarded(self, handler):
        if self._callers is None:
            return handler

        async def guarded(request: web.Request) -> web.Response:
            verdict = await self._callers.judge(request.headers.get("Authorization"), request.path)
            if verdict.status != 200:
                headers = {"WWW-Authenticate": 'Bearer realm="lifeline"'} if verdict.status == 401 else None
                return web.json_response({"status": verdict.status, "message": verdict.reason},
                                         status=verdict.status, headers=headers)
            return await handler(request)
        return guarded

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._ready.is_set():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _report_page(self, _request: web.Request) -> web.Response:
        return web.Response(text=await self._report.get(), content_type="text/html", charset="utf-8")
