"""HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz, /metrics (and /report for auditors).

Liveness answers while the event loop runs; readiness only once kopf has
started its watches (and, with peering, while this replica is active is
kopf's business, not the probe's).
"""
from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class HealthServer:
    def __init__(self, registry, ready, host: str = "0.0.0.0", port: int = 8080, report=None):
        self._registry = registry
        self._report = report  # async () -> HTML of the DR compliance report
        self._ready = ready
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self._report is not None:
            app.router.add_get("/report", self._report_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the real one when port=0

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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
        return web.Response(text=await self._report(), content_type="text/html", charset="utf-8")
