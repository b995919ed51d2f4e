"""pytest fixtures for a real Kubernetes control plane (lifeline.devstack.cluster).

One cluster per test session (per xdist worker): etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the process kubelet, started in a few seconds from the binary that
``make test`` builds. Tests keep apart by namespace: ``namespace`` makes a fresh one per test
and deletes it after (through the real namespace controller).
``LIFELINE_TEST_KUBECONFIG`` runs the tests marked ``any_cluster`` on a cluster of your own
instead (:mod:`tests.any_cluster`).
"""
from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifeline.devstack import install
from lifeline.devstack.cluster import MISSING, Cluster, kube_binary

from . import any_cluster
from .realparts.fixtures import missing


def pytest_collection_modifyitems(config, items) -> None:
    any_cluster.skip_local_only(items)


def external(cluster) -> bool:
    """Whether the tests run on a cluster they did not start (``LIFELINE_TEST_KUBECONFIG``)."""
    return getattr(cluster, "external", False) is True


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    if (given := any_cluster.given()) is not None:
        yield any_cluster.ExternalCluster(given, tmp_path_factory.mktemp("cluster"))
        return
    if kube_binary() is None:
        missing(MISSING)
    # The operator's watches are audited too: how a test knows the operator it started listens.
    with Cluster(tmp_path_factory.mktemp("cluster"), name="test", audit_reads_of=(install.OPERATOR_SA,),
                 crds=install.CHART / "crds", cronjobs=False, snapshots=True) as running:
        yield running


@pytest.fixture()
def cronjob_controller(cluster: Cluster) -> Iterator[None]:
    """The real CronJob controller, for this test only: the others start every Job themselves, and a
    scheduled one firing in the middle (a ``*/15`` schedule crossing a quarter hour) would add a point.
    A given cluster runs it all the time."""
    if external(cluster):
        yield
        return
    cluster.start_component("cronjob-controller")
    yield
    cluster.stop_component("cronjob-controller")


@pytest.fixture(scope="session")
def chart(cluster: Cluster, helm_bin) -> install.Release:
    """Lifeline installed by ``helm install`` (CRDs, RBAC, webhooks), its operator scaled to zero.

    Tests run the operator themselves: in their own process as the chart's ServiceAccount
    (:meth:`tests.live_kube.LiveKube.operator`), or as the chart's Pod (``tests/on_cluster``).
    On a given cluster, the release installed there (``LIFELINE_TEST_RELEASE``, by default
    ``lifeline-system/lifeline``), running as its owner left it.
    """
    if external(cluster):
        namespace, name = any_cluster.release_name()
        release = install.Release(cluster.kubeconfig, helm_bin, namespace=namespace, name=name)
        install.status(release)  # a clear error now if nothing is installed there
        return release
    return install.install(cluster.kubeconfig, helm_bin, values={"replicaCount": 0},
                           webhook_client_ca=cluster.webhook_client_ca)


@pytest.fixture()
def kube(cluster: Cluster, chart: install.Release, namespace: str, tmp_path: Path):
    """The test's view of the real API server, in a fresh namespace (:class:`tests.live_kube.LiveKube`)."""
    from .live_kube import LiveKube

    view = LiveKube(cluster, namespace, chart, tmp_path)
    yield view
    view.close()


@pytest.fixture()
def admin_kubeconfig(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The admin kubeconfig, made the default for this test (``$KUBECONFIG`` and the client's default)."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    import kubernetes.config.kube_config as kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(cluster.kubeconfig))
    return cluster.kubeconfig


@pytest.fixture()
def kubectl(cluster: Cluster, kubectl_bin: Path):
    """``kubectl(*args, user=None, input=None, check=True)`` against the cluster; returns stdout."""
    def run(*args: str, user: str | None = None, input: str | None = None, check: bool = True) -> str:
        argv = [str(kubectl_bin), "--kubeconfig", str(cluster.kubeconfig)]
        if user:
            argv += ["--user", user]
        proc = subprocess.run([*argv, *args], input=input, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc.stdout if check else proc.stdout + proc.stderr
    return run


@pytest.fixture()
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted after it (the namespace controller empties it)."""
    name = f"t-{secrets.token_hex(4)}"
    cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name}})
    release_namespace, release = any_cluster.release_name()
    # as the namespace's admin would: Lifeline works here
    install.grant_tenant(cluster.request, name, release, release_namespace)
    yield name
    try:
        cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    except Exception:  # noqa: BLE001 - the cluster may be stopped by the test itself
        pass



@pytest.fixture(scope="session")
def cluster_vault(cluster: Cluster, openbao):
    """The session's OpenBao with Kubernetes login for the session cluster (role ``lifeline-agent``):
    Pods log in with their own ServiceAccount tokens, reviewed by the real API server."""
    from lifeline.devstack.openbao import trust_cluster

    trust_cluster(openbao, cluster)
    return openbao


@pytest.fixture()
def operator_logs_in_to_vault(kube, cluster_vault, monkeypatch, tmp_path):
    """The in-process operator's Vault settings, as the chart sets them for its Pod: the address, and
    Kubernetes login with the operator's own ServiceAccount token (Jobs get the address and role, and
    log in with theirs)."""
    from lifeline.keys import health

    token = tmp_path / "operator-sa-token"
    token.write_text(install.operator_token(kube.cluster.request, kube.release))
    health.clear_cache()
    for name, value in {"VAULT_ADDR": cluster_vault.addr, "LIFELINE_VAULT_AUTH": "kubernetes",
                        "LIFELINE_VAULT_ROLE": "lifeline-agent", "LIFELINE_VAULT_SA_TOKEN_PATH": str(token),
                        "LIFELINE_VAULT_RETRIES": "1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    return cluster_vault
