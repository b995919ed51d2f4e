"""Demo scene: the monitoring stack's primary site goes dark; the standby takes over; then failback.

With the hospital cluster and the operator already running (``lifeline dev up`` starts them), the
scene

1. starts a second real control plane as the primary site ("site-a"), with a real Prometheus as
   a StatefulSet in its ``monitoring`` namespace; the operator reaches it through a kubeconfig
   Secret holding a ServiceAccount token of site A that may only read and scale that namespace's
   StatefulSets. The operator's own cluster is the standby ("site-b", a Prometheus StatefulSet
   scaled to zero) -- the recommended placement: the operator survives the primary's loss;
2. applies a FailoverPlan with a *short* breach window (5 s instead of the 180 s default, so the
   demo takes seconds; it says so) whose checks query the two Prometheus servers (``/-/ready`` and
   the PromQL ``up{job="prometheus"} == 1``), and waits until the primary is healthy;
3. takes site A dark for real: every process of it stops (kubelet first, and with it its
   Prometheus; then scheduler, controller-manager, API server, etcd); after the window the operator fails over without being able to fence
   site A, scales site B's StatefulSet up (the real StatefulSet controller and kubelet start
   Prometheus), switches the Service, verifies B's checks, and records the achieved RTO;
4. brings site A back (its processes start again on the data they kept; its Prometheus Pod
   starts again): the operator fences it (scales it to zero) before anything else;
5. requests a failback (as ``lifeline failover back`` does) and shows the planned switchover.

It returns the figures it printed.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path


from lifeline.api import FAILOVER_PLAN as PLANS
from lifeline.api.common import parse_duration
from lifeline.devstack import live
from lifeline.devstack.children import free_port
from lifeline.devstack.cluster import Cluster
from lifeline.devstack.monitoring import prometheus
from lifeline.devstack.notice_receiver import TARGETS as NOTICE_TARGETS
from lifeline.kube import Kube
from lifeline.labels import ANN_FAILOVER_REQUEST, LABEL_APP_PART_OF

NAMESPACE = "hospital"  # the plan, the entry Service and the standby site (the operator's cluster)
REMOTE_NAMESPACE = "monitoring"  # the primary site, in the other cluster
PLAN = "icu-failover"


def plan(primary_url: str, standby_url: str, window: str, interval: str) -> dict:
    def checks(url: str) -> list[dict]:
        return [
            {"name": "prometheus-ready", "interval": interval, "timeout": interval, "http": {"url": f"{url}/-/ready"}},
            {"name": "prometheus-up", "interval": interval, "timeout": interval,
             "promql": {"url": url, "query": 'up{job="prometheus"} == 1'}},
        ]

    return {
        "apiVersion": PLANS.api_version, "kind": "FailoverPlan",
        "metadata": {"name": PLAN, "labels": {LABEL_APP_PART_OF: "icu-monitoring"}},
        "spec": {
            "tier": "A", "mode": "Automatic", "breachWindow": window, "switchoverEstimate": "30s",
            "fencing": "Both",
            "primary": {"name": "site-a", "namespace": REMOTE_NAMESPACE,
                        "cluster": {"kubeconfigSecret": {"name": "site-a-kubeconfig", "key": "kubeconfig"}},
                        "workloads": [{"kind": "StatefulSet", "name": "prometheus"}],
                        "healthChecks": checks(primary_url)},
            "standby": {"name": "site-b", "namespace": NAMESPACE,
                        "workloads": [{"kind": "StatefulSet", "name": "prometheus-standby"}],
                        "healthChecks": checks(standby_url)},
            "traffic": {"service": {"name": "monitoring", "namespace": NAMESPACE,
                                    "primarySelector": {"site": "site-a"}, "standbySelector": {"site": "site-b"}}},
            "maxFailovers": {"count": 1, "window": "24h"},
            "notify": [name for name, _, _ in NOTICE_TARGETS],
        },
    }


def _remote_identity(site_a, namespace: str) -> str:
    """A kubeconfig for the operator in site A: a ServiceAccount that may read and scale the
    workloads in ``namespace`` only, its token and site A's CA inline (what a Secret can carry)."""
    return live.remote_site_kubeconfig(site_a, namespace)


