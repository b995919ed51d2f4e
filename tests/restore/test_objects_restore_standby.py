"""The same objects Restore into a second control plane, the standby site: HIS backed up as objects
(and its claim's data by a pvc policy) on the primary cluster, then, after two approvals there, put
back through the standby's API server with the identity of a kubeconfig in a Secret of the
Restore's namespace -- a ServiceAccount of the standby that may do exactly what the restore needs
in its namespace, never the operator's rights. The claim's data restore Job runs at the standby
(reading the same repository, which the standby mounts as its own claim, with its own copy of the
key) before the Deployment is written, and the Deployment's Pod, run by the standby's kubelet,
reads the restored chart."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from lifeline.devstack import live
from lifeline.devstack.children import wait_for
from lifeline.planning import objects_writer, restore_objects, restore_run
from tests.backup.conftest import fast_timers, key_text, seeded, volumes  # noqa: F401 - fixtures
from tests.backup.test_objects import wards_crd
from tests.failover.conftest import restore_site, site_a  # noqa: F401 - fixtures
from tests.live_kube import Resource

from .conftest import restore_body
from .helpers import claim_dir, phase, request_and_approve, stored
from .objects_helpers import APP, CHART, KINDS, RESOURCES, application, backed_up, pod_log, ready_pods, \
    restorer_kubeconfig, site_provides

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
SECRET = "standby-kubeconfig"
ACCOUNT = "lifeline-restorer"
WRITTEN = {Resource.of(r).plural for r, _ in RESOURCES}  # the application's kinds, by resource


@dataclass
class Standby:
    site: object  # lifeline.devstack.cluster.Cluster
    namespace: str
    user: str  # who the restore is at the standby

    def get(self, resource: str, name: str | None = None, namespace: str | None = None) -> dict | None:
        return live.get(self.site, Resource.of(resource).path(namespace or self.namespace, name))


def kinds() -> list[tuple[str, str]]:
    """(group, plural) of KINDS (``deployments.apps`` -> ``("apps", "deployments")``)."""
    return [(group, plural) for plural, _, group in (k.partition(".") for k in KINDS)]


@pytest.fixture
def standby(kube, site_a, tmp_path, key_text):
    """The standby site: the same namespace as the primary's, with what the site provides (the
    repository's volume on the same directory as the primary's backup-local, and the key), the
    application's CRD, and a restorer account whose kubeconfig is in Secret ``standby-kubeconfig`` of
    the test's namespace at the primary."""
    site = site_a
    restore_site(site)  # a failover test before this one may have left it down
    namespace = kube.namespace
    live.namespace(site, namespace)
    try:
        site_provides(site, namespace, tmp_path / "volumes" / "backup-local", key_text)
        wards_crd(site)
        user, config = restorer_kubeconfig(site, namespace, ACCOUNT, kinds())
        kube.secret(SECRET, {"kubeconfig": config})
        claim = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/backup-local"
        wait_for(lambda: ((live.get(site, claim) or {}).get("status") or {}).get("phase") == "Bound", 30,
                 "the standby's repository claim to bind", interval=0.05)
        yield Standby(site, namespace, user)
    finally:
        for path in (f"/api/v1/namespaces/{namespace}", f"/api/v1/persistentvolumes/{namespace}-backup-local"):
            try:
                site.request("DELETE", path)
            except Exception:  # noqa: BLE001 - gone already, or the site is down: nothing to clean
                pass


def creates(cluster, since: int, namespace: str, user: str | None = None) -> set[tuple[str, str, str]]:
    """(user, resource, name) of every object created in ``namespace`` of ``cluster`` since audit line ``since``."""
    return {(e["user"]["username"], e["objectRef"].get("resource"), e["objectRef"].get("name"))
            for e in cluster.writes(user, since=since) if e["verb"] == "create"
            and (e.get("objectRef") or {}).get("namespace") == namespace and not e["objectRef"].get("subresource")
            and e["responseStatus"]["code"] < 300}


