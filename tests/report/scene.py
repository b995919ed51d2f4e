"""A hospital's DR objects with realistic statuses, written through the API as the controllers would.

Specs come from examples/ (what a user applies); statuses are what the operator writes after
a month of running: PACS meets its RPO, the HIS database misses it, one drill missed its RTO,
the monitoring stack failed over once and came back. On the real API server they go in through the
chart's admission webhooks, answered by an operator that watches another, empty namespace, so that
no controller rewrites the statuses the scene sets.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from lifeline.api import BY_KIND
from lifeline.devstack import install
from lifeline.devstack.operator_thread import running_operator

NS = "hospital"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**delta) -> str:
    return ts(NOW - timedelta(**delta))


def _example(name: str, namespace: str) -> dict:
    body = yaml.safe_load((EXAMPLES / name).read_text())
    body["metadata"]["namespace"] = namespace
    return body


def cond(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": ago(days=1), "observedGeneration": 1}


def point(name: str, policy: str, type_: str, done: str, size: int, copies: list[str], key_ref: str,
          namespace: str = NS) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"policyName": policy, "type": type_, "sizeBytes": size, "keyRef": key_ref,
                     "manifestChecksum": "sha256:" + "ab" * 32, "startTime": done, "completionTime": done,
                     "copies": [{"destination": c, "repository": f"s3://dr-{c}/{policy}", "snapshotId": "f00d" * 16}
                                for c in copies]}}


def objects(namespace: str = NS) -> list[tuple[dict, dict]]:
    """(body, status) pairs in the order they are created, in ``namespace``."""
    pacs = _example("backuppolicy-pacs-images.yaml", namespace)
    his = _example("backuppolicy-his-database.yaml", namespace)
    drill_his = _example("restoredrill-his-monthly.yaml", namespace)
    drill_pacs = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill",
                  "metadata": {"name": "pacs-images-quarterly", "namespace": namespace},
                  "spec": {"policyName": "pacs-images"}}
    plan = _example("failoverplan-monitoring.yaml", namespace)
    pacs_key, his_key = pacs["spec"]["encryption"]["keyRef"], his["spec"]["encryption"]["keyRef"]
    restore = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore",
               "metadata": {"name": "his-back", "namespace": namespace},
               "spec": {"recoveryPoint": "his-database-20261123-0830", "reason": "INC-4711: table corruption",
                        "strategy": "NewClaim", "target": {"pvc": {"claimName": "his-restored", "size": "50Gi"}}}}
    out = [
        (pacs, {
            "observedGeneration": 1, "currentRPOSeconds": 420, "rpoTargetSeconds": 900, "recoveryPoints": 3,
            "lastSuccessfulBackupTime": ago(minutes=7),
            "lastBackup": {"recoveryPoint": "pacs-images-20261123-0953", "type": "incremental",
                           "startTime": ago(minutes=9), "completionTime": ago(minutes=7), "outcome": "Succeeded"},
            "destinations": [
                {"name": "local-nfs", "lastOutcome": "Succeeded", "lastSuccessTime": ago(minutes=7)},
                {"name": "offsite-s3", "offSite": True, "lastOutcome": "Succeeded", "lastSuccessTime": ago(minutes=7)}],
            "conditions": [cond("Ready", "True", "Reconciled"), cond("RPOMet", "True", "WithinObjective", "7m ≤ 15m"),
                           cond("RPOAchievable", "True", "ScheduleFits"), cond("KeysAvailable", "True", "KeyUsable"),
                           cond("OffSiteCopy", "True", "OffSiteCopyPresent")]}),
        (his, {
            "observedGeneration": 1, "currentRPOSeconds": 5400, "rpoTargetSeconds": 300, "recoveryPoints": 2,
            "lastSuccessfulBackupTime": ago(minutes=90),
            "lastBackup": {"type": "full", "startTime": ago(minutes=5), "completionTime": ago(minutes=4),
                           "outcome": "Failed", "message": "destination site-b-s3: S3 bucket 'dr-site-b' unreachable"},
            "destinations": [{"name": "site-b-s3", "offSite": True, "lastOutcome": "Failed",
                              "lastSuccessTime": ago(minutes=90), "lastAttemptTime": ago(minutes=4)}],
            "conditions": [cond("Ready", "True", "Reconciled"),
                           cond("RPOMet", "False", "RPOBreached", "newest point is 1h30m old; the RPO is 5m"),
                           cond("KeysAvailable", "True", "KeyUsable")]}),
        (point("pacs-images-20261123-0953", "pacs-images", "incremental", ago(minutes=7), 7 * 2**30,
               ["local-nfs", "offsite-s3"], pacs_key, namespace), {"phase": "Available"}),
        (point("pacs-images-20261123-0938", "pacs-images", "incremental", ago(minutes=22), 6 * 2**30,
               ["local-nfs", "offsite-s3"], pacs_key, namespace), {"phase": "Available"}),
        (point("pacs-images-20261123-0000", "pacs-images", "full", ago(hours=10), 812 * 2**30,
               ["local-nfs", "offsite-s3"], pacs_key, namespace), {"phase": "Available"}),
        (point("his-database-20261123-0830", "his-database", "full", ago(minutes=90), 38 * 2**30,
               ["site-b-s3"], his_key, namespace), {"phase": "Available"}),
        (drill_his, {"observedGeneration": 1, "history": [
            {"name": "his-database-monthly-20261101", "recoveryPoint": "his-database-20261101-0300",
             "startTime": ago(days=22), "completionTime": ago(days=22) , "totalSeconds": 241.5,
             "restoreSeconds": 200.2, "rtoSeconds": 300, "rtoMet": True, "pointAgeSeconds": 120,
             "rpoSeconds": 300, "rpoMet": True, "outcome": "Succeeded"}]}),
        (drill_pacs, {"observedGeneration": 1, "history": [
            {"name": "pacs-images-quarterly-20260801", "recoveryPoint": "pacs-images-20260801-0000",
             "startTime": ago(days=114), "totalSeconds": 1250, "rtoSeconds": 1800, "rtoMet": True,
             "outcome": "Succeeded"},
            {"name": "pacs-images-quarterly-20261101", "recoveryPoint": "pacs-images-20261101-0000",
             "startTime": ago(days=22), "totalSeconds": 2710, "rtoSeconds": 1800, "rtoMet": False,
             "outcome": "Succeeded", "message": "restore took 45m10s; the RTO is 30m"}]}),
        (plan, {"observedGeneration": 1, "phase": "Monitoring", "activeSite": "site-a", "history": [
            {"phase": "Degraded", "time": ago(days=3, minutes=10), "activeSite": "site-a", "reason": "ChecksFailing"},
            {"phase": "FailingOver", "time": ago(days=3, minutes=8), "activeSite": "site-a",
             "reason": "BreachWindowElapsed"},
            {"phase": "FailedOver", "time": ago(days=3, minutes=6, seconds=28), "activeSite": "site-b",
             "reason": "FailoverComplete", "message": "site site-b healthy; achieved RTO 212.0s",
             "achievedRTOSeconds": 212.0, "detectionSeconds": 120, "switchoverSeconds": 92},
            {"phase": "FailingBack", "time": ago(days=2), "activeSite": "site-b", "reason": "FailbackRequested"},
            {"phase": "Monitoring", "time": ago(days=2) , "activeSite": "site-a", "reason": "FailbackComplete",
             "message": "site site-a healthy after 61.0s", "switchoverSeconds": 61}]}),
        (restore, {"phase": "Succeeded", "requestedBy": "carol", "approvalPolicy": "his-critical",
                   "approvals": [
                       {"user": "erin", "time": ago(hours=5, minutes=50), "decision": "Approved",
                        "groups": ["his-department-heads"], "comment": "checked INC-4711"},
                       {"user": "frank", "time": ago(hours=5, minutes=45), "decision": "Approved",
                        "groups": ["it-management"]}],
                   "startTime": ago(hours=5, minutes=44), "completionTime": ago(hours=5, minutes=30),
                   "bytesRestored": 38 * 2**30, "jobName": "restore-his-back", "reason": "Restored",
                   "message": "his-database-20261123-0830 restored by Job restore-his-back"}),
    ]
    return out


@contextlib.asynccontextmanager
async def webhooks_served(kube) -> AsyncIterator[None]:
    """The chart's admission webhooks (failurePolicy Fail: nothing is created while nobody answers),
    answered by the operator as the chart's ServiceAccount watching an empty namespace of its own."""
    idle = f"{kube.namespace}-idle"
    request = kube.cluster.request
    config = install.operator_kubeconfig(request, kube.release, kube.cluster.url, kube.cluster.ca,
                                         kube.workdir / "webhooks.kubeconfig")
    certs = install.webhook_certificates(request, kube.release, kube.workdir / "webhook-tls")
    mark = kube.cluster.audit_position()

    def watched() -> set[str]:
        return {e["objectRef"]["resource"] for e in kube.cluster.watches(kube.operator_user, since=mark)
                if e.get("objectRef", {}).get("namespace") == idle}

    client_ca = install.webhook_client_ca_file(kube.release, kube.workdir)
    async with running_operator(config, watched, namespaces=[idle], webhook_port=kube.release.webhook_port,
                                webhook_cert_dir=str(certs), webhook_host="127.0.0.1", webhook_addr="127.0.0.1",
                                webhook_client_ca=str(client_ca) if client_ca else None):
        yield


async def apply(kube, client) -> dict[str, list[dict]]:
    """Create every object in the test's namespace (``client``: a :class:`lifeline.kube.Kube`) and write
    its status through the status subresource; return them as the API lists them."""
    async with webhooks_served(kube):
        for body, status in objects(kube.namespace):
            info = BY_KIND[body["kind"]]
            await client.create(info, kube.namespace, body)
            await client.patch(info, kube.namespace, body["metadata"]["name"], {"status": status}, subresource="status")
    return {kind: await client.list(BY_KIND[kind], kube.namespace)
            for kind in ("BackupPolicy", "RecoveryPoint", "RestoreDrill", "FailoverPlan", "Restore")}
