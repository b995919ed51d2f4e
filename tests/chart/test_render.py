"""`helm lint` and `helm template` over the default values and the variants people install.

Every rendered object of a built-in kind passes kubernetes-validate for Kubernetes 1.30
(strict: unknown fields fail). Kinds backed by CRDs kubernetes-validate does not know are
checked otherwise: kopf's peerings against the CRD schema the chart ships; ServiceMonitor,
PrometheusRule, Issuer and Certificate structurally (the fields their operators require).
"""
from __future__ import annotations

import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .render import CHART, NAMESPACE, helm_template, one, render, rule_set

CERT_MANAGER = ("--api-versions", "cert-manager.io/v1")
VARIANTS = {
    "defaults": ((), ()),
    "namespaced": (("watchNamespaces={his,pacs}",), ()),
    "cert-manager": ((), CERT_MANAGER),
    "cert-manager-issuer": (("webhook.certManager.issuerRef.name=hospital-ca",
                             "webhook.certManager.issuerRef.kind=ClusterIssuer"), CERT_MANAGER),
    "monitoring": (("metrics.serviceMonitor.enabled=true", "prometheusRule.enabled=true",
                    "metrics.serviceMonitor.labels.release=kps"), ()),
    "webhook-off": (("webhook.enabled=false",), ()),
    "standalone": (("peering=", "replicaCount=1", "podDisruptionBudget.enabled=false",
                    "rbac.peopleRoles=false", "dashboard.enabled=false"), ()),
}


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in the chart's crds/."""
    out = {}
    for path in (CHART / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd["kind"] == "CustomResourceDefinition":
                for version in crd["spec"]["versions"]:
                    key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                    out[key] = version["schema"]["openAPIV3Schema"]
    return out


def check_servicemonitor(doc: dict) -> None:
    spec = doc["spec"]
    assert spec["selector"]["matchLabels"] and spec["endpoints"], "a ServiceMonitor selects a Service and an endpoint"
    assert set(spec) <= {"jobLabel", "selector", "namespaceSelector", "endpoints"}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scheme", "bearerTokenFile"} and endpoint["port"]


def check_prometheusrule(doc: dict) -> None:
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert isinstance(rule["expr"], str) and ("alert" in rule) != ("record" in rule)
            assert all(isinstance(v, str) for v in {**rule.get("labels", {}), **rule.get("annotations", {})}.values())


def check_issuer(doc: dict) -> None:
    assert doc["spec"] == {"selfSigned": {}}


def check_certificate(doc: dict) -> None:
    spec = doc["spec"]
    assert spec["secretName"] and spec["dnsNames"] and spec["issuerRef"]["name"]
    assert spec["issuerRef"].get("kind", "Issuer") in {"Issuer", "ClusterIssuer"}
    assert set(spec) <= {"secretName", "duration", "dnsNames", "issuerRef", "privateKey"}


STRUCTURAL = {"monitoring.coreos.com/v1/ServiceMonitor": check_servicemonitor,
              "monitoring.coreos.com/v1/PrometheusRule": check_prometheusrule,
              "cert-manager.io/v1/Issuer": check_issuer,
              "cert-manager.io/v1/Certificate": check_certificate}


def validate(doc: dict, schemas: dict) -> str:
    """Validate one object; returns how it was checked."""
    key = (doc["apiVersion"], doc["kind"])
    if key in schemas:
        jsonschema.validate({k: v for k, v in doc.items() if k not in {"apiVersion", "kind", "metadata"}},
                            schemas[key])
        return "crd-schema"
    check = STRUCTURAL.get(f"{doc['apiVersion']}/{doc['kind']}")
    if check:
        check(doc)
        return "structural"
    kubernetes_validate.validate(doc, "1.30", strict=True)
    return "kubernetes-validate"


def test_chart_lints_strict(helm_bin):
    for values in ([], ["--set", "watchNamespaces={his}"], ["--set", "prometheusRule.enabled=true"]):
        result = subprocess.run([str(helm_bin), "lint", "--strict", str(CHART), *values],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_is_valid(helm_bin, variant):
    values, extra = VARIANTS[variant]
    docs = render(helm_bin, *values, extra=extra)
    schemas = crd_schemas()
    checked = {f"{d['kind']}/{d['metadata']['name']}": validate(d, schemas) for d in docs}
    assert "kubernetes-validate" in checked.values()
    for doc in docs:  # every object says what it belongs to
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lifeline", doc["metadata"]["name"]
        if doc["kind"] not in {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering",
                               "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                               "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}:
            assert doc["metadata"].get("namespace"), f"{doc['kind']}/{doc['metadata']['name']} has no namespace"


def test_the_variants_render_what_they_promise(helm_bin):
    kinds = {v: {d["kind"] for d in render(helm_bin, *vals, extra=ex)} for v, (vals, ex) in VARIANTS.items()}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
            "PodDisruptionBudget", "ClusterKopfPeering", "ConfigMap", "Secret",
            "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} <= kinds["defaults"]
    assert {"ServiceMonitor", "PrometheusRule"} & kinds["defaults"] == set()
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds["monitoring"]
    assert {"Role", "RoleBinding", "KopfPeering"} <= kinds["namespaced"] and "ClusterKopfPeering" not in kinds["namespaced"]
    assert {"Issuer", "Certificate"} <= kinds["cert-manager"] and "Secret" not in kinds["cert-manager"]
    assert "Issuer" not in kinds["cert-manager-issuer"] and "Certificate" in kinds["cert-manager-issuer"]
    assert not {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Secret"} & kinds["webhook-off"]
    assert not {"PodDisruptionBudget", "ClusterKopfPeering", "ConfigMap"} & kinds["standalone"]


def deployment(helm_bin, *values: str) -> dict:
    return one(render(helm_bin, *values), "Deployment")


def test_pod_is_hardened_probed_and_spread(helm_bin):
    deploy = deployment(helm_bin)
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deploy["spec"]["replicas"] >= 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"] for c in spread)
    pdb = one(render(helm_bin), "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"] and pdb["spec"]["maxUnavailable"] == 1


def test_leader_election_by_kopf_peering(helm_bin):
    args = deployment(helm_bin)["spec"]["template"]["spec"]["containers"][0]["args"]
    peering = one(render(helm_bin), "ClusterKopfPeering")
    assert f"--peering={peering['metadata']['name']}" in args
    namespaced = render(helm_bin, "watchNamespaces={his,pacs}")
    assert sorted(d["metadata"]["namespace"] for d in namespaced if d["kind"] == "KopfPeering") == ["his", "pacs"]


def test_operator_args_and_env(helm_bin):
    container = deployment(helm_bin, "watchNamespaces={his,pacs}", "agentImage.repository=registry.local/agent",
                           "agentImage.tag=1.2.3", "audit.url=s3://audit/lifeline")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "operator"
    assert args[args.index("--webhook-port") + 1] == "8443"
    cert_dir = args[args.index("--webhook-cert-dir") + 1]
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=his", "--namespace=pacs"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LIFELINE_AGENT_IMAGE"] == "registry.local/agent:1.2.3"
    assert env["LIFELINE_AUDIT_URL"] == "s3://audit/lifeline"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == cert_dir)
    assert mount["readOnly"] is True
    default = deployment(helm_bin, "image.tag=9.9.9")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in default["env"]}["LIFELINE_AGENT_IMAGE"] == \
        "ghcr.io/lifeline-dr/lifeline:9.9.9"
    off = deployment(helm_bin, "webhook.enabled=false")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--webhook-port" not in off


