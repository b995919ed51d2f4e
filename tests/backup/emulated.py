"""The emulator's fixtures, for the one backup test file still on it (test_snapshots: CSI snapshots
have no real controller here yet; see docs/testing.md): one frozen clock shared by the emulator,
the operator and the job runner, a namespace with the PVCs and Secrets a policy names, and the
runner that plays kubelet and CronJob controller for real agent runs. Nothing new goes here."""
from __future__ import annotations

import base64
import copy
from pathlib import Path

import kmock
import pytest

from lifeline.api import BY_KIND
from lifeline.clock import FrozenClock
from lifeline.devstack.emulator import make_emulator
from lifeline.devstack.job_runner import JobRunner
from lifeline.keys import create_key_file
from lifeline.planning import conditions
from tests.integration.operator_harness import START
from tests.kube_client import Api

NS = "hospital"
POLICY = BY_KIND["BackupPolicy"].resource
POINTS = kmock.resource(BY_KIND["RecoveryPoint"].resource)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def emulator(clock):
    """The honest emulator, stamping creation times from the same clock as the operator."""
    em = make_emulator(clock=clock)
    em.seed("v1/namespaces", {"metadata": {"name": NS}})
    return em


@pytest.fixture(autouse=True)
def fast_timers(monkeypatch):
    # The RPO timer re-plans every 50 ms of real time; what it compares is the frozen clock.
    monkeypatch.setenv("LIFELINE_RPO_CHECK_INTERVAL", "0.05")
    monkeypatch.setenv("LIFELINE_FACTS_TTL", "0")
    monkeypatch.setenv("LIFELINE_AGENT_IMAGE", "ghcr.io/lifeline-dr/lifeline:test")


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def seed_pvc(emulator, name: str, namespace: str = NS) -> None:
    emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": name, "namespace": namespace},
                                                 "spec": {"accessModes": ["ReadWriteOnce"]}})


def seed_secret(emulator, name: str, data: dict[str, str | bytes], namespace: str = NS) -> None:
    emulator.seed("v1/secrets", {"metadata": {"name": name, "namespace": namespace},
                                 "data": {k: b64(v) for k, v in data.items()}})


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
async def api(kubeconfig) -> Api:
    api = Api(kubeconfig)
    yield api
    api.client.close()


@pytest.fixture
def volumes(tmp_path) -> dict[str, Path]:
    """Local directories standing in for the PVCs: the data to protect and two repositories."""
    root = tmp_path / "volumes"
    out = {name: root / name for name in ("pacs-data", "backup-local", "backup-offsite")}
    for path in out.values():
        path.mkdir(parents=True)
    (out["pacs-data"] / "study-1.dcm").write_bytes(b"DICM" + bytes(range(256)) * 400)
    (out["pacs-data"] / "series").mkdir()
    (out["pacs-data"] / "series" / "index.json").write_text('{"studies": 1}')
    return out


@pytest.fixture
def cluster(emulator, key_text):
    """The PVCs and the key Secret the default :func:`policy` names."""
    for claim in ("pacs-data", "backup-local", "backup-offsite"):
        seed_pvc(emulator, claim)
    seed_secret(emulator, "pacs-key", {"key": key_text})
    return emulator


@pytest.fixture
async def runner(kube_url, tmp_path, volumes, clock) -> JobRunner:
    async with JobRunner(kube_url, workdir=tmp_path / "pods", volumes=volumes, clock=clock) as r:
        yield r


def events(emulator, name: str, reason: str | None = None) -> list[dict]:
    """Events stored about ``name`` (optionally of one reason), oldest first."""
    import kmock

    res = kmock.resource("v1/events")
    found = [o for (r, _, _), o in emulator._objects_of(res)
             if o.get("involvedObject", {}).get("name") == name and (reason is None or o.get("reason") == reason)]
    return sorted(found, key=lambda o: o["metadata"]["resourceVersion"].zfill(12))


async def wait_event(emulator, name: str, reason: str, timeout: float = 10) -> list[dict]:
    return await emulator.wait_for(lambda: events(emulator, name, reason), timeout=timeout)


def stored(emulator, name: str = "pacs") -> dict | None:
    return emulator.stored(POLICY, NS, name)


def cond(obj, type_: str) -> dict:
    return conditions.find(((obj or {}).get("status") or {}).get("conditions"), type_) or {}


def points(emulator, policy_name: str = "pacs") -> list[dict]:
    """The policy's RecoveryPoints, oldest first."""
    return sorted((o for _, o in emulator._objects_of(POINTS) if o["spec"]["policyName"] == policy_name),
                  key=lambda o: o["spec"]["startTime"])


async def settled(emulator, name: str = "pacs", generation: int | None = None) -> dict:
    """The policy once the operator has observed its current generation (and that is ``generation``)."""
    def check():
        o = stored(emulator, name)
        st = (o or {}).get("status") or {}
        ok = st.get("observedGeneration") == o["metadata"]["generation"] if o else False
        if ok and generation is not None:
            ok = o["metadata"]["generation"] == generation
        return ok and o
    return await emulator.wait_for(check, timeout=20)
