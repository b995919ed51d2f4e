"""Application drills, pure: what the sandbox gets, how the restore Job writes there, what is never put
back into a sandbox, and the verdict on the restored workloads' start-up (lifeline.planning.drill_application,
lifeline.agent.objects_sandbox, lifeline.planning.drill_measure). The run on the real control plane:
tests/drill/test_application_drill.py."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lifeline.agent.objects_sandbox import fence, fenced
from lifeline.api.restoredrill import RestoreDrillSpec
from lifeline.clock import rfc3339
from lifeline.messages import RestorePlan, RestoreSummary, read_plan
from lifeline.planning import backup, drill_application, drill_measure, drill_sandbox
from lifeline.sources.resources import Served

NS = "hospital"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
FACTS = backup.Facts("ghcr.io/lifeline-dr/lifeline:test")
SANDBOX = "lifeline-drill-his-app-1a2b3c4d"
RUN = "his-app-20261202-120000"


def served(*rows) -> tuple[Served, ...]:
    return tuple(Served(g, "v1", plural, kind, True, frozenset({"get", "list", "create"})) for g, plural, kind in rows)


SERVED = served(("apps", "deployments", "Deployment"), ("", "services", "Service"), ("", "secrets", "Secret"),
                ("", "configmaps", "ConfigMap"), ("", "persistentvolumeclaims", "PersistentVolumeClaim"),
                ("networking.k8s.io", "networkpolicies", "NetworkPolicy"),
                ("networking.k8s.io", "ingresses", "Ingress"),
                ("cert-manager.io", "certificates", "Certificate"), ("his.example.org", "wards", "Ward"))


def policy(name: str, source: dict, destination: dict, key: str = "secret://his-key/key") -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"tier": "B", "source": source, "schedule": {"full": "0 1 * * *"},
                     "destinations": [destination], "encryption": {"keyRef": key}}}


OBJECTS = policy("his-objects", {"resources": {"selector": {"matchLabels": {"app": "his"}}}},
                 {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/objects"}})
DATA = policy("his-data", {"pvc": {"claimName": "his-data"}},
              {"name": "site-b", "offSite": True, "s3": {"bucket": "his", "endpoint": "http://s3.site-b:9000",
                                                         "credentialsSecret": "site-b-s3"}},
              key="secret://data-key/key")


def point(name: str, policy_name: str, age: timedelta, destination: str) -> dict:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"policyName": policy_name, "type": "full", "completionTime": rfc3339(NOW - age),
                     "manifestChecksum": "sha256:" + "0" * 64,
                     "copies": [{"destination": destination, "snapshotId": "a" * 64}]},
            "status": {"phase": "Available"}}


OBJECTS_POINT = point("his-objects-1", "his-objects", timedelta(hours=1), "local")
POINTS = [OBJECTS_POINT, point("his-data-old", "his-data", timedelta(hours=3), "site-b"),
          point("his-data-after", "his-data", timedelta(minutes=5), "site-b")]  # newer than the objects: not it


def drill_body(**restore) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill",
            "metadata": {"name": "his-app", "namespace": NS},
            "spec": {"policyName": "his-objects", "mode": "Once", "restore": restore,
                     "verify": {"command": {"image": "busybox:1.36", "command": ["wget", "-qO-", "http://his-web/"],
                                            "expectOutput": "ok"}}}}


def additions(body: dict | None = None, **kw) -> drill_sandbox.Additions:
    return drill_application.additions(body or drill_body(), OBJECTS, OBJECTS_POINT, RUN, SANDBOX,
                                       policies=[OBJECTS, DATA], points=POINTS, served=SERVED, facts=FACTS, **kw)


def test_the_restore_job_writes_into_the_sandbox_as_its_writer_with_the_claims_data_and_leaves_kinds_out():
    add = additions(drill_body(leaveOut=["certificates.cert-manager.io"]))
    objects = add.target.objects
    assert objects.namespace_map == ((NS, SANDBOX),) and objects.existing == "skip" and objects.sandbox
    assert objects.writer == "restore-writer" and objects.kubeconfig is None
    assert {"NetworkPolicy.networking.k8s.io", "Ingress.networking.k8s.io", "HTTPRoute.gateway.networking.k8s.io",
            "DNSEndpoint.externaldns.k8s.io", "Certificate.cert-manager.io"} <= set(objects.leave_out)
    [job] = [json.loads(j) for j in objects.data_jobs]  # the newest data point at or before the objects point
    assert job["metadata"]["namespace"] == SANDBOX
    assert job["metadata"]["name"] == drill_application.data_job_name("his-data")
    plan = read_plan(next(e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
                          if e["name"] == "LIFELINE_JOB_PLAN"), RestorePlan)
    assert plan.point == "his-data-old" and plan.target.kind == "pvc"
    assert job["metadata"]["labels"]["dr.lifeline.io/sandbox"] == "true"
    assert "dr.lifeline.io/policy" not in job["metadata"]["labels"], "a restore Job is no backup Job of the policy"
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "restore"
    # what the data Job needs reaches the sandbox: its key, its S3 credentials, the S3 port (the API server:
    # only the writer's pod, below)
    assert add.secrets == ("data-key", "site-b-s3") and add.claims == ()
    assert add.ports == (9000,)

    by = {(o["kind"], o["metadata"]["name"]): o for o in add.objects}
    role = by[("Role", "restore-writer")]
    granted = {(g, r, tuple(rule["verbs"]))
               for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert ("apps", "deployments", ("create", "get")) in granted and ("", "secrets", ("create", "get")) in granted
    assert ("batch", "jobs", ("create", "get")) in granted and ("", "pods", ("list",)) in granted
    assert not {r for _, r, _ in granted} & {"networkpolicies", "ingresses", "certificates"}, "left out: not writable"
    assert not any("delete" in v or "update" in v for _, _, v in granted)
    binding = by[("RoleBinding", "restore-writer")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "restore-writer", "namespace": SANDBOX}]
    assert all(o["metadata"]["namespace"] == SANDBOX and "ownerReferences" not in o["metadata"] for o in add.objects)
    assert by[("LimitRange", "drill-defaults")]["spec"]["limits"][0]["defaultRequest"] == {"cpu": "100m",
                                                                                           "memory": "128Mi"}
    writer = by[("NetworkPolicy", "writer-egress")]["spec"]
    assert writer["podSelector"]["matchLabels"]["batch.kubernetes.io/job-name"] == "restore"
    assert writer["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]
    app = by[("NetworkPolicy", "application-egress")]["spec"]
    assert app["podSelector"] == {} and {"to": [{"podSelector": {}}]} in app["egress"]
    assert all("ipBlock" not in str(rule) for rule in app["egress"]), "nothing outside the cluster"


def test_the_sandbox_holds_the_additions_and_the_restore_job_runs_there_as_the_writer():
    secrets = {name: {"metadata": {"name": name, "namespace": NS}, "data": {"k": "dg=="}}
               for name in ("his-key", "data-key", "site-b-s3")}
    objects = drill_sandbox.sandbox_objects(drill_body(), OBJECTS, OBJECTS_POINT, RUN, SANDBOX, FACTS, secrets,
                                            additions=additions(api_ports=(8443,)))
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert {("Secret", n) for n in secrets} <= set(by) and ("PersistentVolumeClaim", "restored") not in by
    assert objects[-1]["kind"] == "Job" and objects.index(by[("RoleBinding", "restore-writer")]) < len(objects) - 1
    pod = objects[-1]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "restore-writer" and pod["automountServiceAccountToken"] is True
    plan = read_plan(next(e["value"] for e in pod["containers"][0]["env"] if e["name"] == "LIFELINE_JOB_PLAN"),
                     RestorePlan)
    assert plan.target.kind == "objects" and plan.target.sandbox is True and plan.target.namespace_map == {NS: SANDBOX}
    assert "NetworkPolicy.networking.k8s.io" in plan.target.leave_out and len(plan.target.data_jobs) == 1
    egress = by[("NetworkPolicy", "restore-egress")]["spec"]
    assert egress["podSelector"]["matchLabels"]["dr.lifeline.io/sandbox"] == "true"
    assert {"protocol": "TCP", "port": 9000} in egress["egress"][-1]["ports"], "the data Job reaches its S3"
    # a Secret only the data point needs is missing: the run does not start, and says whose it is
    del secrets["data-key"]
    with pytest.raises(backup.PlanError) as err:
        drill_sandbox.sandbox_objects(drill_body(), OBJECTS, OBJECTS_POINT, RUN, SANDBOX, FACTS, secrets,
                                      additions=additions())
    assert err.value.reason == "SecretMissing" and "data-key" in err.value.message and "pvc policy" in err.value.message


def test_what_does_not_apply_to_an_application_drill_is_refused_with_the_reason():
    with pytest.raises(backup.PlanError) as err:
        additions(drill_body(load={"image": "postgres:16", "command": ["pg_restore"]}))
    assert err.value.reason == "NotADump"
    body = drill_body()
    body["spec"]["point"] = {"targetTime": "latest"}
    with pytest.raises(backup.PlanError) as err:
        additions(body)
    assert err.value.reason == "NotContinuous"
    with pytest.raises(backup.PlanError) as err:
        drill_application.additions(drill_body(), OBJECTS, OBJECTS_POINT, RUN, SANDBOX, policies=[], points=[],
                                    served=(), facts=FACTS)
    assert err.value.reason == "DiscoveryPending"
    with pytest.raises(backup.PlanError) as err:  # never restored as files, whatever asks
        drill_sandbox.sandbox_objects(drill_body(), OBJECTS, OBJECTS_POINT, RUN, SANDBOX, FACTS,
                                      {"his-key": {"metadata": {"name": "his-key", "namespace": NS}, "data": {}}})
    assert err.value.reason == "ObjectsDrillNotPlanned"


# ---- what the agent does to the tree before putting it back ---------------------------------------

def test_the_tree_is_fenced_for_a_sandbox(tmp_path: Path):
    docs = {
        "networkpolicies.networking.k8s.io/allow-all.json": {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-all"}},
        "ingresses.networking.k8s.io/his.json": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                 "metadata": {"name": "his"}},
        "services/his-web.json": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "his-web"}, "spec": {
            "type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerIP": "10.0.0.9",
            "externalIPs": ["192.0.2.1"], "ports": [{"port": 80, "nodePort": 30080}]}},
        "services/his-db.json": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "his-db"},
                                 "spec": {"ports": [{"port": 5432}]}},
        "cronjobs.batch/nightly.json": {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                                        "spec": {"schedule": "0 2 * * *"}},
        "deployments.apps/his-web.json": {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "metadata": {"name": "his-web"}, "spec": {"replicas": 2}},
    }
    for rel, body in docs.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(body))
    gone = fence(tmp_path, drill_application.LEAVE_OUT, True)
    assert sorted(gone) == ["ingresses.networking.k8s.io/his.json", "networkpolicies.networking.k8s.io/allow-all.json"]
    read = lambda rel: json.loads((tmp_path / rel).read_text())  # noqa: E731
    assert read("services/his-web.json")["spec"] == {"type": "ClusterIP", "ports": [{"port": 80}]}
    assert read("services/his-db.json") == docs["services/his-db.json"]
    assert read("cronjobs.batch/nightly.json")["spec"]["suspend"] is True
    assert read("deployments.apps/his-web.json") == docs["deployments.apps/his-web.json"]
    assert fenced(docs["services/his-web.json"], (), False) is docs["services/his-web.json"], "outside a sandbox: as is"


# ---- start-up --------------------------------------------------------------------------------------

APP = {"app": "his"}


def deployment(name: str = "his-web", replicas: int = 1, ready: int = 0, conditions=(),
               made: str = "2026-12-02T11:59:49Z") -> dict:
    return {"metadata": {"name": name, "generation": 1, "creationTimestamp": made},
            "spec": {"replicas": replicas, "selector": {"matchLabels": APP}},
            "status": {"observedGeneration": 1, "readyReplicas": ready, "conditions": list(conditions)}}


def pod(name: str = "his-web-1", *, ready_at: str | None = None, waiting: tuple[str, str] | None = None,
        running: bool = False, phase: str = "Running", labels=APP, **status) -> dict:
    state = {"waiting": {"reason": waiting[0], "message": waiting[1]}} if waiting else \
        {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
    return {"metadata": {"name": name, "labels": dict(labels)},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready_at else "False",
                                                       "lastTransitionTime": ready_at}],
                       "containerStatuses": [{"name": "web", "ready": bool(ready_at), "state": state}], **status}}


def startup(deployments, pods, *, now=NOW, deadline=NOW + timedelta(minutes=10), statefulsets=()):
    return drill_application.startup(deployments, list(statefulsets), pods, restored_at="2026-12-02T11:59:50Z",
                                     now=now, deadline=deadline, timeout="10m")


def test_ready_workloads_end_the_start_up_with_its_seconds_from_their_creation():
    up = startup([deployment(ready=1), deployment("his-report", ready=1, made="2026-12-02T11:59:48Z")],
                 [pod(ready_at="2026-12-02T11:59:57Z"),
                  pod("other", ready_at="2026-12-02T12:00:30Z", labels={"app": "x"})])
    assert (up.state, up.seconds, up.ready_at) == ("ready", 9.0, "2026-12-02T11:59:57Z")
    made_unknown = deployment(ready=1, made="")
    assert startup([made_unknown], [pod(ready_at="2026-12-02T11:59:57Z")]).seconds == 7.0  # from the restore's end
    assert startup([], []).state == "ready" and startup([], []).seconds == 0.0  # nothing to start
    assert startup([deployment(replicas=0)], []).state == "ready"


def test_a_missing_secret_or_an_image_that_cannot_run_fails_at_once_naming_the_workload():
    up = startup([deployment()], [pod(waiting=("CreateContainerConfigError", 'secret "his-db" not found'))])
    assert up.state == "failed" and up.reason == "ApplicationNotReady"
    assert up.message == ('Deployment his-web: 0 of 1 ready; pod his-web-1: container web: CreateContainerConfigError: '
                          'secret "his-db" not found')
    sts = deployment("his-db")
    up = startup([deployment(ready=1)], [pod(ready_at="2026-12-02T11:59:57Z"),
                                         pod("his-db-0", waiting=("ImageNotMapped", "image 'his-db:9' has no local "
                                                                                    "program"), phase="Failed",
                                             labels={"app": "his-db"})],
                 statefulsets=[{**sts, "spec": {**sts["spec"], "selector": {"matchLabels": {"app": "his-db"}}}}])
    assert up.reason == "ApplicationNotReady"
    assert up.message.startswith("StatefulSet his-db: 0 of 1 ready; pod his-db-0")
    assert "ImageNotMapped" in up.message
    quota = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": 'pods "his-web-x" is forbidden: violates PodSecurity "baseline:latest"'}
    up = startup([deployment(conditions=[quota])], [])
    assert up.reason == "ApplicationNotReady" and "PodSecurity" in up.message


def test_what_may_still_mend_waits_until_the_deadline_and_then_says_how_far_each_got():
    slow = [pod(running=True)]  # running, its readiness probe not passed yet
    up = startup([deployment()], slow)
    assert up.state == "waiting" and "running but not ready" in up.message
    crash = pod(waiting=("CrashLoopBackOff", "back-off 10s restarting failed container"),
                **{"containerStatuses": [{"name": "web", "ready": False,
                                          "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                                          "lastState": {"terminated": {"exitCode": 3, "message": "no database"}}}]})
    assert startup([deployment()], [crash]).state == "waiting"
    up = startup([deployment(), deployment("his-report")], [crash], now=NOW + timedelta(minutes=10))
    assert up.state == "failed" and up.reason == "StartupTimedOut"
    assert "within 10m" in up.message and "exited with code 3: no database" in up.message
    assert "Deployment his-report: 0 of 1 ready; pod his-web-1" in up.message  # its selector matches that pod too
    assert startup([deployment()], [], now=NOW + timedelta(hours=1)).message.endswith("no pod yet")


def test_selectors_match_labels_and_expressions():
    sel = {"matchLabels": {"app": "his"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]},
                                                               {"key": "canary", "operator": "DoesNotExist"}]}
    assert drill_application.selects(sel, {"app": "his", "tier": "web"})
    assert not drill_application.selects(sel, {"app": "his", "tier": "db"})
    assert not drill_application.selects(sel, {"app": "his", "tier": "web", "canary": "1"})
    assert not drill_application.selects({}, {"app": "his"}), "an empty selector selects nothing here"


def test_the_run_counts_start_up_in_the_total_and_a_start_up_failure_is_the_runs_reason():
    spec = RestoreDrillSpec.model_validate(drill_body()["spec"])
    run = {"name": RUN, "startTime": rfc3339(NOW), "restoreSeconds": 4.0, "startupSeconds": 7.0}
    kept = RestoreSummary(ok=True, restore_seconds=4.0)
    done = drill_measure.finish(run, restore=kept, restore_job_failure=None, verify=None, verify_needed=False,
                                verify_ok=None, spans=(None, None), rto=10.0, rpo=60.0, point_time=None, now=NOW,
                                ttl=3600, keep_on_failure=False)
    assert done["outcome"] == "Succeeded" and done["totalSeconds"] == 11.0 and done["rtoMet"] is False
    assert "the restored workloads became ready" in done["message"]
    failed = drill_measure.finish({**run, "startupSeconds": None}, restore=kept, restore_job_failure=None, verify=None,
                                  verify_needed=True, verify_ok=None, spans=(None, None), rto=1800.0, rpo=60.0,
                                  point_time=None, now=NOW, ttl=3600, keep_on_failure=True,
                                  startup_failure=("ApplicationNotReady", "Deployment his-web: ..."))
    assert (failed["outcome"], failed["reason"], failed["message"]) == ("Failed", "ApplicationNotReady",
                                                                        "Deployment his-web: ...")
    assert "cleanupTime" not in failed, "keepOnFailure keeps the sandbox"
    assert "totalSeconds" not in failed and "rtoMet" not in failed, "an application that did not start has no RTO"
    deadline = drill_application.startup_deadline(spec, NOW)
    assert deadline == NOW + timedelta(minutes=10)
