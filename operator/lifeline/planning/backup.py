"""BackupPolicy -> the CronJobs (and on-demand Jobs) that run its backups. Pure.

``plan(policy_body, facts)`` returns every child object the policy should have, as
complete manifests: one CronJob per schedule kind (``<policy>-full``,
``<policy>-incremental``, ``<policy>-differential``) and a prune CronJob
(``<policy>-prune``). ``on_demand_job`` renders the Job a ``backup-now`` request
runs. The controller compares these with what exists and applies the difference.

What a backup pod looks like:

- one ``agent`` container running ``python -m lifeline.agent.jobs backup``, which reads its
  whole task from the ``LIFELINE_JOB_PLAN`` environment variable (a
  :class:`~lifeline.messages.BackupPlan`, no secrets: S3 credentials come from ``secretKeyRef``
  variables named in the plan), backs the source up to every destination (each its own
  repository) and writes a compact :class:`~lifeline.messages.BackupSummary` to its termination
  message, from which the operator records the RecoveryPoint;
- a PVC (or continuous) source mounted read-only at ``/source``; filesystem
  destinations' PVCs at ``/destinations/<name>``; a ``secret://`` key at
  ``/etc/lifeline/key``; an emptyDir at ``/tmp``;
- for a dump (``command``) source, the dump tool runs in its own image and needs
  only ``/bin/sh``: an init container makes a FIFO in a shared emptyDir
  (``/dump/stream``), the ``dump`` container writes the command's stdout into it and
  its exit status to ``/dump/exit-code``, the agent reads the FIFO and publishes the
  point only when the dump exited 0;
- for a ``volumeSnapshot`` source the CronJobs' pod is only a trigger (see
  :mod:`lifeline.planning.snapshot`): the operator takes the snapshot and starts a data-mover
  Job, rendered here with ``source_claim`` (the PVC made from the snapshot) as its ``/source``;
- a ``vault-*`` key with ``encryption.caBundle`` mounts the bundle at ``/etc/lifeline/vault-ca``
  and sets ``VAULT_CACERT``;
- non-root (65532 unless ``pod.runAsUser``), read-only root filesystem, every
  capability dropped, seccomp RuntimeDefault, no service account token (unless the
  key lives in Vault, whose Kubernetes auth needs it).
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass

from lifeline.objects import owner_reference
from lifeline.api.backuppolicy import BackupPolicySpec, Destination
from lifeline.messages import (BackupPlan, DestinationPlan, FingerprintPlan, KeyPlan, PrunePlan, RetentionPlan,
                               SourcePlan)

from .backup_schedule import longest_gap

TYPES = ("full", "incremental", "differential")
AGENT = "agent"
PART_OF = "lifeline"

LABEL_POLICY = "dr.lifeline.io/policy"
LABEL_TYPE = "dr.lifeline.io/backup-type"
LABEL_TRIGGER = "dr.lifeline.io/trigger"
ANN_POLICY = "dr.lifeline.io/policy"  # the full name: a label value stops at 63 characters
ANN_HASH = "dr.lifeline.io/spec-hash"
ANN_BACKUP_NOW = "dr.lifeline.io/backup-now"
ANN_BACKUP_NOW_TYPE = "dr.lifeline.io/backup-now-type"
ANN_RECORDED = "dr.lifeline.io/recorded"
ANN_RESULT = "dr.lifeline.io/result"

CRONJOB_NAME_MAX = 52  # the CronJob controller appends an 11-character suffix to Job names
JOB_NAME_MAX = 63  # a Job's name becomes its pods' job-name label
RUN_AS = 65532  # the image's lifeline user

SOURCE_MOUNT = "/source"
DESTINATIONS_MOUNT = "/destinations"
KEY_MOUNT = "/etc/lifeline/key"
VAULT_CA_MOUNT = "/etc/lifeline/vault-ca"
DUMP_MOUNT = "/dump"
FIFO = f"{DUMP_MOUNT}/stream"
EXIT_CODE = f"{DUMP_MOUNT}/exit-code"
TERMINATION_LOG = "/dev/termination-log"
JOB_COMMAND = ("python", "-m", "lifeline.agent.jobs")  # the image's entry point is `lifeline`
# Continuous PostgreSQL sources: pg_basebackup (in the database's image, an init container) writes a
# plain copy here; the agent stores it tagged as a base backup (lifeline.agent.base_backup_job).
BASEBACKUP_MOUNT = "/basebackup"
BASEBACKUP_DATA = f"{BASEBACKUP_MOUNT}/data"
BASEBACKUP_COMMAND = ("python", "-m", "lifeline.agent.base_backup_job")
# spec.fingerprint: its container writes the command's output and then its status into this emptyDir;
# it always exits 0 (a failed fingerprint is reported in the point's tags, it does not fail the backup).
FINGERPRINT_MOUNT = "/fingerprint"
FINGERPRINT_OUTPUT = f"{FINGERPRINT_MOUNT}/output"
FINGERPRINT_EXIT_CODE = f"{FINGERPRINT_MOUNT}/exit-code"
FINGERPRINT_SCRIPT = (
    f'"$@" > {FINGERPRINT_OUTPUT}; rc=$?; '
    f'echo "$rc" > {FINGERPRINT_EXIT_CODE}.tmp && mv {FINGERPRINT_EXIT_CODE}.tmp {FINGERPRINT_EXIT_CODE}'
)

# The dump container's whole program: run the command into the FIFO, publish its status.
DUMP_SCRIPT = (
    f'"$@" > {FIFO}; rc=$?; echo "$rc" > {EXIT_CODE}.tmp && mv {EXIT_CODE}.tmp {EXIT_CODE}; exit "$rc"'
)

# What each operation's Jobs are (app.kubernetes.io/component); "snapshot": a snapshot trigger.
COMPONENTS = {"backup": "backup", "prune": "prune", "snapshot": "snapshot"}

DEFAULT_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}


class PlanError(ValueError):
    """The policy cannot be turned into objects; ``condition`` says which condition reports it."""

    def __init__(self, condition: str, reason: str, message: str):
        super().__init__(message)
        self.condition, self.reason, self.message = condition, reason, message


@dataclass(frozen=True)
class Facts:
    """What the planner needs besides the policy: only the operator's settings."""

    agent_image: str
    # Non-secret Vault settings (VAULT_ADDR, LIFELINE_VAULT_ROLE, ...) handed to Jobs whose key is in Vault.
    vault_env: tuple[tuple[str, str], ...] = ()


