"""The examples/gitops layout a team commits, built with the real kubectl kustomize: every Lifeline
object is valid and lands in its namespace, argocd-cm carries exactly the Lua files, and Flux's
health checks name every object the layout creates."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from lifeline.api import BY_KIND
from lifeline.api.validation import problems_in_spec

from .argo import KINDS, ROOT, health, script

GITOPS = ROOT / "examples" / "gitops"
COMMITTED = ("BackupPolicy", "RestoreDrill", "FailoverPlan")  # Restores are one-off actions; points are made


def build(kubectl: Path, path: Path) -> list[dict]:
    out = subprocess.run([str(kubectl), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_the_layout_builds_valid_objects_in_their_namespace(kubectl_bin):
    docs = build(kubectl_bin, GITOPS)
    assert docs and {d["kind"] for d in docs} <= set(COMMITTED)
    for doc in docs:
        assert doc["metadata"]["namespace"] == "hospital"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hospital-dr"
        spec, problems = problems_in_spec(BY_KIND[doc["kind"]], doc["spec"])
        assert not problems, (doc["metadata"]["name"], problems)
        # as Argo CD first sees it, before the operator has written anything
        assert health(doc["kind"], doc)["status"] == "Progressing"


def test_every_committable_example_is_in_the_layout(kubectl_bin):
    listed = {(d["kind"], d["metadata"]["name"]) for d in build(kubectl_bin, GITOPS)}
    examples = {(d["kind"], d["metadata"]["name"]): path.name for path in sorted((ROOT / "examples").glob("*.yaml"))
                for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") in COMMITTED}
    missing = {name for key, name in examples.items() if key not in listed}
    assert not missing, f"add `- ../<file>` for {sorted(missing)} to examples/gitops/kustomization.yaml"


def test_argocd_cm_carries_the_lua_files_verbatim_and_the_application_points_at_the_layout(kubectl_bin):
    docs = build(kubectl_bin, GITOPS / "argocd")
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert (cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("argocd-cm", "argocd")
    health_keys = {k for k in cm["data"] if k.startswith("resource.customizations.health.")}
    assert health_keys == {f"resource.customizations.health.dr.lifeline.io_{k}" for k in KINDS}
    for kind in KINDS:
        assert cm["data"][f"resource.customizations.health.dr.lifeline.io_{kind}"] == script(kind)
    assert cm["data"]["kustomize.buildOptions"] == "--load-restrictor LoadRestrictionsNone"
    [app] = [d for d in docs if d["kind"] == "Application"]
    assert app["spec"]["source"]["path"] == "examples/gitops"
    assert app["spec"]["destination"]["namespace"] == "hospital"


def test_flux_waits_for_every_object_the_layout_creates(kubectl_bin):
    created = {(d["kind"], d["metadata"]["name"]) for d in build(kubectl_bin, GITOPS)}
    flux = build(kubectl_bin, GITOPS / "flux")
    [ks] = [d for d in flux if d["kind"] == "Kustomization"]
    assert ks["spec"]["path"] == "./examples/gitops" and ks["spec"]["targetNamespace"] == "hospital"
    checks = ks["spec"]["healthChecks"]
    assert {(c["kind"], c["name"]) for c in checks} == created
    assert {c["apiVersion"] for c in checks} == {BY_KIND["BackupPolicy"].api_version}
