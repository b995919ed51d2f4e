"""A drill run's sandbox: the namespace and everything in it, as manifests. Pure.

One namespace per run, labelled so Lifeline can prove it made it (the operator deletes only
namespaces carrying :data:`LABEL_SANDBOX`), holding:

- a ResourceQuota, so a drill cannot starve the cluster;
- a NetworkPolicy denying all egress (and ingress from outside the sandbox) by default, and one
  letting only the restore agent reach DNS and the ports its repository or Vault listen on;
- copies of the Secrets the restore Job reads by name (the key, object store credentials): a pod can only
  mount Secrets of its own namespace;
- for a filesystem destination, a read-only claim of the same name, pre-bound to a read-only
  PersistentVolume on the same storage as the repository's own claim (:func:`mirror_volume`: the
  source volume's definition copied, ``Retain``, so deleting it never touches the data); without
  the source volume's definition, an unbound claim an admin binds (docs/drills.md);
- a fresh PVC ``restored`` for directory points, or a throwaway database (Pod + Service
  ``drill-db``) for dump points;
- the restore Job (:mod:`lifeline.planning.restore_job`) and, later, the verify Job;
- for a resources policy (an application drill), what :mod:`.drill_application` adds
  (:class:`Additions`): the restore Job's writer account, its target, the data points' Secrets and
  claims, a LimitRange and two more NetworkPolicies.

Namespaced objects cannot be owned across namespaces; the sandbox's objects live and die with
the namespace, which names its drill in labels and annotations.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import urlparse

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.common import parse_duration
from lifeline.api.restoredrill import RestoreDrillSpec
from lifeline.labels import (ANN_COPIED_FROM, ANN_DRILL, ANN_RECOVERY_POINT, LABEL_APP_COMPONENT, LABEL_APP_INSTANCE,
                             LABEL_APP_MANAGED_BY, LABEL_APP_NAME, LABEL_APP_PART_OF, LABEL_DRILL,
                             LABEL_DRILL_NAMESPACE, LABEL_POD_SECURITY_ENFORCE, LABEL_SANDBOX, LABEL_SANDBOX_NAMESPACE)
from lifeline.labels import ANN_MIRROR_OF as ANN_MIRROR, LABEL_DRILL_RUN as LABEL_RUN

from lifeline.sources import room_of

from . import backup, restore_job
from .backup import Facts, container_security

RESTORED_CLAIM = "restored"
DATABASE = "drill-db"
RESTORE_JOB = "restore"
VERIFY_JOB = "verify"
RESTORED_MOUNT = "/restored"
PITR_DATA = "/pgdata"  # where a point-in-time drill puts the data directory inside the restored claim
QUOTA = {"pods": "10", "persistentvolumeclaims": "6", "requests.cpu": "4", "requests.memory": "8Gi",
         "limits.memory": "16Gi", "services.loadbalancers": "0", "services.nodeports": "0"}
SMALL = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}}
DB_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "4Gi"}}
# The verify container's whole program: run the command, time it, keep its output and status.
VERIFY_SCRIPT = (
    's=$(date +%s%N); out=$("$@" 2>&1); rc=$?; e=$(date +%s%N); '
    'case "$s$e" in *[!0-9]*) d="";; *) d=$((e - s));; esac; '
    'printf "lifeline-verify rc=%s ns=%s\\n%s" "$rc" "$d" "$out" | head -c 3500 '
    '> "${LIFELINE_TERMINATION_LOG:-/dev/termination-log}"; exit "$rc"'
)


@dataclass(frozen=True)
class Additions:
    """What a kind of drill adds to its sandbox (an application drill's: :mod:`.drill_application`): the
    restore target instead of :func:`target_of`'s, more Secrets to copy and repository claims to mirror
    (those of the points that give restored claims their data), more egress ports for the restore pods,
    and objects made before the restore Job."""

    target: restore_job.RestoreTarget
    secrets: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    objects: tuple[dict, ...] = ()


def sandbox_name(prefix: str, namespace: str, drill: str, run: str) -> str:
    """``<prefix><drill>-<hash>``: unique per run, at most 63 characters."""
    h = hashlib.sha256(f"{namespace}/{drill}/{run}".encode()).hexdigest()[:8]
    head = f"{prefix}{drill}"[: 63 - 9].rstrip("-.")
    return f"{head}-{h}"


def run_name(drill: str, started) -> str:
    return f"{drill[:40]}-{started.strftime('%Y%m%d-%H%M%S')}"


def sandbox_labels(namespace: str, drill: str, run: str, component: str = "drill-sandbox") -> dict:
    return {
        LABEL_APP_NAME: "lifeline", LABEL_APP_INSTANCE: backup.label_value(drill),
        LABEL_APP_COMPONENT: component, LABEL_APP_MANAGED_BY: "lifeline",
        LABEL_APP_PART_OF: backup.PART_OF,
        LABEL_SANDBOX: "true", LABEL_DRILL: backup.label_value(drill),
        LABEL_DRILL_NAMESPACE: namespace, LABEL_RUN: backup.label_value(run),
    }


def sandbox_meta(name: str, sandbox: str | None, labels: dict, drill_ref: str, **extra) -> dict:
    meta = {"name": name, "labels": dict(labels), "annotations": {ANN_DRILL: drill_ref, **extra}}
    if sandbox:
        meta["namespace"] = sandbox
    return meta


def egress_ports(policy: BackupPolicySpec, copy: dict, vault_addr: str | None) -> list[int]:
    """TCP ports the restore agent must reach outside the sandbox: its object store's endpoint, Vault."""
    ports = set()
    dest = next(d for d in policy.destinations if d.name == copy["destination"])
    store = dest.s3 or dest.azure or dest.gcs
    if store is not None:  # https (443) unless the endpoint says otherwise
        url = urlparse(store.endpoint or "https://s3.amazonaws.com")
        ports.add(url.port or (80 if url.scheme == "http" else 443))
    if policy.encryption.key_ref.startswith("vault"):
        url = urlparse(vault_addr or "https://vault:8200")
        ports.add(url.port or 8200)
    return sorted(ports)


def network_policies(sandbox: str, labels: dict, drill_ref: str, ports: list[int]) -> list[dict]:
    deny = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": sandbox_meta("default-deny", sandbox, labels, drill_ref),
        # every pod: no egress at all, ingress only from the sandbox itself (the database's clients)
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": [{"podSelector": {}}]}]},
    }
    agent_rules = [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53},
                                                                 {"protocol": "TCP", "port": 53}]},
                   {"to": [{"podSelector": {}}]}]  # the loader reaches the sandbox's database
    if ports:
        agent_rules.append({"ports": [{"protocol": "TCP", "port": p} for p in ports]})
    allow = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": sandbox_meta("restore-egress", sandbox, labels, drill_ref),
        # only Lifeline's pods (a restored application's pods may carry any component label)
        "spec": {"podSelector": {"matchLabels": {LABEL_APP_COMPONENT: restore_job.COMPONENT, LABEL_SANDBOX: "true"}},
                 "policyTypes": ["Egress"], "egress": agent_rules},
    }
    # the verify pods talk to the sandbox's database and nothing else
    verify = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": sandbox_meta("verify-egress", sandbox, labels, drill_ref),
        "spec": {"podSelector": {"matchLabels": {LABEL_APP_COMPONENT: "drill-verify", LABEL_SANDBOX: "true"}},
                 "policyTypes": ["Egress"],
                 "egress": [{"to": [{"podSelector": {}}]},
                            {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}]},
    }
    return [deny, allow, verify]


