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
    ctx = types.SimpleNamespace(kube=kube, clock=FrozenClock(START), metrics=OperatorMetrics(), notifier=None)
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


async def test_a_watch_two_writes_behind_never_hands_back_the_one_in_between():
    """The watch still shows the body before our first write when we write a second time; when it
    brings back the first write, that one is older than what we wrote last: not news to act on."""
    r, kube, live = make(plan())
    r.session = runner_module.probes.new_session()
    try:
        await r.cycle()  # the first write (Monitoring): resourceVersion 10 -> 11
        first = kube._stored()
        r.ctx.clock.advance(10)
        await r.cycle()  # a round probed (nothing listens: it fails), written over our first: 11 -> 12
        assert [c for c in kube.calls if c.startswith("patch")] == ["patch@10", "patch@11"]
        assert kube.body["status"]["phase"] == "Degraded"
        live["body"] = first  # the watch brings back the first write, one behind ours
        assert r.current()["metadata"]["resourceVersion"] == "12"
        assert r.current()["status"]["phase"] == "Degraded"
        live["body"] = kube._stored()  # then our second: from here on the watch is what counts
        assert r.current() == kube._stored() and r.written is None
    finally:
        await r.session.close()


async def test_a_round_whose_write_meets_a_conflict_is_decided_on_in_the_retry():
    r, kube, live = make(plan())
    r.session = runner_module.probes.new_session()
    rounds = r.ctx.metrics.failover_rounds.labels(NS, "icu")
    try:
        await r.cycle()
        live["body"] = kube._stored()
        r.ctx.clock.advance(10)
        kube.conflicts = 1
        with pytest.raises(Conflict):
            await r.cycle()  # probed (a failure), then the write met someone else's
        assert rounds._value.get() == 0
        await r.cycle()  # no probe is due again so soon: the carried round is what it writes
        check = next(c for c in kube.body["status"]["checks"] if c["site"] == "site-a")
        assert check["healthy"] is False and check["consecutiveFailures"] == 1
        assert kube.body["status"]["phase"] == "Degraded" and rounds._value.get() == 1
    finally:
        await r.session.close()
