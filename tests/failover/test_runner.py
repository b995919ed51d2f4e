"""The plan loop's write discipline, with a fake API: compare-and-swap, and Events after the write."""
from __future__ import annotations

import copy
import types
from datetime import datetime, timezone

import pytest

from lifeline.clock import FrozenClock
from lifeline.failover import runner as runner_module
from lifeline.failover.runner import Conflict, Gone, PlanRunner
from lifeline.kube import KubeError
from lifeline.observability.metrics import OperatorMetrics

from .conftest import plan_body

NS = "hospital"
START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)


class FakeKube:
    def __init__(self, body: dict):
        self.body = body
        self.rv = 10
        self.calls: list[str] = []
        self.conflicts = 0
        self.gone = False

    def _stored(self) -> dict:
        self.body["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.body)

    async def patch(self, res, namespace, name, patch, *, subresource=None):
        assert subresource == "status"
        resource_version = (patch.get("metadata") or {}).get("resourceVersion")
        status = patch["status"]
        self.calls.append(f"patch@{resource_version}")
        if self.gone:
            raise KubeError("not found", 404)
        if self.conflicts:
            self.conflicts -= 1
            self.rv += 1  # someone else wrote
            raise KubeError("conflict", 409)
        assert resource_version == str(self.rv), "every status write carries the resourceVersion it read"
        merged = self.body.setdefault("status", {})
        for k, v in status.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        self.rv += 1
        return self._stored()

    async def get(self, res, namespace, name, *, missing_ok=False):
        if res.kind in ("Deployment", "StatefulSet"):
            return {"metadata": {"generation": 1}, "spec": {"replicas": 1},
                    "status": {"readyReplicas": 1, "observedGeneration": 1}}
        self.calls.append("get")
        return self._stored()

    async def emit_event(self, ref, type_, reason, message, now):
        self.calls.append(f"event:{reason}")


def make(body: dict):
    kube = FakeKube(body)
    ctx = types.SimpleNamespace(kube=kube, clock=FrozenClock(START), metrics=OperatorMetrics())
    live = {"body": kube._stored()}
    r = PlanRunner(ctx, NS, "icu", body_source=lambda: live["body"])
    return r, kube, live


def plan() -> dict:
    body = plan_body("icu", "http://127.0.0.1:1", "http://127.0.0.1:2", primary_ns="monitoring", standby_ns=NS)
    body["spec"]["primary"].pop("cluster")
    body["metadata"].update(namespace=NS, generation=1, uid="u")
    return body


async def test_a_conflicting_write_rereads_and_starts_over_and_nothing_is_acted_on_twice():
    r, kube, live = make(plan())
    r.session = runner_module.probes.new_session()
    try:
        kube.conflicts = 1
        with pytest.raises(Conflict):
            await r.cycle()
        assert kube.calls == ["patch@10", "get"]
        await r.cycle()  # from the fresh read: a clean write at the new resourceVersion
        assert kube.calls[-1] == "patch@11" and kube.body["status"]["phase"] == "Monitoring"
        writes = len(kube.calls)
        await r.cycle()  # our write has not come back through the watch yet: still no second write
        assert len(kube.calls) == writes
        live["body"] = kube._stored()  # now it has
        await r.cycle()
        assert len(kube.calls) == writes
        kube.gone = True
        kube.body["metadata"]["generation"] = 2  # something to write, but the plan is gone
        kube.body["spec"]["mode"] = "Manual"
        live["body"] = kube._stored()
        with pytest.raises(Gone):
            await r.cycle()
    finally:
        await r.session.close()