def secret_copy(secret: dict, sandbox: str, labels: dict, drill_ref: str) -> dict:
    """A copy of a Secret the restore reads, data only (never written anywhere but the API)."""
    meta = secret.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Secret", "type": secret.get("type") or "Opaque",
            "metadata": sandbox_meta(meta["name"], sandbox, labels, drill_ref,
                              **{ANN_COPIED_FROM: f"{meta.get('namespace')}/{meta['name']}"}),
            "data": dict(secret.get("data") or {})}


def _pvc(name: str, sandbox: str, labels: dict, drill_ref: str, size: str, modes: list[str],
         storage_class: str | None, **ann) -> dict:
    spec: dict = {"accessModes": modes, "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": sandbox_meta(name, sandbox, labels, drill_ref, **ann), "spec": spec}


def database(spec: RestoreDrillSpec, sandbox: str, labels: dict, drill_ref: str) -> list[dict]:
    db = spec.restore.database
    if db is None:
        return []
    lbl = {**labels, LABEL_APP_COMPONENT: "drill-database"}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": sandbox_meta(DATABASE, sandbox, lbl, drill_ref),
           "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "containers": [{"name": "database", "image": db.image,
                                    "env": [{"name": e.name, "value": e.value} for e in db.env],
                                    "ports": [{"containerPort": db.port}], "resources": DB_RESOURCES,
                                    "securityContext": {"allowPrivilegeEscalation": False,
                                                        "capabilities": {"drop": ["ALL"]}}}],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": sandbox_meta(DATABASE, sandbox, lbl, drill_ref),
           "spec": {"selector": {LABEL_APP_COMPONENT: "drill-database", LABEL_RUN: labels[LABEL_RUN]},
                    "ports": [{"port": db.port, "targetPort": db.port}]}}
    return [pod, svc]


