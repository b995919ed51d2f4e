"""The Helm chart renders valid objects and grants the operator what kube.py calls."""
from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lifeline.kube import VERBS_USED

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lifeline"


def render(helm: Path, *values: str) -> list[dict]:
    args = [str(helm), "template", "lifeline", str(CHART), "--namespace", "lifeline-system"]
    for v in values:
        args += ["--set", v]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_lints(helm_bin):
    result = subprocess.run([str(helm_bin), "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [(), ("watchNamespaces={his,pacs}",), ("peering=", "replicaCount=1")])
def test_every_rendered_object_is_valid_kubernetes(helm_bin, values):
    docs = render(helm_bin, *values)
    assert {d["kind"] for d in docs} >= {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"}
    for doc in docs:
        if doc["apiVersion"].startswith("kopf.dev/"):
            continue  # a custom resource; its CRD ships in the chart's crds/
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_watch_namespaces_reach_the_operator_args(helm_bin):
    deploy = next(d for d in render(helm_bin, "watchNamespaces={his,pacs}") if d["kind"] == "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--namespace=his", "--namespace=pacs"]


def test_operator_role_grants_every_call_kube_py_makes(helm_bin):
    role = next(d for d in render(helm_bin) if d["kind"] == "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert VERBS_USED <= granted, f"missing: {sorted(VERBS_USED - granted)}"
    # The one delete: a BackupPolicy's CronJob whose schedule kind left the spec (nothing else
    # removes it; owner-reference garbage collection only acts when the policy itself goes).
    allowed_deletes = {("batch", "cronjobs", "delete")}
    assert not any(v in {"*", "delete", "deletecollection"} for *_, v in granted - allowed_deletes), \
        "no wildcard or delete rights"
    assert not any("*" in (g, r) for g, r, _ in granted), "no wildcard groups or resources"


def test_pod_is_hardened(helm_bin):
    deploy = next(d for d in render(helm_bin) if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
