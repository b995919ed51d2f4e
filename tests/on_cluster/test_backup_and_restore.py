"""The DR loop on a real API server: a user's policy, `backup now --wait`, the real CronJob controller
firing a schedule, two people approving a Restore, and a resync that writes nothing."""
from __future__ import annotations

import json
import urllib.request

import pytest

from lifeline.devstack import install
from lifeline.devstack.install import OPERATOR_SA
from tests.realparts.ports import wait_for

from .conftest import forbidden_in_operator_log, lifeline_cli, policy, put_files, read_file

pytestmark = pytest.mark.slow
GROUP = "/apis/dr.lifeline.io/v1alpha1"


def points(cluster, ns: str) -> list[dict]:
    return cluster.request("GET", f"{GROUP}/namespaces/{ns}/recoverypoints")["items"]


def backup(cluster, ns: str, name: str = "files") -> dict:
    done = lifeline_cli(cluster, "backup", "now", name, "-n", ns, "--wait", "120")
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.any_cluster
def test_backup_now_waits_for_a_real_job(cluster, tenant, kubectl, lifeline):
    put_files(cluster, tenant, "data", {"studies/one.dcm": b"\x01" * 70_000})
    cluster.request("POST", f"{GROUP}/namespaces/{tenant}/backuppolicies", policy())
    done = backup(cluster, tenant)
    assert "succeeded" in done.stdout
    [point] = points(cluster, tenant)
    assert point["status"]["phase"] == "Available"
    assert point["spec"]["policyName"] == "files" and point["spec"]["files"] == 1
    pods = cluster.request("GET", f"/api/v1/namespaces/{tenant}/pods")["items"]
    assert pods and all(p["spec"].get("nodeName") for p in pods), "the scheduler bound the pods"
    assert forbidden_in_operator_log(kubectl, lifeline) == []


@pytest.mark.any_cluster
def test_the_cronjob_controller_fires_a_one_minute_schedule(cluster, tenant, lifeline, cronjob_controller):
    put_files(cluster, tenant, "data", {"note.txt": b"ward 3"})
    cluster.request("POST", f"{GROUP}/namespaces/{tenant}/backuppolicies", policy(incremental="* * * * *"))

    def fired():
        jobs = cluster.request("GET", f"/apis/batch/v1/namespaces/{tenant}/jobs")["items"]
        return [j for j in jobs if "batch.kubernetes.io/cronjob-scheduled-timestamp" in
                (j["metadata"].get("annotations") or {})]
    [job, *_] = wait_for(fired, 100, "the CronJob controller to start a scheduled Job", interval=1)
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    wait_for(lambda: [p for p in points(cluster, tenant) if p.get("status", {}).get("phase") == "Available"],
             90, "the scheduled backup's RecoveryPoint", interval=1)


