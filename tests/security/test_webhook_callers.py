"""Finding 7 of the security review, the webhook's half, as the attacks: anyone who reached the webhook
port could send an AdmissionReview naming any user, and so write audit records ("alice's approval
was refused") and collect approval seals for records no API server ever saw. With the chart value
``webhook.clientCA`` (the session cluster's API server presents a certificate from a CA of its
own), nobody else gets through the TLS handshake; without it, refusals are logged, never audit_records."""
from __future__ import annotations

import json
import ssl
import urllib.error
import uuid

import aiohttp
import pytest

from lifeline.devstack import install
from lifeline.planning import restore as rules

pytestmark = pytest.mark.slow
FORGED = json.dumps([{"user": "alice", "decision": "Approved", "time": "2026-12-02T10:00:00Z"}])


def restore(namespace: str, annotations: dict) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore",
            "metadata": {"name": "pacs-back", "namespace": namespace, "uid": str(uuid.uuid4()), "annotations": annotations},
            "spec": {"recoveryPoint": "p1", "reason": "INC-9", "strategy": "NewClaim",
                     "target": {"pvc": {"claimName": "restored", "size": "1Gi"}}}}


def forged_review(namespace: str) -> dict:
    """An UPDATE that writes approval records directly, in the name of alice."""
    old = restore(namespace, {rules.ANN_REQUESTED_BY: "carol"})
    new = restore(namespace, {rules.ANN_REQUESTED_BY: "carol", rules.ANN_DECISIONS: FORGED})
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "operation": "UPDATE", "namespace": namespace, "name": "pacs-back",
        "kind": {"group": "dr.lifeline.io", "version": "v1alpha1", "kind": "Restore"},
        "resource": {"group": "dr.lifeline.io", "version": "v1alpha1", "resource": "restores"},
        "userInfo": {"username": "alice", "groups": ["dr-approvers"]}, "object": new, "oldObject": old,
        "dryRun": False}}


async def send(port: int, review: dict, *, cert=None) -> dict:
    """POST the review straight to the webhook, as an attacker on the cluster network would."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the attacker need not trust it
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    async with aiohttp.ClientSession() as http, http.post(
            f"https://127.0.0.1:{port}/restore-approvals", json=review, ssl=context) as resp:
        return await resp.json()


async def test_only_the_api_server_reaches_the_webhook(kube, cluster, audit_records):
    assert kube.release.webhook_client_ca, "the session's chart names the API server's webhook client CA"
    async with kube.operator():
        for cert in (None, cluster.identities["alice"]):  # nothing, or a person's certificate of the cluster CA
            with pytest.raises((ssl.SSLError, aiohttp.ClientConnectionError, ConnectionResetError)):  # the handshake
                await send(kube.release.webhook_port, forged_review(kube.namespace), cert=cert)
        # the API server's own call still goes through, and its refusals are audited
        install.bind_people(kube.request, kube.namespace)  # carol: a DBA here, not an approver
        kube.request("POST", f"/apis/dr.lifeline.io/v1alpha1/namespaces/{kube.namespace}/restores",
                     restore(kube.namespace, {}) | {"metadata": {"name": "pacs-back"}}, user="carol")
        with pytest.raises(urllib.error.HTTPError, match="requested this restore and cannot approve it"):
            kube.request("PATCH", f"/apis/dr.lifeline.io/v1alpha1/namespaces/{kube.namespace}/restores/pacs-back",
                         {"metadata": {"annotations": {rules.ANN_APPROVE: "mine"}}}, user="carol",
                         content_type="application/merge-patch+json")
    # (the API server may call a mutating webhook more than once for one PATCH: a record per call)
    assert {(r["action"], r["actor"], r["outcome"]) for r in audit_records
            if (r.get("subject") or {}).get("name") == "pacs-back" and r["outcome"] == "refused"} == {
        ("approval", "carol", "refused")}


async def test_an_unverified_caller_writes_no_audit_record(kube, audit_records):
    async with kube.operator(webhook_client_ca=None):  # a webhook that cannot tell who calls
        answer = await send(kube.release.webhook_port, forged_review(kube.namespace))
    assert answer["response"]["allowed"] is False
    assert "written by Lifeline's admission webhook only" in answer["response"]["status"]["message"]
    assert [r for r in audit_records if (r.get("subject") or {}).get("namespace") == kube.namespace] == []
