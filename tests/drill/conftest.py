"""Drill tests on the session's real control plane (tests/cluster_fixtures.py).

They reuse the backup tests' set-up (tests/backup/conftest.py): a fresh namespace per test with the
claims (host directories) and the key Secret a policy names, the operator in this process as the
chart's ServiceAccount with a frozen clock the test moves. Drill Jobs run for real: the real Job
controller and the process kubelet, in sandbox namespaces the operator creates through the API and
the real namespace controller empties when the operator deletes them.

The operator watches the test's namespace only; it creates and reads the sandbox's objects with
plain API calls, and its drill timer (``LIFELINE_DRILL_INTERVAL``) is what notices a sandbox Job's
end, since no watch covers the sandbox. So no cluster-wide operator is needed.
"""
from __future__ import annotations

import contextlib
import urllib.error

import pytest

from lifeline.planning import drill_sandbox
from tests.backup.conftest import (  # noqa: F401 - fixtures, re-exported for this directory
    clock, cond, events, fast_timers, key_text, points, seeded, settled, stored, volumes, wait_event,
)
from tests.backup.conftest import policy as _policy

DRILLS = "restoredrills"
# Schedules the real CronJob controller does not fire while a test runs (unless it runs across 01:00
# or 01:30 UTC): a scheduled backup in the middle of a drill test would add a point and load the CPUs.
QUIET_FULL, QUIET_INCREMENTAL = "0 1 * * *", "30 1 * * *"


@pytest.fixture(autouse=True)
def drill_timer(monkeypatch):
    # The drill controller re-reads its drills every 100 ms of real time (what it compares is the
    # frozen clock); it is also what sees a sandbox Job end (see the module docstring).
    monkeypatch.setenv("LIFELINE_DRILL_INTERVAL", "0.1")


@pytest.fixture
def kube(kube):
    """The cluster fixture's view; after a test that stopped before its sandboxes' TTL, the sandboxes
    and mirror volumes its drills left behind are deleted too."""
    yield kube
    selector = f"{drill_sandbox.LABEL_SANDBOX}=true,{drill_sandbox.LABEL_DRILL_NAMESPACE}={kube.namespace}"
    for ns in kube.objects("namespaces", namespace=None, selector=selector):
        name = ns["metadata"]["name"]
        with contextlib.suppress(urllib.error.HTTPError):
            kube.request("DELETE", f"/api/v1/namespaces/{name}")
        mirrors = f"{drill_sandbox.LABEL_SANDBOX_NAMESPACE}={name}"
        for pv in kube.objects("persistentvolumes", namespace=None, selector=mirrors):
            with contextlib.suppress(urllib.error.HTTPError):
                kube.request("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")


def policy(name: str = "pacs", *, full: str = QUIET_FULL, incremental: str | None = QUIET_INCREMENTAL,
           **spec) -> dict:
    """tests/backup's policy on quiet schedules (see :data:`QUIET_FULL`)."""
    return _policy(name, full=full, incremental=incremental, **spec)


def drill(name: str = "pacs-drill", **spec) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": name},
            "spec": {"policyName": "pacs", "mode": "Once", "point": {"strategy": "Latest"},
                     "verify": {"command": {"image": "busybox:1.36",
                                            "command": ["sh", "-c", "cat $LIFELINE_RESTORED/series/index.json"],
                                            "expectOutput": '{"studies": 1}'}},
                     **spec}}


def drill_status(kube, name: str = "pacs-drill") -> dict:
    return (kube.stored(DRILLS, None, name) or {}).get("status") or {}


def last_run(kube, name: str = "pacs-drill") -> dict:
    return drill_status(kube, name).get("lastRun") or {}


async def backed_up(kube, body: dict | None = None) -> dict:
    """A policy and one full backup of it, recorded and Available: the point a drill restores."""
    body = body or policy()
    name = body["metadata"]["name"]
    kube.create(body)
    await settled(kube, name)
    await kube.wait_for(lambda: kube.stored("cronjobs", None, f"{name}-full"), timeout=20)
    result = await kube.run_cronjob(f"{name}-full")
    assert result.phase == "Succeeded", kube.job_log(result.job)
    [point] = await kube.wait_for(lambda: (ps := points(kube, name)) and
                                  (ps[-1].get("status") or {}).get("phase") == "Available" and ps, timeout=30)
    return point


async def run_drill(kube, name: str = "pacs-drill", timeout: float = 120) -> dict:
    """The drill's run once it has ended (the real Job controller runs its restore and verify Jobs)."""
    await kube.wait_for(lambda: last_run(kube, name).get("sandbox"), timeout=30)
    return await kube.wait_for(lambda: (r := last_run(kube, name)).get("outcome") not in (None, "Running") and r,
                               timeout=timeout)


def drill_reads(kube, name: str = "pacs-drill", since: int = 0) -> int:
    """How often the operator has read the drill (each reconcile starts with one read) since audit line ``since``.

    Reconciles that change nothing write nothing; the API server's audit log of the operator's reads
    is how a test knows one ran after it moved the clock.
    """
    return sum(1 for e in kube.cluster.requests(kube.operator_user, since=since)
               if e["verb"] == "get" and (e.get("objectRef") or {}).get("resource") == DRILLS
               and e["objectRef"].get("name") == name and e["objectRef"].get("namespace") == kube.namespace)


async def reconciled_since(kube, name: str = "pacs-drill") -> None:
    """Wait until two reconciles of the drill began after now: the first has then finished (they
    take the drill's lock in turn), so it saw whatever the test changed before calling this."""
    mark = kube.cluster.audit_position()
    await kube.wait_for(lambda: drill_reads(kube, name, mark) >= 2, timeout=20, interval=0.1)


def sandbox_gone(kube, sandbox: str) -> bool:
    return kube.stored("namespaces", None, sandbox) is None


def sandbox_deleted(kube, sandbox: str) -> bool:
    """The sandbox namespace is gone or being emptied by the namespace controller (which takes
    ~10 s: it waits 5 s before it starts, and again for the claims' protection finalizers)."""
    ns = kube.stored("namespaces", None, sandbox)
    return ns is None or "deletionTimestamp" in ns["metadata"]