def test_services_reach_the_pod_ports(helm_bin):
    docs = render(helm_bin, "metrics.serviceMonitor.enabled=true")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    webhook = one(docs, "Service", "lifeline-webhook")["spec"]["ports"]
    assert webhook == [{"name": "https", "port": 443, "targetPort": "webhook"}] and ports["webhook"] == 8443
    metrics = one(docs, "Service", "lifeline-operator")
    assert metrics["spec"]["ports"][0]["targetPort"] == "http" and ports["http"] == 8080
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert metrics["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "lifeline"  # the job OperatorDown watches
    assert NAMESPACE in monitor["spec"]["namespaceSelector"]["matchNames"]


def test_the_operator_cli_accepts_the_chart_args(helm_bin):
    from lifeline.cli import build_parser

    container = deployment(helm_bin, "watchNamespaces={his,pacs}")["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert args.command == "operator"
    assert (args.webhook_port, args.webhook_cert_dir) == (8443, "/etc/lifeline/webhook-tls")
    assert (args.peering, args.namespaces, args.health_port) == ("lifeline", ["his", "pacs"], 8080)
    probe_port = container["livenessProbe"]["httpGet"]["port"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[probe_port] == args.health_port


def test_webhook_callers_and_metrics_readers_are_wired(helm_bin, tmp_path):
    """webhook.clientCA reaches the operator as --webhook-client-ca, from a ConfigMap of that PEM;
    /metrics asks the API server (--metrics-auth kubernetes, tokenreviews granted) and readers are bound."""
    from lifeline.cli import build_parser

    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "ca.crt").write_text(pem)
    docs = render(helm_bin, "metrics.readers[0].namespace=monitoring", "metrics.readers[0].name=prometheus",
                  extra=("--set-file", f"webhook.clientCA={tmp_path / 'ca.crt'}"))
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    assert args.metrics_auth == "kubernetes"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "webhook-client-ca")
    assert args.webhook_client_ca == f"{mount['mountPath']}/ca.crt"
    source = next(v for v in pod["volumes"] if v["name"] == "webhook-client-ca")["configMap"]["name"]
    assert next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source)["data"]["ca.crt"] == pem
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "lifeline-metrics-reader")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]
    operator_role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "lifeline-operator")
    assert ("authentication.k8s.io", "tokenreviews", "create") in rule_set(operator_role["rules"])
    plain = build_parser().parse_args(deployment(helm_bin)["spec"]["template"]["spec"]["containers"][0]["args"])
    assert plain.webhook_client_ca is None  # not set: no flag, any caller (docs/security.md says what that costs)


