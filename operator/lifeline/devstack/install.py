"""Install Lifeline into a cluster the way a platform team does: the real ``helm install`` of the chart.

The operator then runs as the chart's Deployment, with the chart's ServiceAccount and RBAC, so a
verb missing from the chart fails where it would fail for a user. On the local control plane
(:mod:`lifeline.devstack.cluster`) its Pod is a process on this machine's network: the release gets
free ports for its health and webhook servers, and the API server calls the webhooks at
``https://127.0.0.1:PORT`` (the chart's ``webhook.url``), not through a Service.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .children import free_port

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "lifeline"
SYSTEM_NAMESPACE = "lifeline-system"
RELEASE = "lifeline"
OPERATOR_SA = f"system:serviceaccount:{SYSTEM_NAMESPACE}:{RELEASE}-operator"
# Which group gets which ClusterRole in a tenant namespace (lifeline.devstack.cluster.PEOPLE).
PEOPLE_BINDINGS = {"hospital-dba": "admin", "dr-approvers": "lifeline-restore-approver"}


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

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}-operator"

    def values(self) -> dict:
        return {"replicaCount": 1, "peering": "", "logFormat": "json",
                "metrics": {"port": self.health_port},
                "webhook": {"port": self.webhook_port, "url": f"https://127.0.0.1:{self.webhook_port}"},
                **self.extra}


def _helm(release: Release, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([str(release.helm), "--kubeconfig", str(release.kubeconfig), *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise InstallError(f"helm {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def install(kubeconfig: Path, helm: Path, *, values: dict | None = None, wait: float = 180) -> Release:
    """``helm install`` the chart (CRDs included) and wait until the operator is Ready."""
    release = Release(Path(kubeconfig), Path(helm), health_port=free_port(), webhook_port=free_port(),
                      extra=dict(values or {}))
    values_file = Path(kubeconfig).with_name(f"{release.name}-values.json")
    values_file.write_text(json.dumps(release.values()))
    _helm(release, "install", release.name, str(CHART), "--namespace", release.namespace, "--create-namespace",
          "--values", str(values_file), "--wait", "--timeout", f"{int(wait)}s", timeout=wait + 30)
    return release


def uninstall(release: Release) -> None:
    _helm(release, "uninstall", release.name, "--namespace", release.namespace, "--wait")


def bind_people(request, namespace: str) -> None:
    """RoleBindings in ``namespace`` for the people's groups (``request`` is ``Cluster.request``)."""
    for group, role in PEOPLE_BINDINGS.items():
        request("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{group}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]})


__all__ = ["InstallError", "OPERATOR_SA", "PEOPLE_BINDINGS", "Release", "bind_people", "install", "uninstall"]