# ---- names and labels --------------------------------------------------------------


def _short_hash(text: str, n: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def child_name(policy: str, suffix: str, limit: int = CRONJOB_NAME_MAX) -> str:
    """``<policy>-<suffix>``, truncated with a hash of the policy name when too long."""
    name = f"{policy}-{suffix}"
    if len(name) <= limit:
        return name
    h = _short_hash(policy)
    keep = limit - len(suffix) - len(h) - 2
    return f"{policy[:keep].rstrip('-.')}-{h}-{suffix}"


def label_value(name: str) -> str:
    """A name as a label value (at most 63 characters)."""
    if len(name) <= 63:
        return name
    return f"{name[:56].rstrip('-.')}-{_short_hash(name)}"


def labels(policy: str, component: str, type_: str | None = None) -> dict:
    out = {
        "app.kubernetes.io/name": "lifeline",
        "app.kubernetes.io/instance": label_value(policy),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "lifeline",
        "app.kubernetes.io/part-of": PART_OF,
        LABEL_POLICY: label_value(policy),
    }
    if type_:
        out[LABEL_TYPE] = type_
    return out


def spec_hash(manifest: dict) -> str:
    """A digest of what Lifeline sets on a child, stored on it to see when it must change."""
    meta = dict(manifest.get("metadata") or {})
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANN_HASH}
    meta["annotations"] = ann
    text = json.dumps({**manifest, "metadata": meta}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(manifest: dict) -> dict:
    manifest = json.loads(json.dumps(manifest))  # no shared sub-objects between parts of the tree
    manifest["metadata"].setdefault("annotations", {})[ANN_HASH] = spec_hash(manifest)
    return manifest


# ---- the spec ---------------------------------------------------------------------


def parse_spec(body: dict) -> BackupPolicySpec:
    return BackupPolicySpec.model_validate(body.get("spec") or {})


def schedules(spec: BackupPolicySpec) -> list[tuple[str, str]]:
    """``(kind, cron)`` for every scheduled backup type, full first."""
    return [(t, getattr(spec.schedule, t)) for t in TYPES if getattr(spec.schedule, t)]


def interval_seconds(expression: str) -> int:
    return longest_gap((("x", expression),)).seconds


def prune_schedule(namespace: str, policy: str) -> str:
    """Once a day between 03:00 and 05:59, at a minute spread by the policy's name."""
    h = int(_short_hash(f"{namespace}/{policy}", 8), 16)
    return f"{h % 60} {3 + (h // 60) % 3} * * *"


def parse_key_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``(scheme, secret name, secret key)``; the name and key only for ``secret://name/key``."""
    scheme = ref.split("://", 1)[0]
    if scheme != "secret":
        return scheme, None, None
    rest = ref.split("://", 1)[1]
    name, _, key = rest.partition("/")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        raise PlanError("KeysAvailable", "InvalidKeyRef",
                        f"encryption.keyRef {ref!r}: write secret://<secret name>/<key in that secret>, "
                        "for example secret://his-backup-key/key")
    return scheme, name, key


def _inside(mount: str, path: str, what: str) -> str:
    parts = [p for p in (path or "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PlanError("SourceAvailable", "InvalidPath",
                        f"{what} {path!r} climbs out of its volume ('..'); give a path inside the volume")
    return posixpath.join(mount, *parts) if parts else mount


def s3_env_prefix(index: int) -> str:
    return f"LIFELINE_S3_{index}_"


def destination_plan(index: int, dest: Destination) -> DestinationPlan:
    if dest.filesystem is not None:
        path = _inside(f"{DESTINATIONS_MOUNT}/{dest.name}", dest.filesystem.path,
                       f"destination {dest.name}: filesystem.path")
        return DestinationPlan(name=dest.name, off_site=dest.off_site, repository=f"file://{path}")
    s3 = dest.s3
    prefix = s3.prefix.strip("/")
    return DestinationPlan(name=dest.name, off_site=dest.off_site,
                           repository=f"s3://{s3.bucket}/{prefix}" if prefix else f"s3://{s3.bucket}",
                           region=s3.region, endpoint=s3.endpoint or None, credentials_env=s3_env_prefix(index))


DEFAULT_CIPHER = "aes-256-gcm"


def key_plan(spec: BackupPolicySpec) -> KeyPlan:
    ref = spec.encryption.key_ref
    scheme, _, key = parse_key_ref(ref)
    cipher = spec.encryption.cipher
    return KeyPlan(ref=ref, file=f"{KEY_MOUNT}/{key}" if scheme == "secret" else None,
                   cipher=None if cipher == DEFAULT_CIPHER else cipher)


def source_plan(namespace: str, policy: str, spec: BackupPolicySpec) -> SourcePlan:
    src = spec.source
    name = f"{namespace}/{policy}"
    if src.pvc is not None:
        return SourcePlan(kind="dir", path=_inside(SOURCE_MOUNT, src.pvc.path, "source.pvc.path"), name=name)
    if src.continuous is not None and src.continuous.postgres is not None:
        return SourcePlan(kind="pg-basebackup", path=BASEBACKUP_DATA, name=name)
    if src.continuous is not None:
        return SourcePlan(kind="dir", path=_inside(SOURCE_MOUNT, src.continuous.path, "source.continuous.path"),
                          name=name)
    if src.command is not None:
        program = posixpath.basename(src.command.command[0]) or "dump"
        return SourcePlan(kind="fifo", path=FIFO, exit_code=EXIT_CODE, name=name, stream_name=f"{program}.out")
    # volumeSnapshot: the data-mover Job mounts a PVC made from the snapshot at /source
    return SourcePlan(kind="dir", path=_inside(SOURCE_MOUNT, src.volume_snapshot.path, "source.volumeSnapshot.path"),
                      name=name)


def job_plan(namespace: str, policy: str, spec: BackupPolicySpec, operation: str,
             type_: str | None) -> BackupPlan | PrunePlan:
    """The task ``python -m lifeline.agent.jobs`` reads from LIFELINE_JOB_PLAN (no secret in it)."""
    common = {"namespace": namespace, "policy": policy, "key": key_plan(spec),
              "destinations": [destination_plan(i, d) for i, d in enumerate(spec.destinations)]}
    if operation != "backup":
        r = spec.retention
        return PrunePlan(**common, retention=RetentionPlan(last=r.keep_last, daily=r.keep_daily, weekly=r.keep_weekly,
                                                           monthly=r.keep_monthly, yearly=r.keep_yearly))
    fingerprint = FingerprintPlan(output=FINGERPRINT_OUTPUT, exit_code=FINGERPRINT_EXIT_CODE) \
        if spec.fingerprint is not None else None
    return BackupPlan(**common, type=type_ or "incremental", source=source_plan(namespace, policy, spec),
                      tags=[f"policy={namespace}/{policy}"], fingerprint=fingerprint)


# ---- pods --------------------------------------------------------------------------


def _container_security() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def _resources(spec: BackupPolicySpec) -> dict:
    res = spec.pod.resources
    if res is None:
        return json.loads(json.dumps(DEFAULT_RESOURCES))
    return {k: dict(v) for k, v in (("requests", res.requests), ("limits", res.limits)) if v}


def _env(entry) -> dict:
    if entry.value_from_secret is not None:
        ref = entry.value_from_secret
        return {"name": entry.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    return {"name": entry.name, "value": entry.value or ""}


def pod_spec(namespace: str, policy: str, spec: BackupPolicySpec, operation: str, type_: str | None,
             facts: Facts, source_claim: str | None = None) -> dict:
    """The backup (or prune) pod; ``source_claim`` is the PVC made from a snapshot (data-mover Jobs)."""
    if operation == "snapshot":
        from .snapshot import trigger_pod_spec

        return trigger_pod_spec(spec, facts)
    from .pod_security import add_destination_volumes, add_key_volumes, apply_placement, pod_security_context

    plan = job_plan(namespace, policy, spec, operation, type_)
    key_scheme = parse_key_ref(spec.encryption.key_ref)[0]
    env = [plan.to_env(), {"name": "HOME", "value": "/tmp"}]
    if key_scheme.startswith("vault"):
        env += [{"name": k, "value": v} for k, v in facts.vault_env]
    for i, dest in enumerate(spec.destinations):
        if dest.s3 is not None:
            for var, key in (("ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), ("SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")):
                env.append({"name": s3_env_prefix(i) + var,
                            "valueFrom": {"secretKeyRef": {"name": dest.s3.credentials_secret, "key": key}}})
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    src = spec.source
    claim = (src.pvc or src.continuous).claim_name if (src.pvc or src.continuous) and operation == "backup" else None
    base_backup = src.continuous.postgres if src.continuous is not None and operation == "backup" else None
    if base_backup is not None:
        claim = None  # the copy comes from the server, not from the segment directory
    claim = source_claim if operation == "backup" and source_claim else claim
    if claim:
        mounts.append({"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True})
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    add_destination_volumes(spec, mounts, volumes)
    add_key_volumes(spec, mounts, volumes, env)
    resources = _resources(spec)
    agent = {
        "name": AGENT, "image": facts.agent_image, "imagePullPolicy": "IfNotPresent",
        "command": list(JOB_COMMAND), "args": [operation], "env": env, "resources": resources,
        "securityContext": _container_security(), "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": key_scheme.startswith("vault"),
        "enableServiceLinks": False,
        "securityContext": pod_security_context(spec),
        "containers": [agent],
        "volumes": volumes,
    }
    if src.command is not None and operation == "backup":
        volumes.append({"name": "dump", "emptyDir": {}})
        agent["volumeMounts"].append({"name": "dump", "mountPath": DUMP_MOUNT})
        pod["initContainers"] = [{
            "name": "prepare", "image": facts.agent_image, "imagePullPolicy": "IfNotPresent",
            "command": list(JOB_COMMAND), "args": ["prepare", "--fifo", FIFO],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": _container_security(),
            "volumeMounts": [{"name": "dump", "mountPath": DUMP_MOUNT}],
        }]
        pod["containers"].insert(0, {
            "name": "dump", "image": src.command.image,
            "command": ["/bin/sh", "-c", DUMP_SCRIPT, "lifeline-dump", *src.command.command],
            "env": [_env(e) for e in src.command.env] + [{"name": "HOME", "value": "/tmp"}],
            "resources": resources, "securityContext": _container_security(),
            "volumeMounts": [{"name": "dump", "mountPath": DUMP_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
        })
    if base_backup is not None:
        _add_base_backup(pod, agent, base_backup, resources)
    if spec.fingerprint is not None and operation == "backup":
        _add_fingerprint(pod, agent, spec, resources, with_source=bool(claim))
    apply_placement(pod, spec)
    return pod


def _add_base_backup(pod: dict, agent: dict, pg, resources: dict) -> None:
    """pg_basebackup first (an init container in the database's image), then the agent stores the copy.

    The agent image has no PostgreSQL client; the server's own image has the matching pg_basebackup.
    The copy lives in an emptyDir (node disk, the database's size) only until the Job ends."""
    pod["volumes"].append({"name": "basebackup", "emptyDir": {}})
    agent["command"] = list(BASEBACKUP_COMMAND)
    agent["volumeMounts"].append({"name": "basebackup", "mountPath": BASEBACKUP_MOUNT, "readOnly": True})
    pod["initContainers"] = [{
        "name": "pg-basebackup", "image": pg.image, "imagePullPolicy": "IfNotPresent",
        "command": ["pg_basebackup", "-D", BASEBACKUP_DATA, "-Fp", "-X", "fetch", "--checkpoint=fast",
                    "--no-sync", "--no-password", *pg.args],
        "env": [_env(e) for e in pg.env] + [{"name": "HOME", "value": "/tmp"}],
        "resources": resources, "securityContext": _container_security(),
        "volumeMounts": [{"name": "basebackup", "mountPath": BASEBACKUP_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
    }]


def _add_fingerprint(pod: dict, agent: dict, spec: BackupPolicySpec, resources: dict, with_source: bool) -> None:
    """The ``fingerprint`` container: the user's command in its image, next to the agent.

    A dump source's environment comes first (the same database), then the fingerprint's own; a volume
    source is mounted read-only at /source as in the agent. The agent waits for the status file."""
    fp = spec.fingerprint
    pod["volumes"].append({"name": "fingerprint", "emptyDir": {"sizeLimit": "1Mi"}})
    agent["volumeMounts"].append({"name": "fingerprint", "mountPath": FINGERPRINT_MOUNT, "readOnly": True})
    mounts = [{"name": "fingerprint", "mountPath": FINGERPRINT_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}]
    if with_source:
        mounts.append({"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True})
    env = [_env(e) for e in (spec.source.command.env if spec.source.command is not None else [])]
    env = [e for e in env if e["name"] not in {f.name for f in fp.env}] + [_env(e) for e in fp.env]
    pod["containers"].append({
        "name": "fingerprint", "image": fp.image,
        "command": ["/bin/sh", "-c", FINGERPRINT_SCRIPT, "lifeline-fingerprint", *fp.command],
        "env": env + [{"name": "HOME", "value": "/tmp"}],
        "resources": resources, "securityContext": _container_security(), "volumeMounts": mounts,
    })


def _deadline(spec: BackupPolicySpec, interval: int | None) -> int:
    from lifeline.api.common import parse_duration

    if spec.pod.active_deadline and interval != 0:
        return int(parse_duration(spec.pod.active_deadline))
    if interval == 0:  # a snapshot trigger: its pod only says "now"
        return 300
    return min(86400, max(600, interval or 6 * 3600))


def job_template(body: dict, spec: BackupPolicySpec, facts: Facts, operation: str, type_: str | None,
                 interval: int | None, extra_labels: dict | None = None, source_claim: str | None = None) -> dict:
    meta = body["metadata"]
    policy, namespace = meta["name"], meta.get("namespace", "")
    component = COMPONENTS[operation]
    lbl = {**labels(policy, component, type_), **(extra_labels or {})}
    return {
        "metadata": {"labels": lbl, "annotations": {ANN_POLICY: policy}},
        "spec": {
            "backoffLimit": spec.pod.backoff_limit if spec.pod.backoff_limit is not None else 1,
            "activeDeadlineSeconds": _deadline(spec, interval),
            "template": {
                "metadata": {"labels": dict(lbl)},
                "spec": pod_spec(namespace, policy, spec, operation, type_, facts, source_claim),
            },
        },
    }


def _cronjob(body: dict, spec: BackupPolicySpec, facts: Facts, name: str, schedule: str, operation: str,
             type_: str | None) -> dict:
    meta = body["metadata"]
    interval = interval_seconds(schedule)
    component = COMPONENTS[operation]
    cron: dict = {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": min(300, interval),
        "suspend": bool(spec.suspend),
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": job_template(body, spec, facts, operation, type_,
                                    {"backup": interval, "snapshot": 0}.get(operation)),
    }
    if spec.schedule.time_zone:
        cron["timeZone"] = spec.schedule.time_zone
    return _stamp({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", ""),
            "labels": labels(meta["name"], component, type_),
            "annotations": {ANN_POLICY: meta["name"]},
            "ownerReferences": [owner_reference(body)],
        },
        "spec": cron,
    })


def plan(policy_body: dict, facts: Facts) -> list[dict]:
    """Every CronJob the policy should have, complete and stamped with its spec hash.

    Raises pydantic's ValidationError for an invalid spec and :class:`PlanError` for a
    valid spec that still cannot be scheduled (the message says what to change).
    """
    spec = parse_spec(policy_body)
    meta = policy_body["metadata"]
    policy = meta["name"]
    # A volumeSnapshot policy's CronJobs only say "now" (their pod exits at once); the operator takes
    # the snapshot and starts the data-mover Job (lifeline.planning.snapshot).
    operation = "snapshot" if spec.source.volume_snapshot is not None else "backup"
    children = [
        _cronjob(policy_body, spec, facts, child_name(policy, kind), expr, operation, kind)
        for kind, expr in schedules(spec)
    ]
    children.append(_cronjob(policy_body, spec, facts, child_name(policy, "prune"),
                             prune_schedule(meta.get("namespace", ""), policy), "prune", None))
    return children


def on_demand_name(policy: str, request: str) -> str:
    """The Job a ``backup-now`` request starts: named by the request, so it starts at most once."""
    return child_name(policy, f"now-{_short_hash(request, 8)}", JOB_NAME_MAX)


def on_demand_job(policy_body: dict, facts: Facts, request: str, type_: str = "incremental") -> dict:
    """The Job a ``dr.lifeline.io/backup-now=<request>`` annotation runs (name fixed by the request)."""
    spec = parse_spec(policy_body)
    if type_ not in TYPES:
        raise PlanError("Ready", "InvalidBackupNowType",
                        f"annotation {ANN_BACKUP_NOW_TYPE}={type_!r}: use one of {', '.join(TYPES)}")
    meta = policy_body["metadata"]
    policy = meta["name"]
    expr = getattr(spec.schedule, type_)
    snapshot = spec.source.volume_snapshot is not None
    template = job_template(policy_body, spec, facts, "snapshot" if snapshot else "backup", type_,
                            0 if snapshot else interval_seconds(expr) if expr else None,
                            extra_labels={LABEL_TRIGGER: "on-demand"})
    template["metadata"]["annotations"][ANN_BACKUP_NOW] = request
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": on_demand_name(policy, request),
            "namespace": meta.get("namespace", ""),
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [owner_reference(policy_body)],
        },
        # A finished on-demand Job stays a week for `kubectl logs`, then the TTL controller removes it.
        "spec": {**template["spec"], "ttlSecondsAfterFinished": 7 * 86400},
    }
    return json.loads(json.dumps(job))
