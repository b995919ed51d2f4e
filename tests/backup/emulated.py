"""The emulator's fixtures, for the one backup test file still on it (test_snapshots: CSI snapshots
have no real controller here yet; see docs/testing.md): one frozen clock shared by the emulator,
the operator and the job runner, a namespace with the PVCs and Secrets a policy names, and the
runner that plays kubelet and CronJob controller for real agent runs. Nothing new goes here."""
from __future__ import annotations

import base64

import pytest

from lifeline.clock import FrozenClock
from lifeline.devstack.emulator import make_emulator
from lifeline.devstack.job_runner import JobRunner
from tests.integration.operator_harness import START
from tests.kube_client import Api

from .conftest import fast_timers, key_text, policy, volumes  # noqa: F401 - the same, on the emulator

NS = "hospital"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def emulator(clock):
    """The honest emulator, stamping creation times from the same clock as the operator."""
    em = make_emulator(clock=clock)
    em.seed("v1/namespaces", {"metadata": {"name": NS}})
    return em


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def seed_pvc(emulator, name: str, namespace: str = NS) -> None:
    emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": name, "namespace": namespace},
                                                 "spec": {"accessModes": ["ReadWriteOnce"]}})


def seed_secret(emulator, name: str, data: dict[str, str | bytes], namespace: str = NS) -> None:
    emulator.seed("v1/secrets", {"metadata": {"name": name, "namespace": namespace},
                                 "data": {k: b64(v) for k, v in data.items()}})


@pytest.fixture
async def api(kubeconfig) -> Api:
    api = Api(kubeconfig)
    yield api
    api.client.close()


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
