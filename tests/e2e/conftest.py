"""The end-to-end tests' stack, on the session's real control plane (tests/cluster_fixtures.py): a
fresh namespace per test with the claims and key Secret a policy names (tests/backup's ``seeded``),
the real operator as the chart's ServiceAccount (in this process, or as a killable process:
``operator_process.py``), Jobs run by the real Job controller and the process kubelet, and real
OpenBao / moto S3 where a test needs them. The operator's clock is frozen at the test's start and
moves only when a test moves it; the agent runs on real time.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from lifeline.devstack import install, live
from lifeline.devstack.children import wait_for
from tests.backup.conftest import (  # noqa: F401  (fixtures, and the readers the tests here share)
    CLAIMS, clock, cond, events, fast_timers, key_text, points, stored, volumes, wait_event,
)
from tests.drill.conftest import backed_up, drill, last_run, policy, run_drill  # noqa: F401 - shared helpers

from .processes import release

POINT = "recoverypoints"
@pytest.fixture
def claims() -> tuple[str, ...]:
    """The claims :func:`seeded` makes, each backed by ``volumes[name]``."""
    return CLAIMS


@pytest.fixture
def seeded(kube, volumes, key_text, claims):
    """tests/backup's ``seeded`` (the claims and the key Secret the default :func:`policy` names),
    with the claims made together and waited for together.

    The PersistentVolume controller's volume and claim workers race over a pre-bound volume's
    status; the loser's claim stays Pending until the next resync (``--pvclaimbinder-sync-period``,
    15 s), and a Pod whose claim is not Bound is not scheduled. Made one after the other, three
    claims can cost three resyncs; made together, at most one.
    """
    for claim in claims:
        live.host_claim(kube.cluster, kube.namespace, claim, volumes[claim])
    kube.secret("pacs-key", {"key": key_text})

    def bound() -> bool:
        return all(((kube.stored("persistentvolumeclaims", None, c) or {}).get("status") or {}).get("phase")
                   == "Bound" for c in claims)
    wait_for(bound, 60, "the claims to bind", interval=0.05)
    yield kube
    for claim in claims:  # the volumes are cluster-scoped: the namespace's deletion leaves them
        kube.delete("persistentvolumes", f"{kube.namespace}-{claim}")


async def settled(kube, name: str = "pacs", timeout: float = 30) -> dict:
    """The policy once its status is about its latest generation and its CronJobs exist."""
    def check():
        o = stored(kube, name)
        st = (o or {}).get("status") or {}
        if not o or st.get("observedGeneration") != o["metadata"]["generation"] or not st.get("cronJobs"):
            return None
        return o if all(kube.stored("cronjobs", None, c) for c in st["cronJobs"]) else None
    return await kube.wait_for(check, timeout=timeout)


async def recorded(kube, job: str, name: str = "pacs", timeout: float = 30) -> dict:
    """The policy once its lastBackup is the finished Job ``job``."""
    def check():
        o = stored(kube, name)
        lb = ((o or {}).get("status") or {}).get("lastBackup") or {}
        return o if lb.get("job") == job and lb.get("outcome") not in (None, "Running") else None
    return await kube.wait_for(check, timeout=timeout)


async def start_job(kube, cronjob: str) -> str:
    """``kubectl create job --from=cronjob/NAME`` without waiting for its end; the Job's name."""
    return await asyncio.to_thread(live.start_cronjob, kube.cluster, kube.namespace, cronjob)


def created(kube, resource: str, *, namespace: str | None = None, since: int = 0) -> int:
    """Objects the operator really created (POSTs the API server answered 201), from the audit log.

    A POST answered 409 (already there) creates nothing.
    """
    return sum(1 for w in kube.writes[since:] if w.resource == resource and w.method == "POST"
               and w.subresource is None and w.status == 201
               and (namespace is None or w.namespace == namespace))


@pytest.fixture
def drill_timer(monkeypatch):
    """The drill controller re-reads its drills every 50 ms of real time (what it compares is the
    frozen clock); set in the environment, so an operator process started by the test inherits it.
    The timer is also what notices a sandbox Job's end: the operator watches Jobs in the test's
    namespace only, not in the sandbox."""
    monkeypatch.setenv("LIFELINE_DRILL_INTERVAL", "0.05")


@pytest.fixture
def control() -> Path:
    """A directory for a dump's start flag and gate, outside every path a pod mounts (a pod's /tmp
    is its own emptyDir, so a path under tmp_path would be mapped away from the test)."""
    path = Path(tempfile.mkdtemp(prefix="lifeline-e2e-", dir="/var/tmp"))
    yield path
    for gate in path.glob("*gate"):
        release(gate)
    shutil.rmtree(path, ignore_errors=True)


def gated_dump(control: Path, size: int, prefix: str = "dump") -> tuple[list[str], Path, Path]:
    """A dump command that streams ``size`` random bytes, says so, then waits at a FIFO gate for its tail."""
    import os

    started, gate = control / f"{prefix}-started", control / f"{prefix}-gate"
    os.mkfifo(gate)
    return ["/bin/sh", "-c", f"head -c {size} /dev/urandom; : > {started}; cat {gate}"], started, gate


# ---- Vault, as pods reach it: a Kubernetes login with their ServiceAccount token

def vault_kubernetes_login(kube, server, transit, monkeypatch, **settings: str) -> str:
    """Let this test's pods and its operator log in to ``server`` (OpenBao) with their ServiceAccount
    tokens, as in a cluster: OpenBao asks the API server who a token belongs to (a TokenReview, as a
    reviewer bound to ``system:auth-delegator``) and grants the transit mount ``transit.mount``.

    The operator (in this process) gets VAULT_ADDR and the role by environment, as the chart's
    ``extraEnv`` sets them, and its own token from a file (in its Pod, the mounted token); it hands
    the same settings (and ``settings``, e.g. LIFELINE_VAULT_TIMEOUT) to the Jobs it creates. No
    Vault token reaches a pod. Returns the role's name.
    """
    import secrets as _secrets

    from lifeline.devstack.openbao import trust_cluster
    from lifeline.keys import health

    trust_cluster(server, kube.cluster)
    client = server.client()
    role = f"e2e-{_secrets.token_hex(4)}"
    client.sys.create_or_update_policy(name=role, policy=f'path "{transit.mount}/*" '
                                                        '{ capabilities = ["create", "read", "update"] }')
    operator_sa = kube.release.service_account.rsplit(":", 1)[1]
    client.auth.kubernetes.create_role(role, bound_service_account_names=["default", operator_sa],
                                       bound_service_account_namespaces=["*"], policies=[role], ttl="1h")
    token_file = kube.workdir / "operator-sa-token"
    token_file.write_text(install.operator_token(kube.request, kube.release))
    for name in ("VAULT_TOKEN", "BAO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"VAULT_ADDR": transit.addr, "LIFELINE_VAULT_AUTH": "kubernetes",
                        "LIFELINE_VAULT_ROLE": role, "LIFELINE_VAULT_SA_TOKEN_PATH": str(token_file),
                        **settings}.items():
        monkeypatch.setenv(name, value)
    health.clear_cache()
    return role
