"""The API server goes away and comes back: the whole control plane goes dark (etcd, kube-apiserver,
the controllers, the kubelet) and starts again on the data it kept, on the same address. The
operator re-establishes its watches (the API server's audit log shows them opened again) and
reconciles a change made after the restart."""
from __future__ import annotations

import asyncio
import socket

from lifeline.api import KINDS

from .conftest import policy, settled, stored

KIND_PLURALS = {k.plural for k in KINDS}


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_the_operator_recovers_its_watches_after_an_api_server_outage(seeded, kube, clock):
    cluster = kube.cluster

    def watched_since(mark: int) -> set[str]:
        """Lifeline kinds the operator opened a watch on in this namespace since audit line ``mark``."""
        return {e["objectRef"]["resource"] for e in cluster.watches(kube.operator_user, since=mark)
                if (e.get("objectRef") or {}).get("namespace") == kube.namespace} & KIND_PLURALS

    async with kube.operator(clock=clock):
        kube.create(policy())
        await settled(kube)
        url, port = cluster.url, cluster.port

        # go_dark, not a restart of the API server alone: that would corrupt the scheduler's cache
        await asyncio.to_thread(cluster.go_dark)
        assert refuses(port), "the API is really gone"
        mark = cluster.audit_position()
        await asyncio.to_thread(cluster.come_back)
        assert cluster.url == url, "back on the same address"

        changed = kube.patch("BackupPolicy", "pacs", {"spec": {"schedule": {"full": "45 3 * * *"}}})
        assert changed["metadata"]["generation"] == 2
        obj = await kube.wait_for(lambda: (o := stored(kube)) and o["status"].get("observedGeneration") == 2 and o,
                                  timeout=60)
        cron = await kube.wait_for(lambda: (c := kube.stored("cronjobs", None, "pacs-full"))
                                   and c["spec"]["schedule"] == "45 3 * * *" and c, timeout=30)
        assert cron["metadata"]["ownerReferences"][0]["name"] == "pacs"
        assert next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
        # new watch requests after the restart, for every kind it serves
        await kube.wait_for(lambda: watched_since(mark) == KIND_PLURALS, timeout=30)