def target_of(drill: RestoreDrillSpec, point: dict, policy: BackupPolicySpec) -> restore_job.RestoreTarget:
    """A fresh PVC for directory points; the load command for dump points. With point.targetTime a
    fresh PVC replayed to that time (restore_job refuses a policy that is not continuous PostgreSQL)."""
    if drill.point.target_time:  # a subdirectory: a fresh volume's root may hold lost+found
        return restore_job.RestoreTarget(claim_name=RESTORED_CLAIM, path=PITR_DATA, target_time=drill.point.target_time)
    if room_of(policy).restores_into == "objects":  # an application drill: its Additions name the target
        raise backup.PlanError(
            "Ready", "ObjectsDrillNotPlanned",
            f"policy {point['spec']['policyName']} backs up Kubernetes objects: its drill restores them into the "
            "sandbox as an application drill (lifeline.planning.drill_application), which was not planned")
    if room_of(policy).restores_into == "command":
        load = drill.restore.load
        if load is None:
            raise backup.PlanError(
                "Ready", "NoLoadCommand",
                f"policy {point['spec']['policyName']} backs up a dump ({policy.source.command.command[0]}): "
                "say how to load it with spec.restore.load (image and command, for example "
                "[pg_restore, -h, drill-db, -U, postgres, -d, postgres]) and usually spec.restore.database")
        env = tuple((e.name, e.value) for e in load.env)
        if drill.restore.database is not None:
            env += (("LIFELINE_DB_HOST", DATABASE), ("LIFELINE_DB_PORT", str(drill.restore.database.port)))
        return restore_job.RestoreTarget(image=load.image, command=tuple(load.command), env=env)
    return restore_job.RestoreTarget(claim_name=RESTORED_CLAIM)


# A PersistentVolume's fields that say where its data is (kept by a mirror); the rest is the binding.
BINDING_FIELDS = ("claimRef", "persistentVolumeReclaimPolicy", "storageClassName", "accessModes", "capacity",
                  "volumeAttributesClassName")
READ_ONLY_SOURCES = ("csi", "nfs", "cephfs", "iscsi", "rbd", "fc", "azureFile", "glusterfs")


def mirror_name(sandbox: str, claim: str) -> str:
    return f"lifeline-mirror-{hashlib.sha256(f'{sandbox}/{claim}'.encode()).hexdigest()[:16]}"


def mirror_volume(source_pv: dict, sandbox: str, claim: str, labels: dict, drill_ref: str) -> dict:
    """A read-only PersistentVolume on the storage behind ``source_pv``, pre-bound to ``sandbox/claim``.

    Only the source's location is copied (hostPath, nfs, csi, local, ... and its node affinity);
    ``Retain`` means deleting the mirror never deletes data, whatever the source's policy says.
    """
    spec = {k: json.loads(json.dumps(v)) for k, v in (source_pv.get("spec") or {}).items() if k not in BINDING_FIELDS}
    for key in READ_ONLY_SOURCES:
        if isinstance(spec.get(key), dict):
            spec[key]["readOnly"] = True
    spec.update({"capacity": dict((source_pv.get("spec") or {}).get("capacity") or {"storage": "1Gi"}),
                 "accessModes": ["ReadOnlyMany"], "persistentVolumeReclaimPolicy": "Retain",
                 "storageClassName": "", "claimRef": {"namespace": sandbox, "name": claim}})
    meta = sandbox_meta(mirror_name(sandbox, claim), None, {**labels, LABEL_SANDBOX_NAMESPACE: sandbox}, drill_ref,
                 **{ANN_MIRROR: source_pv["metadata"]["name"]})
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}


