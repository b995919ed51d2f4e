"""Two real clusters, a real Prometheus on each site, and outages done for real.

The operator's own cluster is the session's ``cluster`` (``tests/cluster_fixtures.py``): the
FailoverPlan, the entry Service and the standby site (site-b) live in the test's namespace there,
the recommended placement, next to the standby. The primary site (site-a) is a second real control
plane (:func:`site_a`, one per session), which the operator reaches through a kubeconfig Secret
holding a token of a ServiceAccount of site A limited to the primary's namespace, inline.

Each site runs a Prometheus StatefulSet (:mod:`lifeline.devstack.monitoring`, Debian's
``prometheus`` under the process kubelet) and a Deployment standing for its Grafana (pause
containers: nothing probes it, it only shows that every workload is fenced and promoted with its
replica count). The checks query the Prometheus servers. An outage is real: site A's node stops
(its kubelet, and its Prometheus with it, while its API answers), one Prometheus hangs (SIGSTOP),
or site A goes dark altogether. Time on the plan's schedule moves only when a test calls
:func:`tick`; the clock starts at real now because the Pods run on real time.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lifeline.api import BY_KIND
from lifeline.clock import FrozenClock
from lifeline.devstack import live
from lifeline.devstack.children import reserved_port
from lifeline.devstack.cluster import MISSING, Cluster, kube_binary
from lifeline.devstack.monitoring import prometheus
from lifeline.devstack.operator_thread import until
from tests.realparts.fixtures import missing

from .sites import RESUME, container_pid, ready_replicas, remote_identity, signal_pod, stop_pod, wait_ready, \
    workload_path

PLANS = BY_KIND["FailoverPlan"]
PAUSE = "registry.k8s.io/pause:3.10"
HOLD_GATE = "lifeline.test/hold"  # a scheduling gate: the standby's Pods wait until a test lifts it
PRIMARY = (("StatefulSet", "prometheus-a", 1), ("Deployment", "grafana-a", 2))
STANDBY = (("StatefulSet", "prometheus-b"), ("Deployment", "grafana-b"))


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


# ---- site A: one control plane per session, however many modules import the fixture

_SITE: dict = {}


@pytest.fixture(scope="session")
def site_a(tmp_path_factory):
    """The primary site's own control plane (etcd, API server, controllers, a process kubelet).

    Modules outside tests/failover import this fixture, which makes a definition per module; they
    share one cluster, stopped when the last of them is done.
    """
    if kube_binary() is None:
        missing(MISSING)
    if "cluster" not in _SITE:
        site = Cluster(tmp_path_factory.mktemp("site-a"), name="site-a")
        site.start()
        _SITE.update(cluster=site, users=0)
    _SITE["users"] += 1
    try:
        yield _SITE["cluster"]
    finally:
        _SITE["users"] -= 1
        if not _SITE["users"]:
            _SITE.pop("cluster").stop()


# ---- one test's world


@dataclass
class World:
    """Everything a failover test drives: the test's namespace (plan, standby, Service) and site A."""

    kube: object  # tests.live_kube.LiveKube on the operator's cluster
    site: Cluster  # site A
    primary_ns: str  # in site A
    primary_url: str
    standby_url: str
    remote_user: str  # who the operator is in site A
    clock: FrozenClock
    tmp: Path
    hung: list[int] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return self.kube.namespace

    def plan(self, name: str = "icu", **overrides) -> dict:
        return plan_body(name, self.primary_url, self.standby_url, primary_ns=self.primary_ns, standby_ns=self.ns,
                         **overrides)

    def stored_plan(self, name: str = "icu") -> dict | None:
        return self.kube.stored(PLANS, None, name)

    def status(self, name: str = "icu") -> dict:
        return (self.stored_plan(name) or {}).get("status") or {}

    def primary_replicas(self, kind: str = "StatefulSet", name: str = "prometheus-a") -> int:
        return self.site.request("GET", workload_path(self.primary_ns, kind, name))["spec"]["replicas"]

    def standby_replicas(self, kind: str = "StatefulSet", name: str = "prometheus-b") -> int:
        return self.kube.request("GET", workload_path(self.ns, kind, name))["spec"]["replicas"]

    def replicas(self) -> tuple[dict, dict]:
        """spec.replicas of every workload: (site A's, site B's), by "Kind/name"."""
        a = {f"{k}/{n}": self.primary_replicas(k, n) for k, n, _ in PRIMARY}
        b = {f"{k}/{n}": self.standby_replicas(k, n) for k, n in STANDBY}
        return a, b

    def selector(self) -> dict:
        return self.kube.stored("services", None, "monitoring-entry")["spec"]["selector"]

    async def create(self, body: dict) -> dict:
        """Create through the API and its admission webhook, as kubectl would."""
        return await asyncio.to_thread(self.kube.create, body)

    async def patch_spec(self, name: str, patch: dict) -> dict:
        return await asyncio.to_thread(self.kube.patch, PLANS, name, {"spec": patch})

    def events(self, name: str = "icu") -> list[dict]:
        return self.kube.events(name)

    # -- what the operator did in site A (its audit log: every write, whoever made it)

    def remote_mark(self) -> int:
        return self.site.audit_position()

    def remote_writes(self, since: int = 0, resource: str | None = None, name: str | None = None) -> list[tuple]:
        """(verb, resource, name) of the operator's writes in site A since audit line ``since``."""
        out = []
        for e in self.site.writes(self.remote_user, since=since):
            ref = e.get("objectRef") or {}
            if (resource is None or ref.get("resource") == resource) and (name is None or ref.get("name") == name):
                out.append((e["verb"], ref.get("resource"), ref.get("name")))
        return out

    # -- outages, for real

    def node_down(self) -> None:
        """Site A's node fails: its kubelet stops and its Pods' processes die; its API still answers."""
        self.site.stop_component("kubelet")

    def node_up(self) -> None:
        """Site A's node is back: its kubelet registers and runs what is bound to it again."""
        self.site.start_component("kubelet")

    def hang(self, namespace: str | None = None, pod: str = "prometheus-a-0", cluster=None) -> None:
        """The Prometheus process stops answering (SIGSTOP); connections queue, probes time out."""
        pid = container_pid(cluster or self.site, namespace or self.primary_ns, pod)
        self.hung.append(pid)
        stop_pod(pid)

    def resume(self) -> None:
        """Every hung process answers again (SIGCONT)."""
        while self.hung:
            signal_pod(self.hung.pop(), RESUME)

    def hold_standby(self) -> None:
        """The standby's Pods, once created, wait at a scheduling gate: a promotion stops at AwaitReady."""
        gate = {"spec": {"template": {"spec": {"schedulingGates": [{"name": HOLD_GATE}]}}}}
        for kind, name in STANDBY:
            self.kube.patch(kind.lower() + "s", name, gate)

    def release_standby(self) -> int:
        """Lift the gate from every held Pod (as a scheduler plugin or a person would); how many."""
        held = [p["metadata"]["name"] for p in self.kube.objects("pods")
                if any(g.get("name") == HOLD_GATE for g in p["spec"].get("schedulingGates") or [])]
        for pod in held:
            self.kube.patch("pods", pod, {"spec": {"schedulingGates": None}})
        return len(held)

    def standby_held(self) -> int:
        return sum(1 for p in self.kube.objects("pods")
                   if any(g.get("name") == HOLD_GATE for g in p["spec"].get("schedulingGates") or []))

    def restore_site(self) -> None:
        """Whatever a test did to site A, undone: the next test starts from a running site."""
        self.resume()
        restore_site(self.site)