@pytest.mark.any_cluster
def test_two_people_approve_a_restore_and_it_brings_the_files_back(cluster, tenant, kubectl, lifeline):
    put_files(cluster, tenant, "data", {"chart.txt": b"patient 7: stable"})
    cluster.request("POST", f"{GROUP}/namespaces/{tenant}/backuppolicies", policy())
    backup(cluster, tenant)
    [point] = points(cluster, tenant)
    restore = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": "bring-back"},
               "spec": {"recoveryPoint": point["metadata"]["name"], "reason": "INC-1: the array died",
                        "strategy": "NewClaim", "target": {"pvc": {"claimName": "restored", "size": "1Gi"}}}}
    kubectl("apply", "-n", tenant, "-f", "-", user="carol", input=json.dumps(restore))
    stored = cluster.request("GET", f"{GROUP}/namespaces/{tenant}/restores/bring-back")
    assert stored["metadata"]["annotations"]["dr.lifeline.io/requested-by"] == "carol"

    refused = lifeline_cli(cluster, "restore", "approve", "bring-back", "-n", tenant, user="carol")
    assert refused.returncode != 0 and "cannot approve" in refused.stderr
    stranger = lifeline_cli(cluster, "restore", "approve", "bring-back", "-n", tenant, user="dave")
    assert stranger.returncode != 0 and "403" in stranger.stderr
    assert lifeline_cli(cluster, "restore", "approve", "bring-back", "-n", tenant, user="alice").returncode == 0
    again = lifeline_cli(cluster, "restore", "approve", "bring-back", "-n", tenant, user="alice")
    assert again.returncode != 0 and "already decided" in again.stderr
    assert cluster.request("GET", f"/apis/batch/v1/namespaces/{tenant}/jobs?labelSelector=dr.lifeline.io%2Frestore")[
        "items"] == [], "one approval runs nothing"
    assert lifeline_cli(cluster, "restore", "approve", "bring-back", "-n", tenant, user="bob").returncode == 0

    def finished():
        phase = cluster.request("GET", f"{GROUP}/namespaces/{tenant}/restores/bring-back").get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None
    assert wait_for(finished, 120, "the restore to finish", interval=0.5) == "Succeeded"
    assert read_file(cluster, kubectl, tenant, "restored", "chart.txt") == "patient 7: stable"
    status = cluster.request("GET", f"{GROUP}/namespaces/{tenant}/restores/bring-back")["status"]
    assert sorted(a["user"] for a in status["approvals"]) == ["alice", "bob"]
    assert forbidden_in_operator_log(kubectl, lifeline) == []


def _unchanged(cluster, lifeline) -> float:
    token = install.metrics_token(cluster.request, lifeline)  # /metrics asks the API server who calls
    request = urllib.request.Request(f"http://127.0.0.1:{lifeline.health_port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lifeline_reconciles_total{") and 'result="unchanged"' in line
               and 'kind="BackupPolicy"' in line)


def restart_operator(cluster, kubectl, lifeline) -> None:
    """Delete the operator's pod and wait for its replacement to be ready.

    Not ``rollout restart``: pods share this machine's network, so a surge pod could not bind the
    old one's ports (see docs/testing.md); deleting first frees them.
    """
    selector = "app.kubernetes.io/component=operator"
    kubectl("delete", "pod", "-n", lifeline.namespace, "-l", selector, "--wait=true", "--timeout=60s")

    def ready():
        pods = cluster.request("GET", f"/api/v1/namespaces/{lifeline.namespace}/pods?labelSelector="
                                      "app.kubernetes.io%2Fcomponent%3Doperator")["items"]
        return any(all(c.get("ready") for c in p.get("status", {}).get("containerStatuses") or [{}])
                   and not p["metadata"].get("deletionTimestamp") for p in pods)
    wait_for(ready, 120, "a new operator pod to be ready", interval=0.5)


def test_a_restarted_operator_writes_nothing_for_settled_objects(cluster, tenant, kubectl, lifeline):
    cluster.request("POST", f"{GROUP}/namespaces/{tenant}/backuppolicies", policy())
    backup(cluster, tenant)
    wait_for(lambda: cluster.request("GET", f"{GROUP}/namespaces/{tenant}/backuppolicies/files")
             .get("status", {}).get("recoveryPoints") == 1, 30, "the policy to count its point", interval=0.2)
    assert [w for w in cluster.writes(OPERATOR_SA) if w["objectRef"].get("namespace") == tenant], \
        "the audit log sees the operator's writes (else the check below proves nothing)"
    mark = cluster.audit_position()
    restart_operator(cluster, kubectl, lifeline)
    wait_for(lambda: _unchanged(cluster, lifeline) >= 3, 60, "the new operator to look at every policy", interval=0.5)
    mine = [w for w in cluster.writes(OPERATOR_SA, since=mark)
            if w["objectRef"].get("namespace") == tenant]
    assert mine == [], [(w["verb"], w["objectRef"]) for w in mine]
