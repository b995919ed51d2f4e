"""Two clusters, a fake kubelet in each, and the monitoring endpoints their pods serve.

The operator's own cluster is the ``emulator`` fixture (where the FailoverPlan, the
standby site and the entry Service live: the recommended placement, next to the
standby); the primary site is in a second emulator reached through a kubeconfig
Secret. Health endpoints are real aiohttp servers on 127.0.0.1 whose health follows
their workload's readiness (the fake kubelet) and an outage switch.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import kubernetes
import pytest
import yaml

from lifeline.api import BY_KIND
from lifeline.clock import FrozenClock
from lifeline.devstack.emulator import make_emulator, write_kubeconfig
from lifeline.devstack.kubelet import FakeKubelet, PodEndpoint
from lifeline.devstack.operator_thread import running_operator, until
from tests.served import Served

NS = "hospital"  # the plan, the Service, and the standby site's namespace
PRIMARY_NS = "monitoring"  # in the other cluster
START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)
PLANS = BY_KIND["FailoverPlan"]


@dataclass
class Cluster:
    emulator: object
    url: str
    kubelet: FakeKubelet
    kubeconfig: Path


@dataclass
class World:
    """Everything a failover test drives."""

    own: Cluster
    remote: Cluster
    primary: PodEndpoint
    standby: PodEndpoint
    clock: FrozenClock
    tmp: Path
    remote_server: "Served"

    def plan(self, name: str = "icu", **overrides) -> dict:
        return plan_body(name, self.primary.url, self.standby.url, **overrides)

    def stored_plan(self, name: str = "icu") -> dict | None:
        return self.own.emulator.stored(PLANS.resource, NS, name)

    def status(self, name: str = "icu") -> dict:
        return (self.stored_plan(name) or {}).get("status") or {}

    def workload(self, cluster: Cluster, namespace: str, kind: str, name: str) -> dict:
        plural = "apps/v1/deployments" if kind == "Deployment" else "apps/v1/statefulsets"
        return cluster.emulator.stored(plural, namespace, name)

    def primary_replicas(self) -> int:
        return self.workload(self.remote, PRIMARY_NS, "StatefulSet", "prometheus-a")["spec"]["replicas"]

    def standby_replicas(self) -> int:
        return self.workload(self.own, NS, "StatefulSet", "prometheus-b")["spec"]["replicas"]

    def selector(self) -> dict:
        return self.own.emulator.stored("v1/services", NS, "monitoring-entry")["spec"]["selector"]

    async def create(self, body: dict) -> dict:
        """Create through the API, as kubectl would."""
        return await asyncio.to_thread(self._custom().create_namespaced_custom_object, PLANS.group,
                                       PLANS.version, NS, PLANS.plural, body)

    async def patch_spec(self, name: str, patch: dict) -> dict:
        return await asyncio.to_thread(self._custom().patch_namespaced_custom_object, PLANS.group,
                                       PLANS.version, NS, PLANS.plural, name, {"spec": patch})

    async def events(self, name: str = "icu") -> list:
        core = kubernetes.client.CoreV1Api(self._client())
        items = (await asyncio.to_thread(core.list_namespaced_event, NS)).items
        return [e for e in items if e.involved_object.name == name]

    def _client(self):
        if not hasattr(self, "_api_client"):
            self._api_client = kubernetes.config.new_client_from_config(config_file=str(self.own.kubeconfig))
        return self._api_client

    def _custom(self):
        return kubernetes.client.CustomObjectsApi(self._client())


def plan_body(name: str, primary_url: str, standby_url: str, *, mode: str = "Automatic", window: str = "60s",
              interval: str = "10s", cap: int = 1, fencing: str = "ScaleToZero", secret: str = "site-a-kubeconfig",
              primary_checks: list | None = None, standby_checks: list | None = None, **spec) -> dict:
    def http(url):
        return {"name": "prometheus-ready", "interval": interval, "timeout": "2s", "http": {"url": f"{url}/-/ready"}}

    return {
        "apiVersion": PLANS.api_version, "kind": "FailoverPlan", "metadata": {"name": name},
        "spec": {
            "tier": "A", "mode": mode, "breachWindow": window, "fencing": fencing,
            "primary": {"name": "site-a", "namespace": PRIMARY_NS,
                        "cluster": {"kubeconfigSecret": {"name": secret, "key": "kubeconfig"}},
                        "workloads": [{"kind": "StatefulSet", "name": "prometheus-a"},
                                      {"kind": "Deployment", "name": "grafana-a"}],
                        "healthChecks": primary_checks or [http(primary_url)]},
            "standby": {"name": "site-b", "namespace": NS,
                        "workloads": [{"kind": "StatefulSet", "name": "prometheus-b"},
                                      {"kind": "Deployment", "name": "grafana-b"}],
                        "healthChecks": standby_checks or [http(standby_url)]},
            "traffic": {"service": {"name": "monitoring-entry", "namespace": NS,
                                    "primarySelector": {"site": "site-a"}, "standbySelector": {"site": "site-b"}}},
            "maxFailovers": {"count": cap, "window": "24h"},
            **spec,
        },
    }


def workload(kind: str, name: str, namespace: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "prom/prometheus"}]}}}}


def kubeconfig_secret(name: str, kubeconfig: Path) -> dict:
    data = base64.b64encode(kubeconfig.read_bytes()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "type": "Opaque", "data": {"kubeconfig": data}}


@pytest.fixture
async def world(emulator, kubeconfig, tmp_path):
    """Site A (primary, other cluster, up), site B (standby, this cluster, scaled to zero), the Service."""
    own_emulator = emulator
    own_emulator.seed("v1/namespaces", {"metadata": {"name": NS}})
    remote_emulator = make_emulator()
    remote_emulator.seed("v1/namespaces", {"metadata": {"name": PRIMARY_NS}})
    for kind, name, replicas in (("StatefulSet", "prometheus-a", 2), ("Deployment", "grafana-a", 1)):
        remote_emulator.seed(f"apps/v1/{kind.lower()}s", workload(kind, name, PRIMARY_NS, replicas))
    for kind, name in (("StatefulSet", "prometheus-b"), ("Deployment", "grafana-b")):
        own_emulator.seed(f"apps/v1/{kind.lower()}s", workload(kind, name, NS, 0))
    own_emulator.seed("v1/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "monitoring-entry", "namespace": NS},
        "spec": {"selector": {"site": "site-a"}, "ports": [{"port": 9090}]}})
    own_url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    served = Served(remote_emulator)
    remote_url = await served.up()
    remote_config = write_kubeconfig(remote_url, tmp_path / "site-a.kubeconfig")
    try:
        async with FakeKubelet(own_url) as own_kubelet, FakeKubelet(remote_url) as remote_kubelet:
            own = Cluster(own_emulator, own_url, own_kubelet, kubeconfig)
            remote = Cluster(remote_emulator, remote_url, remote_kubelet, remote_config)
            own_emulator.seed("v1/secrets", kubeconfig_secret("site-a-kubeconfig", remote.kubeconfig))
            primary, standby = PodEndpoint("site-a"), PodEndpoint("site-b")
            remote.kubelet.bind(PRIMARY_NS, "StatefulSet", "prometheus-a", primary)
            own.kubelet.bind(NS, "StatefulSet", "prometheus-b", standby)
            async with primary, standby:
                await remote.kubelet.wait_ready(PRIMARY_NS, "StatefulSet", "prometheus-a", 2)
                w = World(own, remote, primary, standby, FrozenClock(START), tmp_path, served)
                yield w
                if hasattr(w, "_api_client"):
                    w._api_client.close()
    finally:
        await served.down()


@contextlib.asynccontextmanager
async def operator(world: World):
    async with running_operator(world.own.kubeconfig, world.own.emulator, clock=world.clock,
                                namespaces=[NS]) as ctx:
        yield ctx


def rounds(ctx, name: str = "icu") -> float:
    return ctx.metrics.registry.get_sample_value(
        "lifeline_failover_probe_rounds_total", {"namespace": NS, "name": name}) or 0.0


async def tick(world: World, ctx, seconds: float = 10, name: str = "icu", times: int = 1) -> None:
    """Move the clock ``seconds`` forward ``times`` times, each time until the plan's loop has probed."""
    for _ in range(times):
        before = rounds(ctx, name)
        world.clock.advance(seconds)
        await until(lambda: rounds(ctx, name) > before, timeout=10)


async def phase(world: World, wanted: str, name: str = "icu", timeout: float = 10) -> dict:
    return await world.own.emulator.wait_for(
        lambda: world.status(name).get("phase") == wanted and world.status(name), timeout=timeout)


def condition(status: dict, type_: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), None)


async def wait_condition(world: World, type_: str, status: str, reason: str | None = None, name: str = "icu",
                         timeout: float = 10) -> dict:
    def ok():
        c = condition(world.status(name), type_)
        return c if c and c["status"] == status and (reason is None or c["reason"] == reason) else None
    return await world.own.emulator.wait_for(ok, timeout=timeout)


__all__ = ["NS", "PRIMARY_NS", "START", "World", "condition", "operator", "phase", "plan_body", "tick",
           "wait_condition", "until", "asyncio"]


async def event_reasons(world: World, *including: str, name: str = "icu", timeout: float = 10) -> list[str]:
    """The reasons of the plan's Events, once they include ``including`` (Events follow the status write)."""
    async with asyncio.timeout(timeout):
        while True:
            reasons = [e.reason for e in await world.events(name)]
            if set(including) <= set(reasons):
                return reasons
            await asyncio.sleep(0.05)