def _ready(cluster, namespace: str, name: str) -> int:
    return ((live.get(cluster, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}") or {})
            .get("status") or {}).get("readyReplicas") or 0


def _replicas(cluster, namespace: str, name: str) -> int:
    return cluster.request("GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}")["spec"]["replicas"]


def _selector(cluster) -> dict:
    return cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/services/monitoring")["spec"]["selector"]


async def run(stack, say, *, window: str = "5s", interval: str = "500ms", timeout: float = 90.0) -> dict:
    began = time.monotonic()
    own = stack.cluster
    workdir = Path(stack.state)
    port_a, port_b = free_port(), free_port()
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"

    site_a = Cluster(workdir / "site-a", name="site-a")
    await asyncio.to_thread(site_a.start)
    try:
        # site A: the primary's Prometheus, and an identity for the operator limited to its namespace
        await asyncio.to_thread(live.namespace, site_a, REMOTE_NAMESPACE)
        for path, body in prometheus("prometheus", REMOTE_NAMESPACE, port_a, labels={"site": "site-a"}):
            await asyncio.to_thread(live.create, site_a, path, body)
        remote_config = await asyncio.to_thread(_remote_identity, site_a, REMOTE_NAMESPACE)
        # site B (this cluster): the standby scaled to zero, the entry Service, the Secret to reach site A
        for path, body in prometheus("prometheus-standby", NAMESPACE, port_b, labels={"site": "site-b"}, replicas=0):
            await asyncio.to_thread(live.create, own, path, body)
        await asyncio.to_thread(live.create, own, f"/api/v1/namespaces/{NAMESPACE}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "monitoring"},
            "spec": {"selector": {"site": "site-a"}, "ports": [{"port": 9090}]}})
        await asyncio.to_thread(live.create, own, f"/api/v1/namespaces/{NAMESPACE}/secrets", {
            "metadata": {"name": "site-a-kubeconfig"},
            "data": {"kubeconfig": base64.b64encode(remote_config.encode()).decode()}})
        await live.until(lambda: _ready(site_a, REMOTE_NAMESPACE, "prometheus") == 1, timeout,
                         "site A's Prometheus to be ready")
        say(f"sites             site-a (primary): Kubernetes at {site_a.url}, Prometheus StatefulSet at {url_a}")
        say(f"                  site-b (standby): this cluster, Prometheus StatefulSet scaled to zero, {url_b} when up")

        kube = Kube.connect(stack.kubeconfig)
        try:
            await kube.create(PLANS, NAMESPACE, plan(url_a, url_b, window, interval))
            say(f"applied           FailoverPlan {NAMESPACE}/{PLAN}: Automatic, checks every {interval}, "
                f"breach window {window} (shortened for the demo; the default is 180s)")

            def status() -> dict:
                return ((live.stored(own, "FailoverPlan", NAMESPACE, PLAN) or {}).get("status")) or {}

            def healthy_primary():
                checks = [c for c in status().get("checks") or [] if c["site"] == "site-a"]
                return checks and all(c.get("healthy") for c in checks)

            await live.until(healthy_primary, timeout, "site A to be healthy")
            say(f"monitoring        site-a healthy; Service {NAMESPACE}/monitoring selects {_selector(own)}")

            # the outage: site A's control plane and node stop; its Prometheus process dies with the node
            outage = datetime.now(timezone.utc)
            say(f"\n{_clock(outage)}  site-a goes dark: its kubelet (and with it Prometheus), scheduler, "
                "controller-manager, API server and etcd stop")
            await asyncio.to_thread(site_a.go_dark)
            shown = set()

            def progress():
                st = status()
                key = (st.get("phase"), (st.get("switchover") or {}).get("step"))
                if key not in shown:
                    shown.add(key)
                    step = f" (step {key[1]})" if key[1] else ""
                    say(f"{_clock(datetime.now(timezone.utc))}  phase {key[0]}{step}")
                return st.get("phase") == "FailedOver"

            await live.until(progress, timeout, "the failover", interval=0.1)
            st = status()
            done = next(h for h in reversed(st["history"]) if h["reason"] == "FailoverComplete")
            figures = {
                "breach_window_seconds": _seconds(window),
                "detection_seconds": done["detectionSeconds"],
                "switchover_seconds": done["switchoverSeconds"],
                "achieved_rto_seconds": done["achievedRTOSeconds"],
                "outage_to_healthy_seconds": round((_parse(done["time"]) - outage).total_seconds(), 3),
            }
            say(f"failed over       site-b serves; Service selects {_selector(own)}; standby scaled to "
                f"{_replicas(own, NAMESPACE, 'prometheus-standby')} Prometheus replica(s), "
                f"{_ready(own, NAMESPACE, 'prometheus-standby')} ready")
            say(f"achieved RTO      {done['achievedRTOSeconds']:.2f}s (first failed check -> standby healthy) = "
                f"detection {done['detectionSeconds']:.2f}s (window {window}) + switchover "
                f"{done['switchoverSeconds']:.2f}s; tier A's RTO is 5m")
            if st.get("fencePending"):
                say("fencing           site-a could not be reached: marked fenced-unverified, to be fenced when "
                    "it answers")

            # site A comes back, its Prometheus starting again: fenced before it can serve
            await asyncio.to_thread(site_a.come_back)
            await live.until(lambda: "fencePending" not in status(), timeout, "site A to be fenced")
            replicas = _replicas(site_a, REMOTE_NAMESPACE, "prometheus")
            figures["fenced_on_return"] = replicas == 0
            say(f"\n{_clock(datetime.now(timezone.utc))}  site-a answers again: fenced at once (Prometheus scaled to "
                f"{replicas}); traffic stays at site-b -- no automatic failback")

            # a person asks for the failback
            request = {"verb": "back", "id": uuid.uuid4().hex[:12]}
            say(f"\n$ lifeline failover back {PLAN} -n {NAMESPACE}")
            asked = time.monotonic()
            await kube.patch(PLANS, NAMESPACE, PLAN,
                             {"metadata": {"annotations": {ANN_FAILOVER_REQUEST: json.dumps(request)}}})
            shown.clear()

            def back():
                st = status()
                key = (st.get("phase"), (st.get("switchover") or {}).get("step"))
                if key not in shown and st.get("lastRequest", {}).get("id") == request["id"]:
                    shown.add(key)
                    step = f" (step {key[1]})" if key[1] else ""
                    say(f"{_clock(datetime.now(timezone.utc))}  phase {key[0]}{step}")
                return st.get("phase") == "Monitoring" and st.get("lastRequest", {}).get("id") == request["id"]

            await live.until(back, timeout, "the failback", interval=0.1)
            st = status()
            failback = next(h for h in reversed(st["history"]) if h["reason"] == "FailbackComplete")
            figures["failback_seconds"] = failback["switchoverSeconds"]
            figures["failback_wall_seconds"] = round(time.monotonic() - asked, 3)
            say(f"failed back       {st['lastRequest']['outcome']}: site-a serves again after "
                f"{failback['switchoverSeconds']:.2f}s (fence site-b, scale site-a up, wait ready, switch, verify); "
                f"Service selects {_selector(own)}")
            await kube.delete(PLANS, NAMESPACE, PLAN)
            receiver = getattr(stack, "notices", None)
            if receiver is not None:  # sent in the background: they may land a moment after the phase
                wanted = {"FailingOver", "FailoverComplete", "FailingBack", "FailbackComplete"}
                await live.until(lambda: wanted <= set(receiver.titles("ward-screens"))
                                 and len(receiver.titles("dingtalk")) >= 4, 30, "the switchover notices",
                                 interval=0.1)
                figures["notices"] = {t: receiver.titles(t) for t in ("ward-screens", "dingtalk")}
                say(f"notices           ward screens (generic): {', '.join(receiver.titles('ward-screens'))}")
                say(f"                  on-call chat (DingTalk): {len(receiver.titles('dingtalk'))} markdown "
                    f"messages, the first: \"{receiver.titles('dingtalk')[0]}\"")
        finally:
            kube.close()
    finally:
        await asyncio.to_thread(site_a.stop)
    figures["wall_seconds"] = round(time.monotonic() - began, 3)
    say(f"scene             {figures['wall_seconds']:.1f}s wall time")
    return figures


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds(duration: str) -> float:
    return parse_duration(duration)
