"""Health probes: HTTP, TCP connect, a PromQL query, and workload readiness through the API.

Each probe is a coroutine bounded by its check's timeout; a site's checks run
concurrently (:func:`run_checks`), so a slow or dead endpoint costs at most its
timeout and never blocks the operator's event loop. A probe never raises: every
failure becomes a :class:`~lifeline.failover.machine.CheckResult` with a reason.

Reasons: ``Healthy``; ``Unhealthy``, ``UnexpectedStatus``, ``BodyMismatch``, ``EmptyResult``,
``NotReady``, ``Timeout``, ``ConnectionFailed`` (the site may be down); and
``InvalidResponse``, ``QueryError``, ``NotFound`` (the check itself is wrong: see
:data:`MISCONFIGURED`).
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

import aiohttp

from lifeline.api.common import parse_duration
from lifeline.api.failoverplan import HealthCheck
from lifeline.kube import KubeError

from .machine import CheckResult

MISCONFIGURED = frozenset({"InvalidResponse", "QueryError", "NotFound"})
BODY_LIMIT = 1 << 20

WorkloadReader = Callable[[str, str], Awaitable[dict]]  # (kind, name) -> the workload as stored


class _Fail(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def new_session() -> aiohttp.ClientSession:
    """One session per plan: fresh connections per probe, as kubelet's probes make them."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))


async def run_checks(checks: Iterable[tuple[str, HealthCheck]], *, session: aiohttp.ClientSession,
                     readers: dict[str, WorkloadReader | None], now: datetime) -> list[CheckResult]:
    """Probe ``(site, check)`` pairs concurrently; results are stamped ``now`` (the round's start)."""
    return list(await asyncio.gather(*(
        probe(check, site, session=session, read_workload=readers.get(site), now=now) for site, check in checks
    )))


async def probe(check: HealthCheck, site: str, *, session: aiohttp.ClientSession,
                read_workload: WorkloadReader | None, now: datetime) -> CheckResult:
    timeout = parse_duration(check.timeout)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            if check.http is not None:
                message = await _http(check, session)
            elif check.tcp is not None:
                message = await _tcp(check)
            elif check.promql is not None:
                message = await _promql(check, session)
            else:
                message = await _workload(check, read_workload)
        ok, reason = True, "Healthy"
    except TimeoutError:
        ok, reason, message = False, "Timeout", f"no answer within {check.timeout}"
    except _Fail as exc:
        ok, reason, message = False, exc.reason, str(exc)
    except (aiohttp.ClientError, OSError) as exc:
        ok, reason, message = False, "ConnectionFailed", _describe(exc)
    latency = (time.perf_counter() - started) * 1000
    return CheckResult(site=site, check=check.name, ok=ok, time=now, reason=reason, message=message,
                       latency_ms=latency)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split(" [", 1)[0] if isinstance(exc, aiohttp.ClientConnectorError) else text


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    return await response.content.read(BODY_LIMIT)


async def _http(check: HealthCheck, session: aiohttp.ClientSession) -> str:
    spec = check.http
    async with session.get(spec.url, allow_redirects=False) as response:
        if response.status not in spec.expect_status:
            expected = ", ".join(map(str, spec.expect_status))
            raise _Fail("UnexpectedStatus", f"HTTP {response.status} (expected {expected})")
        if spec.body_contains is not None:
            body = (await _read_limited(response)).decode("utf-8", "replace")
            if spec.body_contains not in body:
                raise _Fail("BodyMismatch", f"HTTP {response.status}, but the body lacks {spec.body_contains!r}")
        return f"HTTP {response.status}"


async def _tcp(check: HealthCheck) -> str:
    spec = check.tcp
    _, writer = await asyncio.open_connection(spec.host, spec.port)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return f"connected to {spec.host}:{spec.port}"


async def _promql(check: HealthCheck, session: aiohttp.ClientSession) -> str:
    spec = check.promql
    url = spec.url.rstrip("/") + "/api/v1/query"
    async with session.get(url, params={"query": spec.query}) as response:
        raw = await _read_limited(response)
        status = response.status
    if status >= 500:
        raise _Fail("UnexpectedStatus", f"Prometheus answered HTTP {status}")
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
        snippet = raw[:80].decode("utf-8", "replace").strip() or "an empty body"
        raise _Fail("InvalidResponse",
                    f"{url} did not answer like the Prometheus HTTP API (HTTP {status}: {snippet!r}); "
                    f"set promql.url to the Prometheus base URL, for example http://prometheus:9090")
    if answer["status"] == "error":
        raise _Fail("QueryError", f"Prometheus refused the query {spec.query!r}: "
                                  f"{answer.get('errorType', 'error')}: {answer.get('error', '')}")
    data = answer.get("data")
    if not isinstance(data, dict) or "result" not in data:
        raise _Fail("InvalidResponse", f"{url} answered success without data.result; is it Prometheus?")
    result = data["result"]
    if data.get("resultType") in ("vector", "matrix"):
        if not result:
            raise _Fail("EmptyResult", f"{spec.query} returned no series")
        return f"{len(result)} series"
    return f"{data.get('resultType')} result"


async def _workload(check: HealthCheck, read: WorkloadReader | None) -> str:
    spec = check.workload
    if read is None:
        raise _Fail("ConnectionFailed", "the site's cluster is not reachable")
    try:
        obj = await read(spec.kind, spec.name)
    except KubeError as exc:
        if exc.status == 404:
            raise _Fail("NotFound", f"{spec.kind} {spec.name} does not exist in the site's namespace") from None
        raise _Fail("ConnectionFailed", str(exc)) from None
    ready, message = workload_ready(obj)
    if not ready:
        raise _Fail("NotReady", message)
    return message


def workload_ready(obj: dict) -> tuple[bool, str]:
    """Whether a Deployment or StatefulSet has all its (at least one) replicas ready, and why not."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    wanted = spec.get("replicas", 1)
    ready = status.get("readyReplicas") or 0
    if wanted == 0:
        return False, "scaled to zero"
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return False, f"{ready}/{wanted} ready; the controller has not seen generation {meta.get('generation')} yet"
    if ready < wanted:
        return False, f"{ready}/{wanted} ready"
    return True, f"{ready}/{wanted} ready"
