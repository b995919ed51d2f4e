"""Demo scene: the monitoring stack's primary site goes dark; the standby takes over; then failback.

With the emulator and the operator already running (``lifeline demo`` starts them), the scene

1. starts a second API emulator as the primary site's cluster ("site-a"; reached through a
   kubeconfig Secret) and uses the operator's own cluster as the standby ("site-b") -- the
   recommended placement: the operator survives the primary's loss;
2. runs a fake kubelet in each cluster and, for each site, a loopback endpoint serving
   Prometheus' ``/-/ready`` and query API while that site's workload has ready replicas;
3. applies a FailoverPlan with a *short* breach window (5 s instead of the 180 s default, so
   the demo takes seconds; it says so) and waits until the primary is healthy;
4. takes site A dark -- its endpoint fails and its cluster's API stops answering -- and waits:
   after the window the operator fails over without being able to fence site A, promotes
   site B, switches the Service, verifies B's checks, and records the achieved RTO;
5. brings site A back: the operator fences it (scales it to zero) before anything else;
6. requests a failback (as ``lifeline failover back`` does) and shows the planned switchover.

It returns the figures it printed. Wall time: about 15 s.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from lifeline.api import BY_KIND

NAMESPACE = "hospital"  # the plan, the entry Service and the standby site (the operator's cluster)
REMOTE_NAMESPACE = "monitoring"  # the primary site, in the other cluster
PLAN = "icu-failover"
PLANS = BY_KIND["FailoverPlan"]


def plan(primary_url: str, standby_url: str, window: str, interval: str) -> dict:
    def checks(url: str) -> list[dict]:
        return [
            {"name": "prometheus-ready", "interval": interval, "timeout": interval, "http": {"url": f"{url}/-/ready"}},
            {"name": "prometheus-up", "interval": interval, "timeout": interval,
             "promql": {"url": url, "query": 'up{job="prometheus"} == 1'}},
        ]

    return {
        "apiVersion": PLANS.api_version, "kind": "FailoverPlan",
        "metadata": {"name": PLAN, "labels": {"app.kubernetes.io/part-of": "icu-monitoring"}},
        "spec": {
            "tier": "A", "mode": "Automatic", "breachWindow": window, "switchoverEstimate": "30s",
            "fencing": "Both",
            "primary": {"name": "site-a", "namespace": REMOTE_NAMESPACE,
                        "cluster": {"kubeconfigSecret": {"name": "site-a-kubeconfig", "key": "kubeconfig"}},
                        "workloads": [{"kind": "StatefulSet", "name": "prometheus"},
                                      {"kind": "Deployment", "name": "grafana"}],
                        "healthChecks": checks(primary_url)},
            "standby": {"name": "site-b", "namespace": NAMESPACE,
                        "workloads": [{"kind": "StatefulSet", "name": "prometheus-standby"},
                                      {"kind": "Deployment", "name": "grafana-standby"}],
                        "healthChecks": checks(standby_url)},
            "traffic": {"service": {"name": "monitoring", "namespace": NAMESPACE,
                                    "primarySelector": {"site": "site-a"}, "standbySelector": {"site": "site-b"}}},
            "maxFailovers": {"count": 1, "window": "24h"},
        },
    }


def _workload(kind: str, name: str, namespace: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "prom/prometheus:v3"}]}}}}


def _seed(emulator, resource: str, body: dict) -> None:
    meta = body["metadata"]
    if emulator.stored(resource, meta.get("namespace"), meta["name"]) is None:
        emulator.seed(resource, body)


async def run(emulator, kubeconfig, *args, window: str = "5s", interval: str = "500ms",
              startup: float = 0.5, timeout: float = 30.0) -> dict:
    """Call as ``run(emulator, kubeconfig, say)`` or ``run(emulator, kubeconfig, workdir, say)``."""
    from lifeline.devstack.emulator import make_emulator, serve, write_kubeconfig
    from lifeline.devstack.kubelet import FakeKubelet, PodEndpoint
    from lifeline.kube import Kube

    workdir = Path(args[0]) if len(args) == 2 else Path(kubeconfig).parent
    say = args[-1]
    began = time.monotonic()
    kubeconfig = Path(kubeconfig)
    own_url = _server_of(kubeconfig)

    # the operator's cluster: the standby site, the entry Service, the Secret to reach site A
    _seed(emulator, "v1/namespaces", {"metadata": {"name": NAMESPACE}})
    for kind, name in (("StatefulSet", "prometheus-standby"), ("Deployment", "grafana-standby")):
        _seed(emulator, f"apps/v1/{kind.lower()}s", _workload(kind, name, NAMESPACE, 0))
    _seed(emulator, "v1/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "monitoring", "namespace": NAMESPACE},
        "spec": {"selector": {"site": "site-a"}, "ports": [{"port": 9090}]}})
    # site A's cluster
    remote = make_emulator()
    remote.seed("v1/namespaces", {"metadata": {"name": REMOTE_NAMESPACE}})
    remote.seed("apps/v1/statefulsets", _workload("StatefulSet", "prometheus", REMOTE_NAMESPACE, 2))
    remote.seed("apps/v1/deployments", _workload("Deployment", "grafana", REMOTE_NAMESPACE, 1))

    async with contextlib.AsyncExitStack() as stack:
        remote_stack = contextlib.AsyncExitStack()
        remote_url = await remote_stack.enter_async_context(serve(remote))
        remote_port = int(remote_url.rsplit(":", 1)[1])
        stack.push_async_callback(lambda: remote_stack.aclose())
        remote_config = write_kubeconfig(remote_url, workdir / "site-a.kubeconfig", namespace=REMOTE_NAMESPACE)
        secret = base64.b64encode(remote_config.read_bytes()).decode()
        _seed(emulator, "v1/secrets", {"apiVersion": "v1", "kind": "Secret",
                                       "metadata": {"name": "site-a-kubeconfig", "namespace": NAMESPACE},
                                       "data": {"kubeconfig": secret}})
        own_kubelet = await stack.enter_async_context(FakeKubelet(own_url, startup=startup))
        remote_kubelet = await stack.enter_async_context(FakeKubelet(remote_url, startup=startup))
        site_a = await stack.enter_async_context(PodEndpoint("site-a"))
        site_b = await stack.enter_async_context(PodEndpoint("site-b"))
        remote_kubelet.bind(REMOTE_NAMESPACE, "StatefulSet", "prometheus", site_a)
        own_kubelet.bind(NAMESPACE, "StatefulSet", "prometheus-standby", site_b)
        await remote_kubelet.wait_ready(REMOTE_NAMESPACE, "StatefulSet", "prometheus", 2)
        say(f"sites             site-a (primary): cluster {remote_url}, Prometheus at {site_a.url}")
        say(f"                  site-b (standby): this cluster, scaled to zero, Prometheus at {site_b.url}")

        kube = Kube.connect(kubeconfig)
        stack.callback(kube.close)
        await kube.create(PLANS, NAMESPACE, plan(site_a.url, site_b.url, window, interval))
        say(f"applied           FailoverPlan {NAMESPACE}/{PLAN}: Automatic, checks every {interval}, "
            f"breach window {window} (shortened for the demo; the default is 180s)")

        def status() -> dict:
            return (emulator.stored(PLANS.resource, NAMESPACE, PLAN) or {}).get("status") or {}

        def healthy_primary():
            checks = [c for c in status().get("checks") or [] if c["site"] == "site-a"]
            return checks and all(c.get("healthy") for c in checks)

        await emulator.wait_for(healthy_primary, timeout=timeout)
        say(f"monitoring        site-a healthy; Service {NAMESPACE}/monitoring selects "
            f"{_selector(emulator)}")

        # the outage: the endpoint fails and the cluster's API goes away
        site_a.broken = True
        await remote_stack.aclose()
        outage = datetime.now(timezone.utc)
        say(f"\n{_clock(outage)}  site-a goes dark: its Prometheus fails and its cluster's API stops answering")
        shown = set()

        def progress():
            st = status()
            key = (st.get("phase"), (st.get("switchover") or {}).get("step"))
            if key not in shown:
                shown.add(key)
                step = f" (step {key[1]})" if key[1] else ""
                say(f"{_clock(datetime.now(timezone.utc))}  phase {key[0]}{step}")
            return st.get("phase") == "FailedOver"

        await emulator.wait_for(progress, timeout=timeout)
        st = status()
        done = next(h for h in reversed(st["history"]) if h["reason"] == "FailoverComplete")
        figures = {
            "breach_window_seconds": _seconds(window),
            "detection_seconds": done["detectionSeconds"],
            "switchover_seconds": done["switchoverSeconds"],
            "achieved_rto_seconds": done["achievedRTOSeconds"],
            "outage_to_healthy_seconds": round((_parse(done["time"]) - outage).total_seconds(), 3),
        }
        say(f"failed over       site-b serves; Service selects {_selector(emulator)}; standby scaled to "
            f"{_replicas(emulator, NAMESPACE, 'prometheus-standby')} Prometheus replicas")
        say(f"achieved RTO      {done['achievedRTOSeconds']:.2f}s (first failed check -> standby healthy) = "
            f"detection {done['detectionSeconds']:.2f}s (window {window}) + switchover "
            f"{done['switchoverSeconds']:.2f}s; tier A's RTO is 5m")
        if st.get("fencePending"):
            say(f"fencing           site-a could not be reached: marked fenced-unverified, to be fenced when "
                f"it answers")

        # site A comes back, still running: fenced before it can serve
        remote_stack = contextlib.AsyncExitStack()
        await remote_stack.enter_async_context(serve(remote, port=remote_port))
        site_a.broken = False
        await emulator.wait_for(lambda: "fencePending" not in status(), timeout=timeout)
        replicas = remote.stored("apps/v1/statefulsets", REMOTE_NAMESPACE, "prometheus")["spec"]["replicas"]
        figures["fenced_on_return"] = replicas == 0
        say(f"\n{_clock(datetime.now(timezone.utc))}  site-a answers again: fenced at once (Prometheus scaled to "
            f"{replicas}); traffic stays at site-b -- no automatic failback")

        # a person asks for the failback
        request = {"verb": "back", "id": uuid.uuid4().hex[:12]}
        say(f"\n$ lifeline failover back {PLAN} -n {NAMESPACE}")
        asked = time.monotonic()
        await kube.patch_metadata(PLANS, NAMESPACE, PLAN,
                                  {"annotations": {"dr.lifeline.io/request": json.dumps(request)}})
        shown.clear()

        def back():
            st = status()
            key = (st.get("phase"), (st.get("switchover") or {}).get("step"))
            if key not in shown and st.get("lastRequest", {}).get("id") == request["id"]:
                shown.add(key)
                step = f" (step {key[1]})" if key[1] else ""
                say(f"{_clock(datetime.now(timezone.utc))}  phase {key[0]}{step}")
            return st.get("phase") == "Monitoring" and st.get("lastRequest", {}).get("id") == request["id"]

        await emulator.wait_for(back, timeout=timeout)
        st = status()
        failback = next(h for h in reversed(st["history"]) if h["reason"] == "FailbackComplete")
        figures["failback_seconds"] = failback["switchoverSeconds"]
        figures["failback_wall_seconds"] = round(time.monotonic() - asked, 3)
        say(f"failed back       {st['lastRequest']['outcome']}: site-a serves again after "
            f"{failback['switchoverSeconds']:.2f}s (fence site-b, scale site-a up, wait ready, switch, verify); "
            f"Service selects {_selector(emulator)}")
        await kube.delete(PLANS, NAMESPACE, PLAN)
        await remote_stack.aclose()
    figures["wall_seconds"] = round(time.monotonic() - began, 3)
    say(f"scene             {figures['wall_seconds']:.1f}s wall time")
    return figures


def _server_of(kubeconfig: Path) -> str:
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    return config["clusters"][0]["cluster"]["server"].rstrip("/")


def _selector(emulator) -> dict:
    return emulator.stored("v1/services", NAMESPACE, "monitoring")["spec"]["selector"]


def _replicas(emulator, namespace: str, name: str) -> int:
    return emulator.stored("apps/v1/statefulsets", namespace, name)["spec"]["replicas"]


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds(duration: str) -> float:
    from lifeline.api.common import parse_duration

    return parse_duration(duration)


async def _main() -> dict:  # `python -m lifeline.devstack.scenes.failover`: the scene on its own
    import logging
    import tempfile

    from lifeline.devstack.emulator import make_emulator, serve, write_kubeconfig
    from lifeline.devstack.operator_thread import running_operator

    logging.basicConfig(level=logging.WARNING)
    emulator = make_emulator()
    with tempfile.TemporaryDirectory() as tmp:
        async with serve(emulator) as url:
            config = write_kubeconfig(url, Path(tmp) / "kubeconfig")
            async with running_operator(config, emulator):
                return await run(emulator, config, print)


if __name__ == "__main__":
    print(asyncio.run(_main()))
