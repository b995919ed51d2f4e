"""The restore tests' cluster: people with tokens, the approver role bound to two of them, the
operator serving its admission webhooks over HTTPS (a certificate from --webhook-cert-dir), and
the emulator calling them through stored Mutating/ValidatingWebhookConfigurations."""
from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from lifeline.clock import FrozenClock
from lifeline.devstack.emulator import make_emulator, write_kubeconfig
from lifeline.devstack.operator_thread import until
from lifeline.webhooks.server import WebhookServer
from tests.integration.operator_harness import START, running_operator
from tests.realparts.ports import free_port

NS = "hospital"
# token -> (user, groups); alice requests, bob and carol approve, mallory holds no approver role
PEOPLE = {
    "t-alice": ("alice@hospital.example", ["his-oncall"]),
    "t-bob": ("bob@hospital.example", ["dr-approvers"]),
    "t-carol": ("carol@hospital.example", []),
    "t-mallory": ("mallory@hospital.example", ["his-oncall"]),
}
APPROVER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "lifeline-restore-approver"},
    "rules": [{"apiGroups": ["dr.lifeline.io"], "resources": ["restores"],
               "verbs": ["get", "list", "watch", "patch", "approve"]}],
}
REQUESTER_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
    "metadata": {"name": "lifeline-restore-requester"},
    "rules": [{"apiGroups": ["dr.lifeline.io"], "resources": ["restores"],
               "verbs": ["get", "list", "watch", "create", "patch"]}],
}


def binding(name: str, role: str, subjects: list[dict]) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def emulator(clock):
    em = make_emulator(clock=clock)
    em.seed("v1/namespaces", {"metadata": {"name": NS}})
    for token, (user, groups) in PEOPLE.items():
        em.admission.add_user(token, user, groups)
    em.admission.add_user("emulator", "system:serviceaccount:lifeline-system:lifeline")  # the operator
    em.seed("rbac.authorization.k8s.io/v1/clusterroles", APPROVER_ROLE)
    em.seed("rbac.authorization.k8s.io/v1/clusterroles", REQUESTER_ROLE)
    # as a hospital binds them (docs/restore.md): a group and a single person approve, on-call requests
    em.seed("rbac.authorization.k8s.io/v1/rolebindings", binding("restore-approvers", "lifeline-restore-approver", [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dr-approvers"},
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol@hospital.example"}]))
    em.seed("rbac.authorization.k8s.io/v1/rolebindings", binding("restore-requesters", "lifeline-restore-requester", [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "his-oncall"}]))
    return em


@pytest.fixture
def people(kube_url, tmp_path) -> dict[str, Path]:
    """A kubeconfig per person (alice, bob, carol, mallory)."""
    return {user.split("@")[0]: write_kubeconfig(kube_url, tmp_path / f"kubeconfig-{token}", namespace=NS,
                                                 token=token)
            for token, (user, _) in PEOPLE.items()}


@pytest.fixture
def webhook_certs(tmp_path) -> Path:
    """tls.crt/tls.key for 127.0.0.1, as a cert-manager Secret mounted at --webhook-cert-dir holds them."""
    d = tmp_path / "webhook-certs"
    d.mkdir()
    cert, key = WebhookServer.build_certificate(["127.0.0.1"])
    (d / "tls.crt").write_bytes(cert)
    (d / "tls.key").write_bytes(key)
    return d


def webhook_configurations(port: int, ca_bundle: bytes) -> tuple[dict, dict]:
    """What the chart installs, pointed at a URL instead of the Service."""
    ca = base64.b64encode(ca_bundle).decode()
    rule = {"apiGroups": ["dr.lifeline.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"]}
    mutating = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "lifeline"},
                "webhooks": [{"name": "restore-approvals.dr.lifeline.io", "admissionReviewVersions": ["v1"],
                              "sideEffects": "NoneOnDryRun", "failurePolicy": "Fail", "timeoutSeconds": 10,
                              "clientConfig": {"url": f"https://127.0.0.1:{port}/restore-approvals", "caBundle": ca},
                              "rules": [{**rule, "resources": ["restores"]}]}]}
    validating = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                  "metadata": {"name": "lifeline"},
                  "webhooks": [{"name": "validate.dr.lifeline.io", "admissionReviewVersions": ["v1"],
                                "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 10,
                                "clientConfig": {"url": f"https://127.0.0.1:{port}/validate", "caBundle": ca},
                                "rules": [{**rule, "resources": ["backuppolicies", "recoverypoints", "restoredrills",
                                                                 "restores", "failoverplans"]}]}]}
    return mutating, validating


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def fast_env(monkeypatch):
    monkeypatch.setenv("LIFELINE_RPO_CHECK_INTERVAL", "0.05")
    monkeypatch.setenv("LIFELINE_FACTS_TTL", "0")
    monkeypatch.setenv("LIFELINE_AGENT_IMAGE", "ghcr.io/lifeline-dr/lifeline:test")


@pytest.fixture
async def operator(kubeconfig, emulator, clock, webhook_certs, monkeypatch, fast_env):
    """The operator with its webhooks on a loopback port, registered with the emulator."""
    port = free_port()
    monkeypatch.setenv("LIFELINE_WEBHOOK_PORT", str(port))
    monkeypatch.setenv("LIFELINE_WEBHOOK_CERT_DIR", str(webhook_certs))
    monkeypatch.setenv("LIFELINE_WEBHOOK_HOST", "127.0.0.1")
    monkeypatch.setenv("LIFELINE_WEBHOOK_ADDR", "127.0.0.1")
    async with running_operator(kubeconfig, emulator, clock) as ctx:
        await until(lambda: _listening(port), timeout=30)
        for config in webhook_configurations(port, (webhook_certs / "tls.crt").read_bytes()):
            kind = config["kind"].lower() + "s"
            emulator.seed(f"admissionregistration.k8s.io/v1/{kind}", config)
        yield ctx


def restore_body(name: str = "his-after-corruption", point: str = "pacs-20261123-0200", **spec) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": name},
            "spec": {"recoveryPoint": point, "reason": "INC-4711: table corruption",
                     "target": {"pvc": {"claimName": "pacs-restored"}}, **spec}}
