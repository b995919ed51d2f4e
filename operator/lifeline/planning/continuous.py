"""BackupPolicy with a ``continuous`` source -> the log-shipping Deployment. Pure.

A continuous policy protects a directory of closed log segments (PostgreSQL's WAL archive
directory, written by ``archive_command``) on a volume the workload shares. One replica of
the agent runs ``lifeline agent ship`` against it: every new segment goes to every
destination within seconds, and the newest shipped position is on ``/metrics``. One
replica and the ``Recreate`` strategy, because two shippers would race on the same queue;
the source volume is mounted read-only (the shipper never changes the workload's files);
its queue and state live in an emptyDir (after a restart it re-checks the directory, and
re-pushing a stored segment is a no-op). The pod is hardened like the backup Jobs'.

Base backups on the policy's full schedule and the policy status (RPO from the newest
shipped segment) are the controller's part, not this planner's.
"""
from __future__ import annotations

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.labels import LABEL_APP_COMPONENT, LABEL_APP_INSTANCE, LABEL_APP_NAME
from lifeline.objects import owner_reference

from .backup import (ANN_POLICY, KEY_MOUNT, SOURCE_MOUNT, Facts, PlanError, child_name, container_security,
                     destination_plan, inside, labels, parse_key_ref, parse_spec, s3_env_prefix, stamp)
from .pod_security import add_destination_volumes, add_key_volumes, apply_placement, pod_security_context

COMPONENT = "wal-shipper"
CONTAINER = "shipper"
STATE_MOUNT = "/var/lib/lifeline"
STATE_DIR = f"{STATE_MOUNT}/ship"
METRICS_PORT = 9187
QUEUE_MAX = 256
SHIP_SCAN_SECONDS = 0.5  # the shipper's --interval (its default): how long a closed segment waits to be seen
COMMAND = ("python", "-m", "lifeline.agent")  # the data plane only: starts fast
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


def deployment_name(policy: str) -> str:
    return child_name(policy, "ship", 63)


def ship_args(spec: BackupPolicySpec) -> list[str]:
    src = spec.source.continuous
    args = ["ship", "--dir", inside(SOURCE_MOUNT, src.path, "source.continuous.path"),
            "--pattern", src.segment_pattern, "--state", STATE_DIR, "--queue-max", str(QUEUE_MAX),
            "--metrics-port", str(METRICS_PORT), "--create"]
    if spec.encryption.cipher != "aes-256-gcm":
        args += ["--cipher", spec.encryption.cipher]
    for i, dest in enumerate(spec.destinations):
        args += ["--repo", destination_plan(i, dest).repository]
    scheme, _secret, key = parse_key_ref(spec.encryption.key_ref)
    if scheme == "secret":
        args += ["--key-file", f"{KEY_MOUNT}/{key}"]
    else:
        args += ["--key", spec.encryption.key_ref]
    return args


def _env(spec: BackupPolicySpec, facts: Facts) -> list[dict]:
    env = [{"name": "HOME", "value": "/tmp"}]
    if parse_key_ref(spec.encryption.key_ref)[0].startswith("vault"):
        env += [{"name": k, "value": v} for k, v in facts.vault_env]
    for i, dest in enumerate(spec.destinations):
        if dest.s3 is None:
            continue
        p = s3_env_prefix(i)
        if dest.s3.endpoint:
            env.append({"name": p + "ENDPOINT", "value": dest.s3.endpoint})
        env.append({"name": p + "REGION", "value": dest.s3.region})
        for var, key in (("ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")):
            ref = {"name": dest.s3.credentials_secret, "key": key}
            env.append({"name": p + var, "valueFrom": {"secretKeyRef": ref}})
    return env


def _resources(spec: BackupPolicySpec) -> dict:
    res = spec.pod.resources
    if res is None:
        return {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    return {k: dict(v) for k, v in (("requests", res.requests), ("limits", res.limits)) if v}


def pod_spec(spec: BackupPolicySpec, facts: Facts) -> dict:
    src = spec.source.continuous
    key_scheme = parse_key_ref(spec.encryption.key_ref)[0]
    mounts = [{"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True},
              {"name": "state", "mountPath": STATE_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [
        {"name": "source", "persistentVolumeClaim": {"claimName": src.claim_name, "readOnly": True}},
        {"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}},
    ]
    env = _env(spec, facts)
    # as the backup Jobs get them; the shipper copies a secret:// key to a 0600 file in its state directory
    add_destination_volumes(spec, mounts, volumes)
    add_key_volumes(spec, mounts, volumes, env)
    probe = {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10, "timeoutSeconds": 5,
             "failureThreshold": 6}
    container = {
        "name": CONTAINER, "image": facts.agent_image, "imagePullPolicy": "IfNotPresent",
        "command": list(COMMAND), "args": ship_args(spec), "env": env,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": probe, "livenessProbe": {**probe, "initialDelaySeconds": 30},
        "resources": _resources(spec), "securityContext": container_security(), "volumeMounts": mounts,
    }
    pod: dict = {
        "automountServiceAccountToken": key_scheme.startswith("vault"),
        "enableServiceLinks": False,
        "securityContext": pod_security_context(spec),
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }
    apply_placement(pod, spec)
    return pod


def plan(policy_body: dict, facts: Facts) -> list[dict]:
    """The shipping Deployment of a continuous policy ([] for other sources, and while suspended
    the Deployment stays with zero replicas so its state and metrics endpoint are kept)."""
    spec = parse_spec(policy_body)
    if spec.source.continuous is None:
        return []
    if not spec.source.continuous.segment_pattern.strip():
        raise PlanError("SourceAvailable", "InvalidSegmentPattern",
                        "source.continuous.segmentPattern is empty: give a glob such as '0*' for PostgreSQL WAL")
    meta = policy_body["metadata"]
    policy = meta["name"]
    lbl = labels(policy, COMPONENT)
    selector = {k: lbl[k] for k in (LABEL_APP_NAME, LABEL_APP_INSTANCE, LABEL_APP_COMPONENT)}
    return [stamp({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(policy),
            "namespace": meta.get("namespace", ""),
            "labels": lbl,
            "annotations": {ANN_POLICY: policy},
            "ownerReferences": [owner_reference(policy_body)],
        },
        "spec": {
            "replicas": 0 if spec.suspend else 1,
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(lbl), "annotations": {ANN_POLICY: policy}},
                "spec": pod_spec(spec, facts),
            },
        },
    })]
