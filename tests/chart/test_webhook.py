"""The admission webhooks: the contract's paths and kinds, and certificates either way."""
from __future__ import annotations

import base64
import datetime

from cryptography import x509

from .render import NAMESPACE, one, render

KINDS = ["backuppolicies", "recoverypoints", "restoredrills", "restores", "failoverplans"]


def hooks(docs: list[dict]) -> tuple[dict, dict]:
    return (one(docs, "ValidatingWebhookConfiguration")["webhooks"][0],
            one(docs, "MutatingWebhookConfiguration")["webhooks"][0])


def test_paths_kinds_and_failure_policy(helm_bin):
    validate, approvals = hooks(render(helm_bin))
    for hook in (validate, approvals):
        assert hook["clientConfig"]["service"] == {"name": "lifeline-webhook", "namespace": NAMESPACE,
                                                   "path": hook["clientConfig"]["service"]["path"], "port": 443}
        assert hook["admissionReviewVersions"] == ["v1"]
    assert validate["clientConfig"]["service"]["path"] == "/validate"
    assert validate["rules"] == [{"apiGroups": ["dr.lifeline.io"], "apiVersions": ["v1alpha1"],
                                  "operations": ["CREATE", "UPDATE"], "resources": KINDS, "scope": "Namespaced"}]
    assert approvals["clientConfig"]["service"]["path"] == "/restore-approvals"
    assert approvals["rules"][0]["resources"] == ["restores"]
    assert approvals["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert approvals["failurePolicy"] == "Fail"
    assert "namespaceSelector" not in validate


def test_helm_generated_certificate_is_trusted_by_the_webhooks(helm_bin):
    docs = render(helm_bin)
    secret = one(docs, "Secret", "lifeline-webhook-tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"lifeline-webhook.{NAMESPACE}.svc" in names
    assert cert.not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
    for hook in hooks(docs):
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    volume = next(v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_cert_manager_when_its_api_is_present(helm_bin):
    docs = render(helm_bin, extra=("--api-versions", "cert-manager.io/v1"))
    cert = one(docs, "Certificate")
    issuer = one(docs, "Issuer")
    assert cert["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    assert cert["spec"]["secretName"] == "lifeline-webhook-tls"
    assert f"lifeline-webhook.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = one(docs, kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/lifeline-webhook"
        assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert not [d for d in docs if d["kind"] == "Secret"], "cert-manager writes the Secret"
    forced_off = render(helm_bin, "webhook.certificates=helm", extra=("--api-versions", "cert-manager.io/v1"))
    assert not [d for d in forced_off if d["kind"] == "Certificate"]


def test_namespaced_scope_limits_the_webhooks(helm_bin):
    for hook in hooks(render(helm_bin, "watchNamespaces={his,pacs}")):
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["his", "pacs"]}]


def test_webhook_off_renders_none(helm_bin):
    docs = render(helm_bin, "webhook.enabled=false")
    assert not {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Secret"} & {d["kind"] for d in docs}
    assert not [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "lifeline-webhook"]
