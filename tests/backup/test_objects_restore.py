"""`lifeline agent objects-restore` on the real control plane: a resources backup's tree put back into
another namespace, every object through the API server's dry run first, nothing written when one fails.

The tree is written by the backup Job's own writer (:func:`lifeline.agent.objects.write_objects`)
with the admin's credentials; test_objects.py shows the Job writing and storing the same tree."""
from __future__ import annotations

import json

from lifeline.agent.__main__ import main
from lifeline.agent.objects import write_objects
from lifeline.agent.objects_restore import connect
from lifeline.messages import ResourcesPlan

from .test_objects import application, wards_crd

KINDS = (("apps/v1", "deployments", "Deployment"), ("v1", "services", "Service"), ("v1", "configmaps", "ConfigMap"),
         ("v1", "secrets", "Secret"), ("his.example.org/v1", "wards", "Ward"))
RESTORED = (("apps/v1/deployments", "his-web"), ("v1/services", "his-web"), ("v1/configmaps", "his-settings"),
            ("v1/configmaps", "his-frozen"), ("v1/secrets", "his-db"), ("his.example.org/v1/wards", "icu"))


def objects_restore(capsys, tree, kubeconfig, *argv: str) -> tuple[int, str, str]:
    """``lifeline agent objects-restore TREE ARGV --kubeconfig KUBECONFIG`` in this process."""
    code = main(["objects-restore", str(tree), *argv, "--kubeconfig", str(kubeconfig)])
    out, err = capsys.readouterr()
    return code, out, err


def outcomes(out: str) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["name"]): o for o in json.loads(out)}


def test_objects_are_restored_into_another_namespace_checked_first_and_never_half_written(kube, tmp_path, capsys):
    wards_crd(kube.cluster)
    application(kube)
    kube.seed("v1/configmaps", {"metadata": {"name": "his-frozen", "labels": {"app": "his"}},
                                "immutable": True, "data": {"beds": "12"}})
    tree, source, target = tmp_path / "objects", kube.namespace, f"{kube.namespace}-restored"
    plan = ResourcesPlan(namespace=source, selector="app=his", resources=[
        {"apiVersion": v, "plural": p, "kind": k} for v, p, k in KINDS])
    assert write_objects(plan, tree, connect(str(kube.cluster.kubeconfig))).objects == 6
    old_ip = json.loads((tree / "services/his-web.json").read_text())["spec"]["clusterIP"]
    # The disaster. The Service stays, and so does its address: the restored one must be given another.
    for resource, name in RESTORED:
        if resource != "v1/services":
            kube.delete(resource, name)
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
    config = kube.cluster.kubeconfig
    into = ("--namespace-map", f"{source}={target}")
    try:
        code, out, err = objects_restore(capsys, tree, config, *into, "--dry-run", "--json")
        assert code == 0, err
        assert {k: o["outcome"] for k, o in outcomes(out).items()} == {
            ("Deployment", "his-web"): "would create", ("Service", "his-web"): "would create",
            ("ConfigMap", "his-settings"): "would create", ("ConfigMap", "his-frozen"): "would create",
            ("Secret", "his-db"): "would create", ("Ward", "icu"): "would create"}
        assert [o["kind"] for o in json.loads(out)] == ["ConfigMap", "ConfigMap", "Secret", "Deployment", "Service", "Ward"]
        assert "dry run, nothing was written" in err
        assert not any(kube.stored(resource, target, name) for resource, name in RESTORED)

        code, out, err = objects_restore(capsys, tree, config, *into, "--json")
        assert code == 0, err
        assert {o["outcome"] for o in json.loads(out)} == {"created"}
        restored = {(resource, name): kube.stored(resource, target, name) for resource, name in RESTORED}
        assert all(restored.values()), restored
        service = kube.stored("v1/services", target, "his-web")
        assert service["spec"]["clusterIP"] not in ("", None, "None", old_ip), "a new address"
        assert kube.stored("apps/v1/deployments", target, "his-web")["spec"]["replicas"] == 0
        assert kube.stored("v1/configmaps", target, "his-settings")["data"] == {"ward": "icu"}
        assert kube.stored("v1/secrets", target, "his-db")["data"]["password"] == "czNjcmV0"  # s3cret
        assert kube.stored("his.example.org/v1/wards", target, "icu")["spec"] == {"beds": 12}

        code, out, err = objects_restore(capsys, tree, config, *into, "--existing", "skip")
        assert code == 0, err
        rows = out.splitlines()
        assert rows[0].split() == ["KIND", "NAME", "OUTCOME", "MESSAGE"] and len(rows) == 7
        assert all(row.split()[2:] == ["skipped", "exists,", "skipped"] for row in rows[1:]), out
        assert f"ConfigMap    {target}/his-frozen" in out

        # A run with two objects the server refuses: nothing of it is written, each is named.
        live = {name: kube.stored(resource, target, name)["metadata"]["resourceVersion"] for resource, name in RESTORED}
        settings, frozen = (tree / "configmaps/his-settings.json"), (tree / "configmaps/his-frozen.json")
        for path, data in ((settings, {"ward": "nicu"}), (frozen, {"beds": "14"})):
            path.write_text(json.dumps({**json.loads(path.read_text()), "data": data}))
        ghost = tree / "wards.his.example.org/ghost.json"
        ghost.write_text(json.dumps({"apiVersion": "his.example.org/v9", "kind": "Ward", "spec": {"beds": 1},
                                     "metadata": {"name": "ghost", "namespace": source}}))
        code, out, err = objects_restore(capsys, tree, config, *into, "--existing", "update", "--json")
        assert code == 1, err
        said = outcomes(out)
        assert said["Ward", "ghost"]["outcome"] == "failed"
        assert said["Ward", "ghost"]["message"] == "not served: the cluster does not serve his.example.org/v9"
        assert said["ConfigMap", "his-frozen"]["outcome"] == "failed"
        assert "field is immutable when `immutable` is set" in said["ConfigMap", "his-frozen"]["message"]
        assert said["ConfigMap", "his-settings"]["outcome"] == "would update"
        assert f"failed: Ward {target}/ghost (wards.his.example.org/ghost.json): not served" in err
        assert f"failed: ConfigMap {target}/his-frozen (configmaps/his-frozen.json): " in err
        assert "nothing was written: 2 of 7 objects failed" in err
        assert live == {name: kube.stored(resource, target, name)["metadata"]["resourceVersion"]
                        for resource, name in RESTORED}, "not one write"
        assert kube.stored("his.example.org/v1/wards", target, "ghost") is None

        # Without them, the replace goes through, and the Service keeps the address it was given.
        ghost.unlink()
        frozen.write_text(json.dumps({**json.loads(frozen.read_text()), "data": {"beds": "12"}}))
        code, out, err = objects_restore(capsys, tree, config, *into, "--existing", "update", "--json")
        assert code == 0, err
        assert {o["outcome"] for o in json.loads(out)} == {"updated"}
        assert kube.stored("v1/configmaps", target, "his-settings")["data"] == {"ward": "nicu"}
        assert kube.stored("v1/services", target, "his-web")["spec"]["clusterIP"] == service["spec"]["clusterIP"]
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{target}")
