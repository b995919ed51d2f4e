"""Finding 7 of the security review, as the attacks: anyone on the cluster's network could read who is
backed up where from ``/metrics`` and ``/report``, and rebuild the report from every audit record with
each request. Now the API server says who calls (TokenReview) and whether they may (a
SubjectAccessReview on the path), with the operator running as the chart's ServiceAccount, so the
chart's RBAC is what allows those reviews."""
from __future__ import annotations

import secrets

import aiohttp
import pytest

from lifeline.devstack import install
from lifeline.observability.callers import ALLOWED_FOR, REFUSED_FOR, KubeCallers
from lifeline.observability.health import CachedPage, ExposureError, HealthServer

pytestmark = pytest.mark.slow


async def status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


@pytest.fixture
def report_reader(cluster, chart, namespace):
    """A token of a ServiceAccount bound to ``<release>-report-reader``; the binding removed after."""
    binding = f"report-reader-{secrets.token_hex(3)}"
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "auditor"}})
    cluster.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{chart.name}-report-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "auditor", "namespace": namespace}]})
    yield install.service_account_token(cluster.request, namespace, "auditor")
    cluster.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}")


async def test_only_callers_the_api_server_allows_read_metrics_and_report(kube, cluster, chart, report_reader):
    cluster.request("POST", f"/api/v1/namespaces/{kube.namespace}/serviceaccounts", {"metadata": {"name": "nosy"}})
    nosy = install.service_account_token(cluster.request, kube.namespace, "nosy")
    scraper = install.metrics_token(cluster.request, chart)
    async with kube.operator(metrics_auth="kubernetes") as ctx:
        base = f"http://127.0.0.1:{ctx.health_port}"
        assert await status(f"{base}/metrics") == 401
        assert await status(f"{base}/report") == 401
        assert await status(f"{base}/metrics", "not-a-token") == 401
        assert await status(f"{base}/metrics", nosy) == 403  # a real account, with no binding
        assert await status(f"{base}/report", scraper) == 403  # metrics are not the report
        assert await status(f"{base}/metrics", scraper) == 200
        assert await status(f"{base}/report", report_reader) == 200
        assert await status(f"{base}/metrics", report_reader) == 403
        assert await status(f"{base}/healthz") == 200 and await status(f"{base}/readyz") == 200  # the probes


async def test_unauthenticated_metrics_are_refused_off_loopback():
    with pytest.raises(ExposureError, match="loopback only"):
        HealthServer(None, None, "0.0.0.0", 0)
    HealthServer(None, None, "127.0.0.1", 0)  # loopback: allowed


class Reviews:
    """The two questions KubeCallers asks the API server, answered from a table, counted."""

    def __init__(self, tokens: dict[str, str], allowed: set[tuple[str, str]]):
        self.tokens, self.allowed, self.asked, self.reviewed = tokens, allowed, 0, 0

    async def token_review(self, token: str):
        self.asked += 1
        return {"username": self.tokens[token], "groups": []} if token in self.tokens else None

    async def path_review(self, *, user, groups, path, uid=None, extra=None, verb="get"):
        self.reviewed += 1
        return (user, path) in self.allowed


async def test_answers_are_kept_briefly_and_refusals_more_briefly():
    now = [0.0]
    reviews = Reviews({"t1": "prometheus", "t2": "intruder"}, {("prometheus", "/metrics")})
    callers = KubeCallers(reviews, clock=lambda: now[0])
    assert (await callers.judge("Bearer t1", "/metrics")).status == 200
    assert (await callers.judge("Bearer t1", "/metrics")).status == 200
    assert (reviews.asked, reviews.reviewed) == (1, 1), "a scrape every few seconds asks the API server once a minute"
    assert (await callers.judge("Bearer t2", "/metrics")).status == 403
    reviews.allowed.add(("intruder", "/metrics"))  # a binding made now counts once the refusal expires
    now[0] = REFUSED_FOR - 0.001
    assert (await callers.judge("Bearer t2", "/metrics")).status == 403
    now[0] = REFUSED_FOR
    assert (await callers.judge("Bearer t2", "/metrics")).status == 200
    reviews.allowed.discard(("prometheus", "/metrics"))  # and a removed one once the answer expires
    now[0] = ALLOWED_FOR
    assert (await callers.judge("Bearer t1", "/metrics")).status == 403
    assert (await callers.judge("Basic dTpw", "/metrics")).status == 401
    assert (await callers.judge(None, "/metrics")).status == 401


async def test_the_report_is_built_once_per_period_not_per_request():
    now, builds = [0.0], []

    async def build():
        builds.append(now[0])
        return f"<p>report {len(builds)}</p>"
    page = CachedPage(build, ttl=60, clock=lambda: now[0])
    assert [await page.get() for _ in range(5)] == ["<p>report 1</p>"] * 5
    now[0] = 59.9
    assert await page.get() == "<p>report 1</p>"
    now[0] = 60
    assert await page.get() == "<p>report 2</p>" and builds == [0.0, 60]
