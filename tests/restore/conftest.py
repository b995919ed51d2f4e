"""The restore tests' cluster: the session's real control plane, people from its PKI bound to the
chart's roles in the test's namespace (carol requests, alice and bob approve), and the operator in
this process serving the chart's admission webhooks, which the real API server calls."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from lifeline.clock import FrozenClock
from lifeline.devstack import install
from lifeline.devstack.cluster import PEOPLE

REQUESTER, APPROVERS = "carol", ("alice", "bob")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))


@pytest.fixture
def fast_env(monkeypatch):
    monkeypatch.setenv("LIFELINE_RPO_CHECK_INTERVAL", "0.05")
    monkeypatch.setenv("LIFELINE_FACTS_TTL", "0")
    monkeypatch.setenv("LIFELINE_AGENT_IMAGE", "ghcr.io/lifeline-dr/lifeline:test")


@pytest.fixture
def people(kube, tmp_path) -> dict[str, Path]:
    """A kubeconfig per person of the cluster (alice, bob, carol, ...), their groups bound as a hospital binds them."""
    install.bind_people(kube.request, kube.namespace)
    return {user: kube.cluster.kubeconfig_for(user, tmp_path / f"kubeconfig-{user}", namespace=kube.namespace)
            for user in PEOPLE}


@pytest.fixture
async def operator(kube, clock, fast_env, people):
    """The operator in this process, with the chart's webhooks registered with the API server."""
    async with kube.operator(clock=clock) as ctx:
        yield ctx


def restore_body(name: str = "his-after-corruption", point: str = "pacs-20261123-0200", **spec) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": name},
            "spec": {"recoveryPoint": point, "reason": "INC-4711: table corruption",
                     "target": {"pvc": {"claimName": "pacs-restored"}}, **spec}}