def restore_site(site: Cluster) -> None:
    if not site.running("apiserver"):
        site.come_back()
    elif not site.running("kubelet"):
        site.start_component("kubelet")


def plan_body(name: str, primary_url: str, standby_url: str, *, primary_ns: str, standby_ns: str,
              mode: str = "Automatic", window: str = "60s", interval: str = "10s", timeout: str = "2s",
              cap: int = 1, fencing: str = "ScaleToZero", secret: str = "site-a-kubeconfig",
              primary_checks: list | None = None, standby_checks: list | None = None, **spec) -> dict:
    def http(url):
        return {"name": "prometheus-ready", "interval": interval, "timeout": timeout,
                "http": {"url": f"{url}/-/ready"}}

    return {
        "apiVersion": PLANS.api_version, "kind": "FailoverPlan", "metadata": {"name": name},
        "spec": {
            "tier": "A", "mode": mode, "breachWindow": window, "fencing": fencing,
            "primary": {"name": "site-a", "namespace": primary_ns,
                        "cluster": {"kubeconfigSecret": {"name": secret, "key": "kubeconfig"}},
                        "workloads": [{"kind": k, "name": n} for k, n, _ in PRIMARY],
                        "healthChecks": primary_checks or [http(primary_url)]},
            "standby": {"name": "site-b", "namespace": standby_ns,
                        "workloads": [{"kind": k, "name": n} for k, n in STANDBY],
                        "healthChecks": standby_checks or [http(standby_url)]},
            "traffic": {"service": {"name": "monitoring-entry", "namespace": standby_ns,
                                    "primarySelector": {"site": "site-a"}, "standbySelector": {"site": "site-b"}}},
            "maxFailovers": {"count": cap, "window": "24h"},
            **spec,
        },
    }


