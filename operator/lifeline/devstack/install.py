"""Install Lifeline into a cluster the way a platform team does: the real ``helm install`` of the chart.

The operator then runs as the chart's Deployment, with the chart's ServiceAccount and RBAC, so a
verb missing from the chart fails where it would fail for a user. On the local control plane
(:mod:`lifeline.devstack.cluster`) its Pod is a process on this machine's network: the release gets
free ports for its health and webhook servers, and the API server calls the webhooks at
``https://127.0.0.1:PORT`` (the chart's ``webhook.url``), not through a Service.
"""
from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from .children import reserved_port
from .cluster import PEOPLE

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "lifeline"
SYSTEM_NAMESPACE = "lifeline-system"
RELEASE = "lifeline"
OPERATOR_SA = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{RELEASE}-operator"
# Which group gets which ClusterRole in a tenant namespace (lifeline.devstack.cluster.PEOPLE).
PEOPLE_BINDINGS = {"hospital-dba": "admin", "dr-approvers": "lifeline-restore-approver",
                   "it-management": "lifeline-shred-reviewer"}


class InstallError(RuntimeError):
    pass


@dataclass
class Release:
    kubeconfig: Path
    helm: Path
    namespace: str = SYSTEM_NAMESPACE
    name: str = RELEASE
    health_port: int = 0
    webhook_port: int = 0
    extra: dict = field(default_factory=dict)
    webhook_client_ca: str = ""  # PEM: only the API server's certificate from this CA reaches the webhooks

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-operator"

    def values(self) -> dict:
        return {"replicaCount": 1, "peering": "", "logFormat": "json",
                "metrics": {"port": self.health_port},
                "webhook": {"port": self.webhook_port, "url": f"https://127.0.0.1:{self.webhook_port}",
                            "clientCA": self.webhook_client_ca},
                **self.extra}


def _helm(release: Release, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([str(release.helm), "--kubeconfig", str(release.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise InstallError(f"helm {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def install(kubeconfig: Path, helm: Path, *, values: dict | None = None, wait: float = 180,
            webhook_client_ca: Path | None = None) -> Release:
    """``helm install`` the chart (CRDs included) and wait until the operator is Ready.

    ``webhook_client_ca``: the CA of the API server's certificate towards webhooks
    (:attr:`lifeline.devstack.cluster.Cluster.webhook_client_ca`); the webhooks then take no other caller."""
    health = reserved_port()
    webhook = next(p for p in iter(reserved_port, None) if p != health)
    release = Release(Path(kubeconfig), Path(helm), health_port=health, webhook_port=webhook,
                      extra=dict(values or {}),
                      webhook_client_ca=webhook_client_ca.read_text() if webhook_client_ca else "")
    values_file = Path(kubeconfig).with_name(f"{release.name}-values.json")
    values_file.write_text(json.dumps(release.values()))
    _helm(release, "install", release.name, str(CHART), "--namespace", release.namespace, "--create-namespace",
          "--values", str(values_file), "--wait", "--timeout", f"{int(wait)}s", timeout=wait + 30)
    return release


def scale(release: Release, replicas: int, wait: float = 180) -> None:
    """``helm upgrade --reuse-values --set replicaCount=N``: 0 stops the operator, 1 starts it again."""
    _helm(release, "upgrade", release.name, str(CHART), "--namespace", release.namespace, "--reuse-values",
          "--set", f"replicaCount={replicas}", "--wait", "--timeout", f"{int(wait)}s", timeout=wait + 30)


def service_account_token(request, namespace: str, name: str, seconds: int = 24 * 3600) -> str:
    """A token for a ServiceAccount (TokenRequest), as the kubelet gets one for a Pod."""
    answer = request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                      "spec": {"expirationSeconds": seconds}})
    return answer["status"]["token"]


def operator_token(request, release: Release, seconds: int = 24 * 3600) -> str:
    """A token of the chart's operator ServiceAccount."""
    return service_account_token(request, release.namespace, release.service_account.rsplit(":", 1)[1], seconds)


SCRAPER = "metrics-scraper"


def metrics_token(request, release: Release, seconds: int = 3600) -> str:
    """A bearer token that may read the operator's /metrics: of a ServiceAccount ``metrics-scraper``
    bound to ``<release>-metrics-reader``, as a platform team binds Prometheus's (made once)."""
    base = f"/api/v1/namespaces/{release.namespace}/serviceaccounts"
    try:
        request("GET", f"{base}/{SCRAPER}")
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        request("POST", base, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SCRAPER}})
        request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{release.name}-{SCRAPER}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": f"{release.name}-metrics-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": SCRAPER, "namespace": release.namespace}]})
    return service_account_token(request, release.namespace, SCRAPER, seconds)