def test_approval_policies_reach_the_operator_as_it_reads_them(helm_bin):
    from lifeline.planning.approval_policy import load

    container = deployment(helm_bin, "approvals.policies[0].name=his-critical", "approvals.policies[0].namespaces={his}",
                           "approvals.policies[0].fromGroups={his-department-heads,it-management}")[
        "spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    [rule] = load(env["LIFELINE_APPROVAL_POLICIES"])
    assert (rule.name, rule.namespaces, rule.from_groups) == ("his-critical", ("his",),
                                                               ("his-department-heads", "it-management"))
    plain = deployment(helm_bin)["spec"]["template"]["spec"]["containers"][0]
    assert "LIFELINE_APPROVAL_POLICIES" not in {e["name"] for e in plain["env"]}  # the default: two approvers
    refused = helm_template(helm_bin, "--set", "approvals.policies[0].approvals=1")
    assert refused.returncode != 0 and "approvals" in refused.stderr


def test_notification_targets_reach_the_operator_as_it_reads_them(helm_bin):
    from lifeline.planning.notices import load_targets, secret_env

    container = deployment(helm_bin, "notifications.targets[0].name=ward-screens",
                           "notifications.targets[0].url=https://notices.his.example/lifeline",
                           "notifications.targets[1].name=oncall-ding", "notifications.targets[1].format=dingtalk",
                           "notifications.targets[1].url=https://oapi.dingtalk.com/robot/send",
                           "notifications.targets[1].secret.name=dingtalk-robot",
                           "notifications.targets[1].secret.key=secret")[
        "spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # the signing secret: a reference in the values, the Secret's key in the operator's environment
    [signing] = [e for e in container["env"] if e["name"] == secret_env("oncall-ding")]
    assert signing == {"name": "LIFELINE_NOTIFICATION_SECRET_ONCALL_DING",
                       "valueFrom": {"secretKeyRef": {"name": "dingtalk-robot", "key": "secret"}}}
    targets = load_targets(env["LIFELINE_NOTIFICATION_TARGETS"], {signing["name"]: "SECfrom-the-secret"})
    assert {n: t.format for n, t in targets.items()} == {"ward-screens": "generic", "oncall-ding": "dingtalk"}
    assert targets["oncall-ding"].secret == "SECfrom-the-secret" and targets["ward-screens"].secret is None
    for values in (("url=ftp://x",), ("url=https://x", "format=wecom", "secret.name=s", "secret.key=k"),
                   ("url=https://x", "format=dingtalk", "secret=SECinline")):
        refused = helm_template(helm_bin, "--set", "notifications.targets[0].name=x",
                                *(a for v in values for a in ("--set", f"notifications.targets[0].{v}")))
        assert refused.returncode != 0 and "notifications/targets/0" in refused.stderr, values


def test_the_daily_report_is_written_beside_the_audit_log(helm_bin):
    from lifeline.cli import build_parser

    docs = render(helm_bin, "audit.claimName=audit-log", "report.timeZone=Asia/Shanghai")
    [job] = [d for d in docs if d["kind"] == "CronJob" and d["metadata"]["name"] == "lifeline-report"]
    assert (job["spec"]["schedule"], job["spec"]["timeZone"]) == ("0 6 * * *", "Asia/Shanghai")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    assert (args.command, args.audit_url, args.output_dir) == (
        "report", "file:///var/lib/lifeline/audit", "/var/lib/lifeline/audit/reports")
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "audit-log"
    assert pod["serviceAccountName"] == "lifeline-operator"
    assert not [d for d in render(helm_bin) if d["kind"] == "CronJob"], "no audit claim nor S3 url, no report CronJob"


def test_the_daily_report_is_written_beside_an_s3_audit_log(helm_bin):
    from lifeline.cli import build_parser

    docs = render(helm_bin, "audit.url=s3://hospital-dr/audit/", "extraEnv[0].name=AWS_ENDPOINT_URL",
                  "extraEnv[0].value=https://s3.hospital.example", "envFrom[0].secretRef.name=audit-s3")
    job = one(docs, "CronJob", "lifeline-report")
    assert validate(job, {}) == "kubernetes-validate"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.audit_url, args.output_url, args.output_dir) == (
        "report", "s3://hospital-dr/audit/", "s3://hospital-dr/audit/reports", None)
    operator = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "AWS_ENDPOINT_URL", "value": "https://s3.hospital.example"}]
    assert container["envFrom"] == operator["envFrom"] == [{"secretRef": {"name": "audit-s3"}}]
    assert {e["name"]: e.get("value") for e in operator["env"]}["LIFELINE_AUDIT_URL"] == args.audit_url
    assert [v["name"] for v in pod["volumes"]] == ["tmp"] and "affinity" not in pod, "no claim to follow"
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp"]
    assert pod["serviceAccountName"] == "lifeline-operator"
    # an S3 url wins over a claim, as it does for the operator; a file:// url alone has nothing to mount
    both = one(render(helm_bin, "audit.url=s3://hospital-dr/audit", "audit.claimName=audit-log"), "CronJob")
    assert "--output-url" in both["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    for values in (("audit.url=file:///var/lib/lifeline/audit",),
                   ("audit.url=s3://hospital-dr/audit", "report.schedule=")):
        assert not [d for d in render(helm_bin, *values) if d["kind"] == "CronJob"], values