def grafana(name: str, namespace: str, replicas: int, site: str) -> tuple[str, dict]:
    """A Deployment standing for the site's Grafana: pause containers, ready a second after they start.

    The readiness probe is there for the process kubelet: a container without one is reported ready
    in a status write that can race the kubelet's own first write of the Pod and lose, which
    leaves the Pod unready for good (PodWorker.report sends concurrent PATCHes unordered).
    """
    labels = {"app": name}
    ready = {"exec": {"command": ["true"]}, "initialDelaySeconds": 1, "periodSeconds": 5}
    return workload_path(namespace, "Deployment"), {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"site": site}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": {**labels, "site": site}},
                              "spec": {"terminationGracePeriodSeconds": 1, "automountServiceAccountToken": False,
                                       "containers": [{"name": "grafana", "image": PAUSE, "readinessProbe": ready}]}}}}


def two_ports() -> tuple[int, int]:
    """Ports for the two Prometheus servers, below the ephemeral range: site B's is bound only when a
    failover starts it, and until then any outgoing connection could take a port from that range."""
    a = reserved_port()
    while (b := reserved_port()) == a:
        pass
    return a, b


@pytest.fixture
def world(kube, site_a, tmp_path):
    """Site A (primary, the other cluster, running), site B (standby, this cluster, scaled to zero),
    the entry Service selecting site A, and the Secret that reaches site A."""
    site = site_a
    restore_site(site)  # a test before this one may have failed with site A down
    primary_ns = f"{kube.namespace}-a"
    port_a, port_b = two_ports()
    live.namespace(site, primary_ns)
    try:
        for path, body in prometheus("prometheus-a", primary_ns, port_a, labels={"site": "site-a"}):
            site.request("POST", path, body)
        site.request("POST", *grafana("grafana-a", primary_ns, 2, "site-a"))
        remote_user, remote_config = remote_identity(site, primary_ns)
        for path, body in prometheus("prometheus-b", kube.namespace, port_b, labels={"site": "site-b"}, replicas=0):
            kube.request("POST", path, body)
        kube.request("POST", *grafana("grafana-b", kube.namespace, 0, "site-b"))
        kube.seed("v1/services", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "monitoring-entry"},
                                  "spec": {"selector": {"site": "site-a"}, "ports": [{"port": 9090}]}})
        kube.secret("site-a-kubeconfig", {"kubeconfig": remote_config})
        for kind, name, replicas in PRIMARY:
            wait_ready(site, primary_ns, kind, name, replicas)
        w = World(kube, site, primary_ns, f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}", remote_user,
                  FrozenClock(now()), tmp_path)
        yield w
        w.restore_site()
    finally:
        with contextlib.suppress(Exception):
            site.request("DELETE", f"/api/v1/namespaces/{primary_ns}")


@contextlib.asynccontextmanager
async def operator(world: World, **options):
    """The real operator in this process, as the chart's ServiceAccount, on the test's clock."""
    async with world.kube.operator(clock=world.clock, **options) as ctx:
        yield ctx


def rounds(ctx, namespace: str, name: str = "icu") -> float:
    return ctx.metrics.registry.get_sample_value(
        "lifeline_failover_probe_rounds_total", {"namespace": namespace, "name": name}) or 0.0


async def tick(world: World, ctx, seconds: float = 10, name: str = "icu", times: int = 1) -> None:
    """Move the clock ``seconds`` forward ``times`` times, each time until the plan's loop has probed."""
    for _ in range(times):
        before = rounds(ctx, world.ns, name)
        world.clock.advance(seconds)
        await until(lambda: rounds(ctx, world.ns, name) > before, timeout=15)


async def phase(world: World, wanted: str, name: str = "icu", timeout: float = 30) -> dict:
    return await world.kube.wait_for(
        lambda: world.status(name).get("phase") == wanted and world.status(name), timeout=timeout)


def condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


async def wait_condition(world: World, type_: str, status: str, reason: str | None = None, name: str = "icu",
                         timeout: float = 15) -> dict:
    def ok():
        c = condition(world.status(name), type_)
        return c if c and c["status"] == status and (reason is None or c["reason"] == reason) else None
    return await world.kube.wait_for(ok, timeout=timeout)


async def event_reasons(world: World, *including: str, name: str = "icu", timeout: float = 15) -> list[str]:
    """The reasons of the plan's Events, once they include ``including`` (Events follow the status write)."""
    def found():
        reasons = [e.get("reason") for e in world.events(name)]
        return reasons if set(including) <= set(reasons) else None
    return await world.kube.wait_for(found, timeout=timeout)



__all__ = ["PLANS", "World", "condition", "event_reasons", "operator", "phase", "plan_body", "ready_replicas",
           "site_a", "tick", "until", "wait_condition", "world"]
