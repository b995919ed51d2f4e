"""Fixtures for the backup tests, on the session's real control plane: a namespace per test with
the claims (host directories) and the Secret a policy names, the operator in this process with a
frozen clock the test moves, and Jobs run by the real Job controller and the process kubelet."""
from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lifeline.clock import FrozenClock
from lifeline.keys import create_key_file
from lifeline.planning import conditions
from tests.integration.operator_harness import metric, until

POLICY = "backuppolicies"
POINTS = "recoverypoints"
CLAIMS = ("pacs-data", "backup-local", "backup-offsite")


@pytest.fixture
def clock() -> FrozenClock:
    """Frozen at the test's start: Pods run on real time, so the clock starts where they do."""
    return FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))


@pytest.fixture(autouse=True)
def fast_timers(monkeypatch):
    # The RPO timer re-plans every 50 ms of real time; what it compares is the frozen clock.
    monkeypatch.setenv("LIFELINE_RPO_CHECK_INTERVAL", "0.05")
    monkeypatch.setenv("LIFELINE_FACTS_TTL", "0")
    monkeypatch.setenv("LIFELINE_AGENT_IMAGE", "ghcr.io/lifeline-dr/lifeline:test")


@pytest.fixture
def key_text(tmp_path) -> str:
    path = create_key_file(tmp_path / "kek")
    return path.read_text()


def policy(name: str = "pacs", *, rpo: str = "15m", full: str = "0 1 * * *", incremental: str | None = "*/15 * * * *",
           claim: str = "pacs-data", destinations: list | None = None, **spec) -> dict:
    body = {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": "B", "objectives": {"rpo": rpo},
            "source": {"pvc": {"claimName": claim}},
            "schedule": {"full": full, **({"incremental": incremental} if incremental else {})},
            "destinations": destinations or [
                {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/pacs"}},
                {"name": "offsite", "offSite": True, "filesystem": {"claimName": "backup-offsite", "path": "/pacs"}},
            ],
            "encryption": {"keyRef": "secret://pacs-key/key"},
            **spec,
        },
    }
    return copy.deepcopy(body)


@pytest.fixture
def volumes(tmp_path) -> dict[str, Path]:
    """Host directories behind the claims: the data to protect and two repositories."""
    root = tmp_path / "volumes"
    out = {name: root / name for name in CLAIMS}
    for path in out.values():
        path.mkdir(parents=True)
    (out["pacs-data"] / "study-1.dcm").write_bytes(b"DICM" + bytes(range(256)) * 400)
    (out["pacs-data"] / "series").mkdir()
    (out["pacs-data"] / "series" / "index.json").write_text('{"studies": 1}')
    return out


@pytest.fixture
def seeded(kube, volumes, key_text):
    """The claims and the key Secret the default :func:`policy` names."""
    for claim in CLAIMS:
        kube.claim(claim, volumes[claim])
    kube.secret("pacs-key", {"key": key_text})
    return kube


def events(kube, name: str, reason: str | None = None) -> list[dict]:
    """Events about ``name`` (optionally of one reason), oldest first."""
    return kube.events(name, reason)


async def wait_event(kube, name: str, reason: str, timeout: float = 20) -> list[dict]:
    return await kube.wait_for(lambda: events(kube, name, reason), timeout=timeout)


def stored(kube, name: str = "pacs") -> dict | None:
    return kube.stored(POLICY, None, name)


def cond(obj, type_: str) -> dict:
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), type_) or {}


def points(kube, policy_name: str = "pacs") -> list[dict]:
    """The policy's RecoveryPoints, oldest first."""
    return sorted((o for o in kube.objects(POINTS) if o["spec"]["policyName"] == policy_name),
                  key=lambda o: o["spec"]["startTime"])


async def settled(kube, name: str = "pacs", generation: int | None = None) -> dict:
    """The policy once the operator has observed its current generation (and that is ``generation``)."""
    def check():
        o = stored(kube, name)
        st = (o or {}).get("status") or {}
        ok = st.get("observedGeneration") == o["metadata"]["generation"] if o else False
        if ok and generation is not None:
            ok = o["metadata"]["generation"] == generation
        return ok and o
    return await kube.wait_for(check, timeout=30)


def unchanged(ctx) -> float:
    return metric(ctx, "lifeline_reconciles_total", kind="BackupPolicy", result="unchanged")


async def settled_by(ctx, seen: float | None = None) -> None:
    """Wait until the operator has reconciled a policy again (after ``seen`` reconciles) and found
    nothing to write: what it last wrote has come back through its watch."""
    seen = unchanged(ctx) if seen is None else seen
    await until(lambda: unchanged(ctx) > seen, timeout=20)