def sandbox_objects(drill_body: dict, policy_body: dict, point: dict, run: str, sandbox: str, facts: Facts,
                    secrets: dict[str, dict], vault_addr: str | None = None,
                    volumes: dict[str, dict] | None = None, additions: Additions | None = None) -> list[dict]:
    """Everything a run creates, in creation order (the namespace first, the restore Job last).

    ``volumes`` maps a repository claim's name to the PersistentVolume it is bound to, for mirrors;
    ``additions``: what an application drill adds (:class:`Additions`).
    """
    meta = drill_body["metadata"]
    ns, drill = meta.get("namespace", ""), meta["name"]
    ref = f"{ns}/{drill}"
    spec = RestoreDrillSpec.model_validate(drill_body.get("spec") or {})
    policy = backup.parse_spec(policy_body)
    copy = restore_job.choose_copy(point, policy)
    labels = sandbox_labels(ns, drill, run)
    out: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": sandbox, "labels": {**labels, LABEL_POD_SECURITY_ENFORCE: "baseline"},
                      "annotations": {ANN_DRILL: ref, ANN_RECOVERY_POINT: point["metadata"]["name"]}}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": sandbox_meta("drill", sandbox, labels, ref),
         "spec": {"hard": dict(QUOTA)}},
        *network_policies(sandbox, labels, ref, sorted({*egress_ports(policy, copy, vault_addr),
                                                         *(additions.ports if additions else ())})),
    ]
    own = restore_job.secrets_needed(policy, copy)
    for name in sorted({*own, *(additions.secrets if additions else ())}):
        if name not in secrets:
            whose = (f"policy {policy_body['metadata']['name']}" if name in own
                     else "a pvc policy whose point gives a restored claim its data")
            raise backup.PlanError("Ready", "SecretMissing", f"Secret {ns}/{name}, which {whose} names, "
                                   "does not exist; create it, then the drill runs at its next time")
        out.append(secret_copy(secrets[name], sandbox, labels, ref))
    for claim in sorted({*restore_job.claims_needed(policy, copy), *(additions.claims if additions else ())}):
        pvc = _pvc(claim, sandbox, labels, ref, "1Gi", ["ReadOnlyMany"], None, **{ANN_MIRROR: f"{ns}/{claim}"})
        source = (volumes or {}).get(claim)
        if source is not None:
            mirror = mirror_volume(source, sandbox, claim, labels, ref)
            pvc["spec"].update(volumeName=mirror["metadata"]["name"], storageClassName="",
                               resources={"requests": {"storage": mirror["spec"]["capacity"].get("storage", "1Gi")}})
            out.append(mirror)
        out.append(pvc)
    target = additions.target if additions else target_of(spec, point, policy)
    if target.claim_name:
        out.append(_pvc(RESTORED_CLAIM, sandbox, labels, ref, spec.restore.size, ["ReadWriteOnce"],
                        spec.sandbox.storage_class_name))
    out += database(spec, sandbox, labels, ref)
    out += additions.objects if additions else ()

    out.append(restore_job.restore_job(
        point, policy_body, target, namespace=sandbox, name=RESTORE_JOB, facts=facts, destination=copy["destination"],
        options=restore_job.Options(labels={LABEL_SANDBOX: "true", LABEL_DRILL: backup.label_value(drill),
                                            LABEL_RUN: labels[LABEL_RUN]},
                                    annotations={ANN_DRILL: ref},
                                    deadline_seconds=restore_deadline(spec, policy))))
    return json.loads(json.dumps(out))


def restore_deadline(spec: RestoreDrillSpec, policy: BackupPolicySpec) -> int:
    """The restore Job's activeDeadlineSeconds: 4 RTOs, at least 10 minutes and the verify timeout."""
    return int(max(600, 4 * policy.rto_seconds, parse_duration(spec.verify.timeout)))


def verify_job(drill_body: dict, policy_body: dict, run: str, sandbox: str) -> dict | None:
    """The Job running the user's verify command, or None when the drill has none."""
    meta = drill_body["metadata"]
    ns, drill = meta.get("namespace", ""), meta["name"]
    spec = RestoreDrillSpec.model_validate(drill_body.get("spec") or {})
    cmd = spec.verify.command
    if cmd is None:
        return None

    policy = backup.parse_spec(policy_body)
    labels = {**sandbox_labels(ns, drill, run), LABEL_APP_COMPONENT: "drill-verify"}
    env = [{"name": "HOME", "value": "/tmp"}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    if room_of(policy).restores_into == "volume":
        env.append({"name": "LIFELINE_RESTORED", "value": RESTORED_MOUNT})
        mounts.append({"name": "restored", "mountPath": RESTORED_MOUNT, "readOnly": True})
        volumes.append({"name": "restored", "persistentVolumeClaim": {"claimName": RESTORED_CLAIM, "readOnly": True}})
    if spec.restore.database is not None:
        env += [{"name": "LIFELINE_DB_HOST", "value": DATABASE},
                {"name": "LIFELINE_DB_PORT", "value": str(spec.restore.database.port)}]
        env += [{"name": e.name, "value": e.value} for e in spec.restore.database.env]
    group = policy.pod.run_as_group if policy.pod.run_as_group is not None else backup.RUN_AS
    pod = {
        "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": policy.pod.run_as_user or backup.RUN_AS,
                            "runAsGroup": group, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "verify", "image": cmd.image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", VERIFY_SCRIPT, "lifeline-verify", *cmd.command],
            "env": env, "resources": SMALL, "securityContext": container_security(),
            "volumeMounts": mounts, "terminationMessagePath": backup.TERMINATION_LOG,
        }],
        "volumes": volumes,
    }
    return json.loads(json.dumps({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": sandbox_meta(VERIFY_JOB, sandbox, labels, f"{ns}/{drill}"),
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": int(parse_duration(spec.verify.timeout)),
                 "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }))
