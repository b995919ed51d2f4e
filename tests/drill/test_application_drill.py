"""Application drills on the real control plane: a RestoreDrill of a resources policy puts the application's
objects back into the sandbox (its claim with the data of the pvc policy's point), waits until its
Deployment is ready there (the process kubelet runs its Pod), verifies it over HTTP from a verify Pod in
the sandbox, and records restore, start-up and verify seconds against the RTO. A broken application (a
Secret the point does not hold, an image nothing runs) fails the run with the reason, naming the workload;
one that never gets ready fails at spec.restore.startupTimeout on the operator's clock.

Pods share the host's network here and no DNS resolves Service names (docs/testing.md): the application
listens on a free loopback port and the verify command asks 127.0.0.1 for it, where a cluster's would ask
``http://his-web/``. The production copy is scaled to zero once backed up (the site is lost), so the
sandbox's copy may take its port."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lifeline.planning import drill_application
from tests.backup.test_objects import objects_policy

from .conftest import DRILLS, drill, last_run, points, policy, reconciled_since, run_drill, wait_event

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
APP = {"app": "his"}
CHART = "bed 12: Zhang San, ward ICU"
KINDS = ["deployments.apps", "services", "configmaps", "secrets", "persistentvolumeclaims",
         "networkpolicies.networking.k8s.io"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def claim_dir(kube, claim: str, namespace: str | None = None) -> Path | None:
    """The host directory behind a bound claim (its host-path PersistentVolume)."""
    pvc = kube.stored("persistentvolumeclaims", namespace, claim) or {}
    volume = (pvc.get("spec") or {}).get("volumeName")
    if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
        return None
    return Path(kube.stored("persistentvolumes", None, volume)["spec"]["hostPath"]["path"])


def deployment(name: str, image: str, command: list[str], *, labels=APP, env=(), probe=None, volume=None) -> dict:
    container = {"name": "web", "image": image, "command": command, "env": list(env)}
    spec: dict = {"containers": [container]}
    if probe:
        container["readinessProbe"] = {**probe, "periodSeconds": 1}
    if volume:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": volume}}]
    return {"metadata": {"name": name, "labels": dict(labels)},
            "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}}


def web_application(kube, port: int) -> None:
    """HIS: a claim holding a chart, a web server on it (no resources named: the sandbox's LimitRange
    gives them), its password from a Secret, a NodePort Service and a NetworkPolicy letting it all out."""
    kube.seed("v1/persistentvolumeclaims", {"metadata": {"name": "his-data", "labels": APP}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    kube.seed("v1/secrets", {"metadata": {"name": "his-db", "labels": APP}, "stringData": {"password": "s3cret"}})
    kube.seed("v1/configmaps", {"metadata": {"name": "his-settings", "labels": APP}, "data": {"ward": "icu"}})
    kube.seed("apps/v1/deployments", deployment(
        "his-web", "python:3.12-slim", ["python", "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                        "--directory", "/data"],
        env=[{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "his-db", "key": "password"}}},
             {"name": "WARD", "valueFrom": {"configMapKeyRef": {"name": "his-settings", "key": "ward"}}}],
        probe={"httpGet": {"path": "/chart.txt", "port": port}}, volume="his-data"))
    kube.seed("v1/services", {"metadata": {"name": "his-web", "labels": APP}, "spec": {
        "type": "NodePort", "selector": APP, "ports": [{"port": 80, "targetPort": port}]}})
    kube.seed("networking.k8s.io/v1/networkpolicies", {"metadata": {"name": "his-anywhere", "labels": APP}, "spec": {
        "podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}})


async def backed_up(kube, *policies: str) -> None:
    """One full backup of each policy, in order, each recorded as a point."""
    for name in policies:
        run = await kube.run_cronjob(f"{name}-full")
        assert run.phase == "Succeeded", kube.job_log(run.job)
        await kube.wait_for(lambda: points(kube, name), timeout=30)


async def site_lost(kube, *deployments: str) -> None:
    """The production copies stop (their running pods are gone), as when the site is lost."""
    for name in deployments:
        kube.patch("apps/v1/deployments", name, {"spec": {"replicas": 0}})
    await kube.wait_for(lambda: not [p for p in kube.objects("pods", selector="app in (his, his-viewer)")
                                     if (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")],
                        timeout=60)


def app_drill(**spec) -> dict:
    return drill("his-app", policyName="his-objects", **spec)


async def test_an_application_drill_restores_starts_and_verifies_the_application_against_its_rto(
        seeded, kube, clock):
    port = free_port()
    web_application(kube, port)
    volume = await kube.wait_for(lambda: claim_dir(kube, "his-data"), timeout=30)  # bound for its first Pod
    (volume / "chart.txt").write_text(CHART + "\n")
    async with kube.operator(clock=clock):
        kube.create(policy("his-data", claim="his-data", incremental=None, destinations=[
            {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/repos/his-data"}}]))
        kube.create(objects_policy(selector={"matchLabels": APP}, includeKinds=KINDS))
        await kube.wait_for(lambda: kube.stored("cronjobs", None, "his-objects-full"), timeout=20)
        await backed_up(kube, "his-data", "his-objects")  # the data first: the drill takes the newest before
        await site_lost(kube, "his-web")

        kube.create(app_drill(verify={"command": {
            "image": "busybox:1.36", "command": ["wget", "-qO-", f"http://127.0.0.1:{port}/chart.txt"],
            "expectOutput": CHART}}))
        run = await run_drill(kube, "his-app", timeout=180)
        sandbox = run["sandbox"]
        assert run["outcome"] == "Succeeded", (run, kube.objects("pods", sandbox))
        assert run["reason"] == "Verified" and run["verifyOutput"] == CHART
        assert run["restoreSeconds"] > 0 and run["startupSeconds"] >= 0 and run["verifySeconds"] > 0
        assert run["totalSeconds"] >= run["restoreSeconds"] + run["startupSeconds"] + run["verifySeconds"] - 0.01
        assert run["rtoSeconds"] == 1800 and run["rtoMet"] is True
        assert "startupDeadline" in run and run["phase"] == "Done"

        # the application came back in the sandbox, its claim with its data, its Deployment ready
        web = kube.stored("apps/v1/deployments", sandbox, "his-web")
        assert web["status"]["readyReplicas"] == 1
        assert (claim_dir(kube, "his-data", sandbox) / "chart.txt").read_text() == CHART + "\n"
        assert kube.stored("v1/secrets", sandbox, "his-db") and kube.stored("v1/configmaps", sandbox, "his-settings")
        # ... with the sandbox's fences: no way out of it, no node port, its requests defaulted
        assert kube.stored("networking.k8s.io/v1/networkpolicies", sandbox, "his-anywhere") is None
        assert kube.stored("v1/services", sandbox, "his-web")["spec"]["type"] == "ClusterIP"
        assert kube.stored("networking.k8s.io/v1/networkpolicies", sandbox, "default-deny")
        [app_pod] = kube.objects("pods", sandbox, selector="app=his")
        assert app_pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
        # the restore Job wrote as its writer, whose rights ended with it
        restore = kube.stored("batch/v1/jobs", sandbox, "restore")
        assert restore["spec"]["template"]["spec"]["serviceAccountName"] == "restore-writer"
        assert kube.stored("rbac.authorization.k8s.io/v1/rolebindings", sandbox, "restore-writer") is None
        assert kube.stored("batch/v1/jobs", sandbox, drill_application.data_job_name("his-data"))
        [event] = await wait_event(kube, "his-app", "DrillSucceeded")
        assert f"start-up {run['startupSeconds']}s" in event["message"]


async def test_a_broken_application_fails_the_drill_with_the_reason_naming_the_workload(seeded, kube, clock):
    # his-web needs a Secret the objects policy does not back up (it is not labelled); his-viewer's image
    # has no row in lifeline.devstack.images (a wrong image mapping)
    kube.seed("v1/secrets", {"metadata": {"name": "his-db"}, "stringData": {"password": "s3cret"}})
    kube.seed("apps/v1/deployments", deployment("his-web", "busybox:1.36", ["sh", "-c", "exec sleep 3600"], env=[
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "his-db", "key": "password"}}}]))
    kube.seed("apps/v1/deployments", deployment("his-viewer", "registry.example/his-viewer:2.1", ["viewer"],
                                                labels={"app": "his-viewer", "part-of": "his"}))
    async with kube.operator(clock=clock):
        kube.create(objects_policy(selector={"matchExpressions": [{"key": "app", "operator": "In",
                                                                   "values": ["his", "his-viewer"]}]},
                                   includeKinds=["deployments.apps", "secrets"]))
        await kube.wait_for(lambda: kube.stored("cronjobs", None, "his-objects-full"), timeout=20)
        await backed_up(kube, "his-objects")
        await site_lost(kube, "his-web", "his-viewer")

        kube.create(app_drill(verify={}))
        run = await run_drill(kube, "his-app", timeout=120)
        assert run["outcome"] == "Failed" and run["reason"] == "ApplicationNotReady", run
        assert 'Deployment his-web: 0 of 1 ready' in run["message"]
        assert 'CreateContainerConfigError: secret "his-db" not found' in run["message"]
        assert "Deployment his-viewer: 0 of 1 ready" in run["message"] and "ImageNotMapped" in run["message"]
        assert "registry.example/his-viewer:2.1" in run["message"]
        assert run["restoreSeconds"] > 0 and "startupSeconds" not in run
        assert "totalSeconds" not in run and "rtoMet" not in run, "no RTO for an application that did not start"
        [event] = await wait_event(kube, "his-app", "DrillFailed")
        assert "ApplicationNotReady" in event["message"]


async def test_an_application_that_never_gets_ready_fails_at_the_startup_timeout(seeded, kube, clock):
    kube.seed("apps/v1/deployments", deployment("his-web", "busybox:1.36", ["sh", "-c", "exec sleep 3600"],
                                                probe={"exec": {"command": ["test", "-e", "/nonexistent"]}}))
    async with kube.operator(clock=clock):
        kube.create(objects_policy(selector={"matchLabels": APP}, includeKinds=["deployments.apps"]))
        await kube.wait_for(lambda: kube.stored("cronjobs", None, "his-objects-full"), timeout=20)
        await backed_up(kube, "his-objects")

        kube.create(app_drill(verify={}, restore={"startupTimeout": "5m"}))
        await kube.wait_for(lambda: last_run(kube, "his-app").get("phase") == "Starting", timeout=90)
        sandbox = last_run(kube, "his-app")["sandbox"]
        await kube.wait_for(lambda: any(c.get("state", {}).get("running")
                                        for p in kube.objects("pods", sandbox, selector="app=his")
                                        for c in (p.get("status") or {}).get("containerStatuses") or []), timeout=30)
        await reconciled_since(kube, "his-app")
        starting = last_run(kube, "his-app")
        assert starting["outcome"] == "Running" and "running but not ready" in starting["message"]
        clock.advance(301)  # past spec.restore.startupTimeout on the operator's clock
        run = await kube.wait_for(lambda: (r := last_run(kube, "his-app")).get("outcome") == "Failed" and r,
                                  timeout=20)
        assert run["reason"] == "StartupTimedOut", run
        assert "within 5m" in run["message"] and "Deployment his-web: 0 of 1 ready" in run["message"]
        assert kube.stored(DRILLS, None, "his-app")["status"]["history"][0]["reason"] == "StartupTimedOut"