def operator_kubeconfig(request, release: Release, server: str, ca: Path, path: Path,
                        seconds: int = 24 * 3600) -> Path:
    """A kubeconfig that logs in as the chart's operator ServiceAccount (a TokenRequest's token).

    For an operator run outside its Pod (a test's own process, a debugger): it still has exactly
    the chart's RBAC. ``request`` is ``Cluster.request``.
    """
    sa = release.service_account.rsplit(":", 1)[1]
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "cluster", "cluster": {"server": server, "certificate-authority": str(ca)}}],
              "users": [{"name": sa, "user": {"token": operator_token(request, release, seconds)}}],
              "contexts": [{"name": sa, "context": {"cluster": "cluster", "user": sa}}],
              "current-context": sa}
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


def webhook_certificates(request, release: Release, directory: Path) -> Path:
    """The chart's webhook serving certificate written as ``tls.crt``/``tls.key``, as its Pod mounts it."""
    secret = request("GET", f"/api/v1/namespaces/{release.namespace}/secrets/{release.name}-webhook-tls")
    directory.mkdir(parents=True, exist_ok=True)
    for key in ("tls.crt", "tls.key"):
        (directory / key).write_bytes(base64.b64decode(secret["data"][key]))
    (directory / "tls.key").chmod(0o600)
    return directory


def status(release: Release) -> str:
    """``helm status``: raises :class:`InstallError` when the release is not installed."""
    return _helm(release, "status", release.name, "--namespace", release.namespace)


def webhook_client_ca_file(release: Release, directory: Path) -> Path | None:
    """The release's ``webhook.clientCA`` as a file, as the chart mounts it for the operator's Pod."""
    if not release.webhook_client_ca:
        return None
    path = Path(directory) / "webhook-client-ca.crt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(release.webhook_client_ca)
    return path


def uninstall(release: Release) -> None:
    _helm(release, "uninstall", release.name, "--namespace", release.namespace, "--wait")


def bind_people(request, namespace: str, *, by_name: bool = False) -> None:
    """RoleBindings in ``namespace`` for the people's groups (``request`` is ``Cluster.request``).

    ``by_name`` binds each member of the group by user name instead, for a cluster where the people
    are impersonated without groups (:mod:`tests.any_cluster`)."""
    for group, role in PEOPLE_BINDINGS.items():
        subjects = ([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": person}
                     for person, groups in PEOPLE.items() if group in groups] if by_name
                    else [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}])
        request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{group}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects})


def grant_tenant(request, namespace: str, release: str = RELEASE, release_namespace: str = SYSTEM_NAMESPACE) -> None:
    """What lets Lifeline work in a namespace (``request`` is ``Cluster.request``): RoleBindings of the
    operator's ServiceAccount to ``<release>-operator-tenant`` (read Secrets, exec into Pods: the
    namespace's admin may grant it) and ``<release>-operator-objects`` (the readers of resources
    sources: a cluster admin grants it), which the chart never grants cluster-wide."""
    for role in ("tenant", "objects"):
        request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{release}-operator-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{release}-operator-{role}"},
            "subjects": [{"kind": "ServiceAccount", "name": f"{release}-operator", "namespace": release_namespace}]})


__all__ = ["InstallError", "OPERATOR_SA", "PEOPLE_BINDINGS", "Release", "bind_people", "grant_tenant", "install",
           "metrics_token", "operator_kubeconfig", "operator_token", "scale", "service_account_token", "status", "uninstall",
           "webhook_certificates", "webhook_client_ca_file"]
