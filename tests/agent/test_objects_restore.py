"""`lifeline agent objects-restore`'s planning (mapping, dropping, ordering) and its check-then-write
rule, against a fake API server; the real one is in tests/backup/test_objects_restore.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lifeline.agent import objects_restore as o
from lifeline.agent.__main__ import main
from lifeline.errors import UsageError


def obj(api_version: str, kind: str, name: str, namespace: str | None = "his", **fields) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


def doc(*args, **fields) -> o.Document:
    body = obj(*args, **fields)
    return o.Document(f"{body['kind'].lower()}s/{body['metadata']['name']}.json", body)


def test_objects_are_written_in_the_order_their_dependents_need():
    docs = [doc("his.example.org/v1", "Ward", "icu"), doc("networking.k8s.io/v1", "Ingress", "web"),
            doc("v1", "Service", "web"), doc("apps/v1", "Deployment", "web"), doc("batch/v1", "CronJob", "nightly"),
            doc("v1", "PersistentVolumeClaim", "data"), doc("v1", "Secret", "db"), doc("v1", "ConfigMap", "settings"),
            doc("rbac.authorization.k8s.io/v1", "RoleBinding", "web"), doc("rbac.authorization.k8s.io/v1", "Role", "web"),
            doc("v1", "ServiceAccount", "web"), doc("v1", "Namespace", "his", None),
            doc("networking.k8s.io/v1", "NetworkPolicy", "deny"),
            doc("apiextensions.k8s.io/v1", "CustomResourceDefinition", "wards.his.example.org", None),
            doc("v1", "ConfigMap", "alpha"), doc("apps/v1", "StatefulSet", "db"), doc("v1", "Pod", "debug")]
    assert [(d.kind, d.name) for d in o.ordered(reversed(docs))] == [
        ("CustomResourceDefinition", "wards.his.example.org"), ("Namespace", "his"), ("ServiceAccount", "web"),
        ("Role", "web"), ("RoleBinding", "web"), ("ConfigMap", "alpha"), ("ConfigMap", "settings"), ("Secret", "db"),
        ("PersistentVolumeClaim", "data"), ("Pod", "debug"), ("Deployment", "web"), ("StatefulSet", "db"),
        ("CronJob", "nightly"), ("Service", "web"), ("Ingress", "web"),
        ("Ward", "icu"), ("NetworkPolicy", "deny")]  # the rest, custom resources included, by group


def test_namespaces_are_mapped_where_an_object_names_them_and_nowhere_else():
    mapping = {"his": "his-restored"}
    binding = obj("rbac.authorization.k8s.io/v1", "RoleBinding", "readers", subjects=[
        {"kind": "ServiceAccount", "name": "web", "namespace": "his"},
        {"kind": "ServiceAccount", "name": "agent", "namespace": "monitoring"},
        {"kind": "User", "name": "system:serviceaccount:his:backup", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "Group", "name": "system:serviceaccounts:his", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "User", "name": "system:serviceaccount:hisx:other", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}])
    out = o.mapped(binding, mapping)
    assert out["metadata"]["namespace"] == "his-restored"
    assert [s.get("namespace") or s["name"] for s in out["subjects"]] == [
        "his-restored", "monitoring", "system:serviceaccount:his-restored:backup",
        "system:serviceaccounts:his-restored", "system:serviceaccount:hisx:other", "alice"]
    assert binding["metadata"]["namespace"] == "his" and binding["subjects"][0]["namespace"] == "his", "a copy"

    cluster_binding = obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "his-view", None,
                          subjects=[{"kind": "ServiceAccount", "name": "web", "namespace": "his"}])
    assert o.mapped(cluster_binding, mapping)["subjects"][0]["namespace"] == "his-restored"
    assert "namespace" not in o.mapped(cluster_binding, mapping)["metadata"]
    assert o.mapped(obj("v1", "Namespace", "his", None), mapping)["metadata"]["name"] == "his-restored"
    claim = obj("v1", "PersistentVolumeClaim", "data", spec={"dataSourceRef": {"kind": "VolumeSnapshot", "name": "s",
                                                                               "namespace": "his"}})
    assert o.mapped(claim, mapping)["spec"]["dataSourceRef"]["namespace"] == "his-restored"
    # documented as not rewritten: namespaces inside strings
    web = obj("apps/v1", "Deployment", "web", spec={"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "DB", "value": "db.his.svc"}]}]}}})
    assert o.mapped(web, mapping)["spec"] == web["spec"]
    assert o.mapped(obj("v1", "ConfigMap", "x", "other"), mapping)["metadata"]["namespace"] == "other"


def test_what_the_old_cluster_set_or_the_new_one_allocates_is_not_replayed():
    owner = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "1", "controller": True}]
    service = obj("v1", "Service", "web", spec={
        "type": "LoadBalancer", "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "healthCheckNodePort": 31000,
        "ports": [{"port": 80, "nodePort": 30080}], "selector": {"app": "web"}})
    service["metadata"].update(uid="u", resourceVersion="12", creationTimestamp="t", managedFields=[{}],
                               generation=3, ownerReferences=owner, labels={"app": "web"})
    out = o.scrubbed(service)
    assert out["metadata"] == {"name": "web", "namespace": "his", "labels": {"app": "web"}}
    assert out["spec"] == {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 30080}],
                           "selector": {"app": "web"}}
    assert service["spec"]["clusterIP"] == "10.0.0.7", "a copy"
    headless = o.scrubbed(obj("v1", "Service", "db", spec={"clusterIP": "None", "clusterIPs": ["None"]}))
    assert headless["spec"] == {"clusterIP": "None", "clusterIPs": ["None"]}

    claim = obj("v1", "PersistentVolumeClaim", "data", spec={"volumeName": "pv-1", "storageClassName": "fast"})
    claim["metadata"]["annotations"] = {"pv.kubernetes.io/bind-completed": "yes",
                                        "pv.kubernetes.io/bound-by-controller": "yes",
                                        "volume.kubernetes.io/selected-node": "node-1", "team": "radiology"}
    out = o.scrubbed(claim)
    assert out["spec"] == {"storageClassName": "fast"} and out["metadata"]["annotations"] == {"team": "radiology"}

    uid = {"batch.kubernetes.io/controller-uid": "u1", "controller-uid": "u1", "job-name": "once"}
    job = obj("batch/v1", "Job", "once", spec={"selector": {"matchLabels": dict(uid)},
                                               "template": {"metadata": {"labels": dict(uid)}}})
    job["metadata"]["labels"] = dict(uid)
    out = o.scrubbed(job)
    assert "selector" not in out["spec"] and out["spec"]["template"]["metadata"]["labels"] == {"job-name": "once"}
    assert out["metadata"]["labels"] == {"job-name": "once"}
    job["spec"]["manualSelector"] = True
    assert o.scrubbed(job)["spec"]["selector"] == {"matchLabels": uid}, "a selector the author chose stays"
    assert "nodeName" not in o.scrubbed(obj("v1", "Pod", "debug", spec={"nodeName": "node-1"}))["spec"]


def test_a_replace_keeps_what_the_target_allocated_and_the_live_owners():
    body = o.scrubbed(obj("v1", "Service", "web", spec={"clusterIP": "10.0.0.7", "ports": [{"port": 81}]}))
    live = obj("v1", "Service", "web", spec={"clusterIP": "10.9.9.9", "clusterIPs": ["10.9.9.9"], "ports": [{"port": 80}]})
    live["metadata"].update(resourceVersion="77", ownerReferences=[{"name": "app"}])
    out = o.carried_over(body, live)
    assert out["spec"] == {"clusterIP": "10.9.9.9", "clusterIPs": ["10.9.9.9"], "ports": [{"port": 81}]}
    assert out["metadata"]["resourceVersion"] == "77" and out["metadata"]["ownerReferences"] == [{"name": "app"}]


def test_the_tree_is_read_whole_or_refused_with_every_bad_file_named(tmp_path):
    (tmp_path / "configmaps").mkdir()
    (tmp_path / "configmaps/a.json").write_text(json.dumps(obj("v1", "ConfigMap", "a")))
    (tmp_path / "configmaps/notes.txt").write_text("not a document")
    assert [d.file for d in o.read_tree(tmp_path)] == ["configmaps/a.json"]
    (tmp_path / "configmaps/b.json").write_text("{")
    (tmp_path / "configmaps/c.json").write_text(json.dumps(obj("v1", "ConfigMap", "..")))
    (tmp_path / "configmaps/d.json").write_text(json.dumps({"kind": "ConfigMap", "metadata": {"name": "d"}}))
    (tmp_path / "configmaps/e.json").write_text(json.dumps(obj("v1/namespaces/his/secrets", "ConfigMap", "e")))
    with pytest.raises(UsageError) as refused:
        o.read_tree(tmp_path)
    said = str(refused.value)
    assert "4 file(s)" in said and "configmaps/b.json: not JSON" in said
    assert "configmaps/c.json: metadata.name '..' cannot be" in said and "configmaps/d.json: apiVersion is missing" in said
    assert "configmaps/e.json: apiVersion 'v1/namespaces/his/secrets' is not a group/version" in said
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no \\*.json documents"):
        o.read_tree(tmp_path / "empty")
    with pytest.raises(UsageError, match="is not a directory"):
        o.read_tree(tmp_path / "missing")


def test_namespace_maps_are_pairs_of_namespace_names():
    assert o.namespace_map(["his=his-restored", "lab=lab-2", "his=his-restored"]) == {"his": "his-restored",
                                                                                      "lab": "lab-2"}
    for bad in ("his", "his=", "=x", "His=x", "a=b/c"):
        with pytest.raises(UsageError):
            o.namespace_pair(bad)
    with pytest.raises(UsageError, match="mapped twice"):
        o.namespace_map(["his=a", "his=b"])


# --- the check-then-write rule, against a fake API server ---------------------------------------

DISCOVERY = {
    "/api/v1": [("configmaps", "ConfigMap", True), ("services", "Service", True), ("namespaces", "Namespace", False),
                ("services/status", "Service", True)],
    "/apis/apps/v1": [("deployments", "Deployment", True)],
}


class FakeApi:
    """Discovery of :data:`DISCOVERY`, the objects in ``live``, and refusals by (method, path)."""

    def __init__(self, live: dict[str, dict] | None = None, refuse: dict | None = None):
        self.live, self.refuse, self.calls = dict(live or {}), refuse or {}, []

    def call(self, method, path, body=None, *, dry_run=False):
        self.calls.append((method, path, dry_run))
        if (method, path) in self.refuse:
            raise o.Refused(*self.refuse[(method, path)])
        if method == "GET" and path in DISCOVERY:
            return {"resources": [{"name": p, "kind": k, "namespaced": n, "verbs": ["create", "get", "update"]}
                                  for p, k, n in DISCOVERY[path]]}
        if method == "GET":
            if path not in self.live:
                raise o.Refused(404, f"{path} not found")
            return self.live[path]
        return body

    @property
    def writes(self):
        return [(m, p) for m, p, dry in self.calls if m in ("POST", "PUT") and not dry]


def test_every_object_passes_the_servers_check_before_any_is_written():
    docs = o.prepared([doc("v1", "Service", "web", spec={"clusterIP": "10.0.0.1"}), doc("v1", "ConfigMap", "settings"),
                       doc("apps/v1", "Deployment", "web")], {"his": "his-2"})
    api = FakeApi()
    out = o.restore_objects(docs, api, dry_run=True)
    assert [(x.kind, x.outcome) for x in out] == [("ConfigMap", "would create"), ("Deployment", "would create"),
                                                  ("Service", "would create")]
    assert not api.writes and ("POST", "/api/v1/namespaces/his-2/services", True) in api.calls

    out = o.restore_objects(docs, api)
    assert [x.outcome for x in out] == ["created"] * 3
    assert api.writes == [("POST", "/api/v1/namespaces/his-2/configmaps"),
                          ("POST", "/apis/apps/v1/namespaces/his-2/deployments"),
                          ("POST", "/api/v1/namespaces/his-2/services")]


def test_one_failure_in_the_check_writes_nothing_and_each_failure_is_named():
    docs = o.prepared([doc("v1", "ConfigMap", "settings"), doc("v1", "ConfigMap", "frozen"),
                       doc("his.example.org/v9", "Ward", "ghost"), doc("apps/v2", "Deployment", "web"),
                       doc("v1", "Service", "web"), doc("apps/v1", "StatefulSet", "db")])
    api = FakeApi(live={"/api/v1/namespaces/his/configmaps/frozen": obj("v1", "ConfigMap", "frozen",
                                                                        metadata={"name": "frozen", "resourceVersion": "5"})},
                  refuse={("GET", "/apis/his.example.org/v9"): (404, "the server could not find the requested resource"),
                          ("GET", "/apis/apps/v2"): (404, "not found"),
                          ("PUT", "/api/v1/namespaces/his/configmaps/frozen"):
                              (422, 'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable')})
    out = {(x.kind, x.name): x for x in o.restore_objects(docs, api, existing="update")}
    assert {k: x.outcome for k, x in out.items()} == {
        ("ConfigMap", "settings"): "would create", ("ConfigMap", "frozen"): "failed", ("Ward", "ghost"): "failed",
        ("Deployment", "web"): "failed", ("Service", "web"): "would create", ("StatefulSet", "db"): "failed"}
    assert out["Ward", "ghost"].message == "not served: the cluster does not serve his.example.org/v9"
    assert out["Deployment", "web"].message == "not served: the cluster does not serve apps/v2"
    assert out["StatefulSet", "db"].message == "not served: apps/v1 has no kind StatefulSet on this cluster"
    assert out["ConfigMap", "frozen"].message == 'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable'
    assert out["ConfigMap", "settings"].message == "not written: 4 object(s) failed the server's check"
    assert not api.writes

    # skip: what exists is left as it is, and is not checked again
    api = FakeApi(live={"/api/v1/namespaces/his/configmaps/frozen": obj("v1", "ConfigMap", "frozen")})
    out = o.restore_objects(o.prepared([doc("v1", "ConfigMap", "frozen")]), api)
    assert [(x.outcome, x.message) for x in out] == [("skipped", "exists, skipped")] and not api.writes


def test_the_hints_name_what_in_the_tree_a_dry_run_cannot_see_made_first():
    crd = doc("apiextensions.k8s.io/v1", "CustomResourceDefinition", "wards.his.example.org", None,
              spec={"group": "his.example.org", "names": {"kind": "Ward"}})
    crd = o.Document("customresourcedefinitions.apiextensions.k8s.io/wards.his.example.org.json", crd.body)
    namespace = o.Document("namespaces/his.json", obj("v1", "Namespace", "his", None))
    docs = o.prepared([crd, namespace, doc("his.example.org/v1", "Ward", "icu"), doc("v1", "ConfigMap", "settings")])
    api = FakeApi(refuse={("GET", "/apis/his.example.org/v1"): (404, "not found"),
                          ("GET", "/apis/apiextensions.k8s.io/v1"): (404, "not found"),
                          ("POST", "/api/v1/namespaces/his/configmaps"): (404, 'namespaces "his" not found')})
    out = {x.name: x.message for x in o.restore_objects(docs, api)}
    assert "restore the folder customresourcedefinitions.apiextensions.k8s.io on its own first" in out["icu"]
    assert out["settings"].startswith('namespaces "his" not found (namespace his is in this tree: restore the '
                                      "folder namespaces on its own first)")


def test_a_failed_write_stops_the_steps_after_it():
    # a and b are written at once (one step), c (a Service: a later step) waits for them
    docs = o.prepared([doc("v1", "ConfigMap", "a"), doc("v1", "ConfigMap", "b"), doc("v1", "Service", "c")])
    api = FakeApi()
    real = api.call

    def flaky(method, path, body=None, *, dry_run=False):
        if method == "POST" and not dry_run and body["metadata"]["name"] == "b":
            raise o.Refused(409, 'configmaps "b" already exists')
        return real(method, path, body, dry_run=dry_run)
    api.call = flaky
    out = o.restore_objects(docs, api)
    assert [(x.name, x.outcome) for x in out] == [("a", "created"), ("b", "failed"), ("c", "failed")]
    assert out[1].message == 'configmaps "b" already exists'
    assert out[2].message == "not written: the write of ConfigMap his/b failed"
    table = o.outcome_table(out).splitlines()
    assert table[0].split() == ["KIND", "NAME", "OUTCOME", "MESSAGE"]
    assert table[1].split() == ["ConfigMap", "his/a", "created"]
    assert table[3].endswith("failed    not written: the write of ConfigMap his/b failed")


def test_the_command_refuses_bad_arguments_before_it_imports_the_kubernetes_client(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["agent", "objects-restore", str(tmp_path), "--namespace-map", "his"])
    assert usage.value.code == 2 and "not FROM=TO" in capsys.readouterr().err
    probe = ("import sys; from lifeline.agent.__main__ import main; code = main(['objects-restore', sys.argv[1]]); "
             "print(code, 'kubernetes' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["2", "False"] and "no *.json documents" in run.stderr, run
