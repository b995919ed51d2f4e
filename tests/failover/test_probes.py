"""Health probes against real servers on loopback: what counts as healthy, and why not.

The servers are small aiohttp apps in this process that answer as Prometheus does, or as a broken,
hung or wrong server would: what a probe makes of each answer is the unit under test here. The
failover tests (test_operator_failover.py) probe real Prometheus servers on real clusters.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import aiohttp.web
import pytest

from lifeline.api.failoverplan import HealthCheck
from lifeline.devstack.children import free_port
from lifeline.failover import probes
from lifeline.kube import KubeError

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def check(**kind) -> HealthCheck:
    return HealthCheck.model_validate({"name": "c", "interval": "10s", "timeout": "1s", **kind})


async def run(c: HealthCheck, read=None):
    async with probes.new_session() as session:
        return await probes.probe(c, "site-a", session=session, read_workload=read, now=NOW)


class Endpoint:
    """Prometheus' readiness and query API on loopback; :attr:`broken` answers 503, :attr:`garbage`
    answers the query API with HTML, :attr:`hang` never answers."""

    def __init__(self):
        self.broken = self.garbage = self.hang = False
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _gate(self) -> None:
        if self.hang:
            await asyncio.Event().wait()

    async def ready(self, request):
        await self._gate()
        if self.broken:
            return aiohttp.web.Response(status=503, text="Service Unavailable\n")
        return aiohttp.web.Response(text="Prometheus Server is Ready.\n")

    async def query(self, request):
        await self._gate()
        if self.garbage:
            return aiohttp.web.Response(text="<html><body>It works!</body></html>", content_type="text/html")
        if self.broken:
            return aiohttp.web.Response(status=503, text="Service Unavailable\n")
        sample = {"metric": {"__name__": "up", "job": "prometheus"}, "value": [time.time(), "1"]}
        return aiohttp.web.json_response({"status": "success", "data": {"resultType": "vector", "result": [sample]}})


@pytest.fixture
async def endpoint():
    ep = Endpoint()
    app = aiohttp.web.Application()
    app.router.add_get("/-/ready", ep.ready)
    app.router.add_get("/api/v1/query", ep.query)
    runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ep.port = site._server.sockets[0].getsockname()[1]
    try:
        yield ep
    finally:
        await runner.cleanup()


async def test_http_healthy_unhealthy_and_body_match(endpoint):
    result = await run(check(http={"url": f"{endpoint.url}/-/ready", "bodyContains": "Ready"}))
    assert (result.ok, result.reason, result.time) == (True, "Healthy", NOW) and result.latency_ms >= 0
    endpoint.broken = True
    result = await run(check(http={"url": f"{endpoint.url}/-/ready"}))
    assert (result.ok, result.reason, result.message) == (False, "UnexpectedStatus", "HTTP 503 (expected 200)")
    endpoint.broken = False
    result = await run(check(http={"url": f"{endpoint.url}/-/ready", "bodyContains": "Healthy!"}))
    assert (result.ok, result.reason) == (False, "BodyMismatch")
    result = await run(check(http={"url": f"{endpoint.url}/-/ready", "expectStatus": [503]}))
    assert result.reason == "UnexpectedStatus"


async def test_a_dead_endpoint_fails_fast_and_a_hung_one_within_its_timeout(endpoint):
    endpoint.hang = True
    started = time.monotonic()
    hung, dead = await asyncio.gather(
        run(check(http={"url": f"{endpoint.url}/-/ready"}, timeout="300ms")),
        run(check(http={"url": f"http://127.0.0.1:{free_port()}/-/ready"})),
    )
    assert (hung.reason, hung.message) == ("Timeout", "no answer within 300ms")
    assert dead.reason == "ConnectionFailed" and "127.0.0.1" in dead.message
    assert time.monotonic() - started < 1.0, "probes run concurrently, each bounded by its timeout"


async def test_tcp_connect(endpoint):
    assert (await run(check(tcp={"host": "127.0.0.1", "port": endpoint.port}))).ok
    result = await run(check(tcp={"host": "127.0.0.1", "port": free_port()}))
    assert (result.ok, result.reason) == (False, "ConnectionFailed")


async def test_promql_series_empty_down_and_garbage(endpoint):
    query = {"promql": {"url": endpoint.url, "query": 'up{job="prometheus"} == 1'}}
    result = await run(check(**query))
    assert (result.ok, result.message) == (True, "1 series")
    endpoint.broken = True
    assert (await run(check(**query))).reason == "UnexpectedStatus"
    endpoint.broken = False
    endpoint.garbage = True
    result = await run(check(**query))
    assert result.reason == "InvalidResponse" and result.reason in probes.MISCONFIGURED
    assert "did not answer like the Prometheus HTTP API" in result.message and "<html>" in result.message


async def test_promql_query_errors_and_empty_results():
    async def query(request):
        q = request.query["query"]
        if q == "bad(":
            return aiohttp.web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400)
        return aiohttp.web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
    try:
        bad = await run(check(promql={"url": url, "query": "bad("}))
        assert bad.reason == "QueryError" and "bad_data: parse error" in bad.message
        empty = await run(check(promql={"url": url, "query": "up == 1"}))
        assert (empty.reason, empty.message) == ("EmptyResult", "up == 1 returned no series")
    finally:
        await runner.cleanup()


async def test_workload_readiness_through_the_api():
    def workload(replicas, ready, generation=1, observed=1):
        return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
                "status": {"readyReplicas": ready, "observedGeneration": observed}}

    async def reader_for(obj):
        async def read(kind, name):
            if obj is None:
                raise KubeError("not found", 404)
            if obj == "down":
                raise KubeError("connection refused", 0)
            return obj
        return read

    c = check(workload={"kind": "StatefulSet", "name": "prometheus-a"})
    assert (await run(c, await reader_for(workload(2, 2)))).ok
    assert (await run(c, await reader_for(workload(2, 1)))).message == "1/2 ready"
    assert (await run(c, await reader_for(workload(0, 0)))).message == "scaled to zero"
    assert "has not seen generation 2" in (await run(c, await reader_for(workload(2, 2, 2, 1)))).message
    assert (await run(c, await reader_for(None))).reason == "NotFound"
    assert (await run(c, await reader_for("down"))).reason == "ConnectionFailed"
    assert (await run(c, None)).reason == "ConnectionFailed"