async def test_the_same_point_restored_into_the_standby_site_brings_the_application_up_there(
        kube, seeded, people, clock, fast_env, standby):
    site, ns = standby.site, standby.namespace
    wards_crd(kube.cluster)
    application(kube)
    volume = await kube.wait_for(lambda: claim_dir(kube, "his-data"), timeout=30)
    (volume / "chart.txt").write_text(CHART)

    async with kube.operator(clock=clock):
        point = await backed_up(kube)
        here, there = kube.cluster.audit_position(), site.audit_position()
        body = restore_body("his-standby", point["metadata"]["name"],
                            target={"objects": {"kubeconfigSecret": {"name": SECRET}}})
        name = await request_and_approve(kube, people, body)
        await kube.wait_for(lambda: phase(kube, name) in ("Succeeded", "Failed"), timeout=240)
        status = stored(kube, name)["status"]
        job = restore_run.job_name(name)
        assert status["phase"] == "Succeeded", (status, kube.job_log(job))

        # every object is at the standby, the claim with its data
        assert status["objects"]["counts"] == {"created": 6}, status["objects"]
        assert status["objects"]["claimsWithData"] == [f"{ns}/his-data"]
        for resource, obj in RESOURCES:
            assert standby.get(resource, obj), f"{resource}/{obj} at the standby"
        assert standby.get("his.example.org/v1/wards", "icu")["spec"] == {"beds": 12}
        assert standby.get("v1/services", "his-web")["spec"]["selector"] == APP

        # written there by the restorer account alone, the data Job included; nothing of it written here
        data_job = restore_objects.data_job_name(name, "his-data")
        made = creates(site, there, ns)
        assert {(r, n) for u, r, n in made if r in WRITTEN} == {(Resource.of(r).plural, n) for r, n in RESOURCES}
        assert {u for u, r, _ in made if r in WRITTEN} == {standby.user}
        assert (standby.user, "jobs", data_job) in made
        assert not {(r, n) for _, r, n in creates(kube.cluster, here, kube.namespace) if r in WRITTEN}
        assert not kube.stored("batch/v1/jobs", kube.namespace, data_job)

        # the restore Job wrote with the kubeconfig only: no writer account here, no token of this cluster
        writer = objects_writer.writer_name(job)
        assert not kube.stored("v1/serviceaccounts", kube.namespace, writer)
        assert not kube.stored("rbac.authorization.k8s.io/v1/roles", kube.namespace, writer)
        template = kube.stored("batch/v1/jobs", kube.namespace, job)["spec"]["template"]["spec"]
        assert template["automountServiceAccountToken"] is False and "serviceAccountName" not in template
        assert {"name": "kubeconfig", "secret": {"secretName": SECRET, "defaultMode": 0o400,
                                                 "items": [{"key": "kubeconfig", "path": "config"}]}} \
            in template["volumes"]
        [restore_pod] = kube.objects("pods", selector=f"job-name={job}")
        assert not [v for v in restore_pod["spec"]["volumes"] if v["name"].startswith("kube-api-access")]

        # the data Job ran at the standby's node, into the claim restored there
        data = standby.get("batch/v1/jobs", data_job)
        assert data["status"].get("succeeded") == 1, data["status"]
        claims = {(v.get("persistentVolumeClaim") or {}).get("claimName")
                  for v in data["spec"]["template"]["spec"]["volumes"]}
        assert {"his-data", "backup-local"} <= claims, claims
        pods = site.request("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{data_job}")["items"]
        assert pods and {p["spec"]["nodeName"] for p in pods} == {site.node}
        assert standby.get("v1/persistentvolumeclaims", "his-data")["status"]["phase"] == "Bound"

        # the Deployment's Pod runs on the standby's kubelet and reads the restored chart
        [pod] = await kube.wait_for(lambda: ready_pods(site, ns), timeout=90)
        assert pod["spec"]["nodeName"] == site.node
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "his-data"
        assert CHART.strip() in pod_log(site, ns, pod["metadata"]["name"])
