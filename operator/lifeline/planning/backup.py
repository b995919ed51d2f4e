"""BackupPolicy -> the CronJobs (and on-demand Jobs) that run its backups. Pure.

``plan(policy_body, facts)`` returns every child object the policy should have, as
complete manifests: one CronJob per schedule kind (``<policy>-full``,
``<policy>-incremental``, ``<policy>-differential``), a prune CronJob
(``<policy>-prune``) and a maintenance CronJob (``<policy>-maintenance``: repack).
``on_demand_job`` renders the Job a ``backup-now`` request runs. The controller compares these
with what exists and applies the difference.

What a backup pod looks like:

- one ``agent`` container running ``python -m lifeline.agent.jobs backup``, which reads its
  whole task from the ``LIFELINE_JOB_PLAN`` environment variable (a
  :class:`~lifeline.messages.BackupPlan`, no secrets: S3 credentials come from ``secretKeyRef``
  variables named in the plan), backs the source up to every destination (each its own
  repository) and writes a compact :class:`~lifeline.messages.BackupSummary` to its termination
  message, from which the operator records the RecoveryPoint;
- what the source needs, drawn by its room (:mod:`lifeline.sources`): a PVC mounted read-only
  at ``/source``, a dump container writing into a FIFO, pg_basebackup as an init container, or
  (``volumeSnapshot``) no backup pod at all on schedule but a trigger, the operator then
  starting a data-mover Job rendered here with ``source_claim`` (the PVC made from the snapshot);
- filesystem destinations' PVCs at ``/destinations/<name>``; a ``secret://`` key at
  ``/etc/lifeline/key``; an emptyDir at ``/tmp``;
- a ``vault-*`` key with ``encryption.caBundle`` mounts the bundle at ``/etc/lifeline/vault-ca``
  and sets ``VAULT_CACERT``;
- non-root (65532 unless ``pod.runAsUser``), read-only root filesystem, every
  capability dropped, seccomp RuntimeDefault, no service account token (unless the
  key lives in Vault, whose Kubernetes auth needs it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from lifeline.objects import CRONJOB_NAME_MAX, child_name, label_value, owner_reference, short_hash
from lifeline.api.backuppolicy import BackupPolicySpec, Destination
from lifeline.api.common import parse_duration
from lifeline.labels import (ANN_BACKUP_NOW, ANN_BACKUP_NOW_TYPE, ANN_POLICY, ANN_RECORDED, ANN_RESULT,
                             LABEL_APP_COMPONENT, LABEL_APP_INSTANCE, LABEL_APP_MANAGED_BY, LABEL_APP_NAME,
                             LABEL_APP_PART_OF, LABEL_POLICY, LABEL_TRIGGER)
from lifeline.labels import ANN_SPEC_HASH as ANN_HASH, LABEL_BACKUP_TYPE as LABEL_TYPE
from lifeline.messages import (BackupPlan, BandwidthPlan, CataloguePlan, DestinationPlan, FingerprintPlan,
                               ImmutablePlan, KeyPlan, MaintenancePlan, PrunePlan, RetentionPlan)
from lifeline.sources import BackupPod, PlanError, room_of
from lifeline.sources.resources import Served
from lifeline.sources.base import (AGENT, JOB_COMMAND, RUN_AS, SOURCE_MOUNT, TERMINATION_LOG, container_security,
                                   env_var, inside)

from .backup_schedule import longest_gap
from .pod_security import (DESTINATIONS_MOUNT, KEY_MOUNT, add_destination_volumes, add_key_volumes, apply_placement,
                           azure_env_prefix, credentials_env, gcs_key_file, parse_key_ref, pod_security_context,
                           s3_env_prefix)

TYPES = ("full", "incremental", "differential")
PART_OF = "lifeline"

JOB_NAME_MAX = 63  # a Job's name becomes its pods' job-name label
# AGENT, RUN_AS, SOURCE_MOUNT, TERMINATION_LOG, DESTINATIONS_MOUNT, KEY_MOUNT, PlanError and the pod
# helpers above are imported here for the planners that render the same pods (restore Jobs, drills).

# spec.fingerprint: its container writes the command's output and then its status into this emptyDir;
# it always exits 0 (a failed fingerprint is reported in the point's tags, it does not fail the backup).
FINGERPRINT_MOUNT = "/fingerprint"
FINGERPRINT_OUTPUT = f"{FINGERPRINT_MOUNT}/output"
FINGERPRINT_EXIT_CODE = f"{FINGERPRINT_MOUNT}/exit-code"
FINGERPRINT_SCRIPT = (
    f'"$@" > {FINGERPRINT_OUTPUT}; rc=$?; '
    f'echo "$rc" > {FINGERPRINT_EXIT_CODE}.tmp && mv {FINGERPRINT_EXIT_CODE}.tmp {FINGERPRINT_EXIT_CODE}'
)

# What each operation's Jobs are (app.kubernetes.io/component); "snapshot": a snapshot trigger.
COMPONENTS = {"backup": "backup", "prune": "prune", "snapshot": "snapshot", "catalogue": "catalogue",
              "maintenance": "maintenance"}

DEFAULT_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}


@dataclass(frozen=True)
class Facts:
    """What the planner needs besides the policy: the operator's settings, and what the cluster serves."""

    agent_image: str
    # Non-secret Vault settings (VAULT_ADDR, LIFELINE_VAULT_ROLE, ...) handed to Jobs whose key is in Vault.
    vault_env: tuple[tuple[str, str], ...] = ()
    # The resources the API server serves (discovery), which a resources source chooses from.
    served: tuple[Served, ...] = ()


# ---- names and labels --------------------------------------------------------------


def labels(policy: str, component: str, type_: str | None = None) -> dict:
    out = {
        LABEL_APP_NAME: "lifeline",
        LABEL_APP_INSTANCE: label_value(policy),
        LABEL_APP_COMPONENT: component,
        LABEL_APP_MANAGED_BY: "lifeline",
        LABEL_APP_PART_OF: PART_OF,
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


def stamp(manifest: dict) -> dict:
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
    h = int(short_hash(f"{namespace}/{policy}", 8), 16)
    return f"{h % 60} {3 + (h // 60) % 3} * * *"


def maintenance_schedule(namespace: str, policy: str, spec: BackupPolicySpec | None = None) -> str:
    """``spec.maintenance.schedule``, else once a week on Sunday between 06:00 and 07:59 (after the
    prune, which runs between 03:00 and 05:59), at a minute spread by the policy's name."""
    if spec is not None and spec.maintenance.schedule:
        return spec.maintenance.schedule
    h = int(short_hash(f"{namespace}/{policy}/maintenance", 8), 16)
    return f"{h % 60} {6 + (h // 60) % 2} * * 0"


def _url(scheme: str, where: str, prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{scheme}://{where}/{prefix}" if prefix else f"{scheme}://{where}"


def destination_plan(index: int, dest: Destination) -> DestinationPlan:
    """One destination as the agent reaches it: its repository URL and where its credentials are
    (variables under a prefix of its own, or a mounted key file; never the secrets themselves), whether
    its repository is immutable, and its bandwidth limits."""
    common = {"name": dest.name, "off_site": dest.off_site}
    if dest.immutable is not None:
        common["immutable"] = ImmutablePlan(mode=dest.immutable.mode.lower(), days=dest.immutable.days)
    if dest.bandwidth is not None and (dest.bandwidth.upload or dest.bandwidth.download):
        common["bandwidth"] = BandwidthPlan(upload=dest.bandwidth.upload, download=dest.bandwidth.download)
    if dest.filesystem is not None:
        path = inside(f"{DESTINATIONS_MOUNT}/{dest.name}", dest.filesystem.path,
                       f"destination {dest.name}: filesystem.path")
        return DestinationPlan(**common, repository=f"file://{path}")
    if dest.azure is not None:
        az = dest.azure
        return DestinationPlan(**common, repository=_url("azure", az.container, az.prefix),
                               endpoint=az.endpoint or None, account=az.account_name,
                               credentials_env=azure_env_prefix(index))
    if dest.gcs is not None:
        gcs = dest.gcs
        return DestinationPlan(**common, repository=_url("gs", gcs.bucket, gcs.prefix), endpoint=gcs.endpoint or None,
                               credentials_file=gcs_key_file(dest))
    s3 = dest.s3
    return DestinationPlan(**common, repository=_url("s3", s3.bucket, s3.prefix),
                           region=s3.region, endpoint=s3.endpoint or None, credentials_env=s3_env_prefix(index))


DEFAULT_CIPHER = "aes-256-gcm"


def key_plan(spec: BackupPolicySpec) -> KeyPlan:
    ref = spec.encryption.key_ref
    scheme, _, key = parse_key_ref(ref)
    cipher = spec.encryption.cipher
    return KeyPlan(ref=ref, file=f"{KEY_MOUNT}/{key}" if scheme == "secret" else None,
                   cipher=None if cipher == DEFAULT_CIPHER else cipher)


def job_plan(namespace: str, policy: str, spec: BackupPolicySpec, operation: str,
             type_: str | None,
             served: tuple[Served, ...] = ()) -> BackupPlan | PrunePlan | CataloguePlan | MaintenancePlan:
    """The task ``python -m lifeline.agent.jobs`` reads from LIFELINE_JOB_PLAN (no secret in it)."""
    common = {"namespace": namespace, "policy": policy, "key": key_plan(spec),
              "destinations": [destination_plan(i, d) for i, d in enumerate(spec.destinations)]}
    if operation == "catalogue":
        return CataloguePlan(**common, tag=f"policy={namespace}/{policy}")
    if operation == "maintenance":
        return MaintenancePlan(**common, max_unused=spec.maintenance.max_unused)
    if operation != "backup":
        r = spec.retention
        return PrunePlan(**common, retention=RetentionPlan(last=r.keep_last, daily=r.keep_daily, weekly=r.keep_weekly,
                                                           monthly=r.keep_monthly, yearly=r.keep_yearly))
    fingerprint = FingerprintPlan(output=FINGERPRINT_OUTPUT, exit_code=FINGERPRINT_EXIT_CODE) \
        if spec.fingerprint is not None else None
    return BackupPlan(**common, type=type_ or "incremental",
                      source=room_of(spec).job_source(namespace, policy, spec, served),
                      tags=[f"policy={namespace}/{policy}"], fingerprint=fingerprint)


# ---- pods --------------------------------------------------------------------------


def pod_resources(spec: BackupPolicySpec) -> dict:
    """The policy's ``pod.resources``, or the defaults for a backup pod."""
    res = spec.pod.resources
    if res is None:
        return json.loads(json.dumps(DEFAULT_RESOURCES))
    return {k: dict(v) for k, v in (("requests", res.requests), ("limits", res.limits)) if v}


def pod_spec(namespace: str, policy: str, spec: BackupPolicySpec, operation: str, type_: str | None,
             facts: Facts, source_claim: str | None = None) -> dict:
    """The backup (or prune) pod; ``source_claim`` is the PVC made from a snapshot (data-mover Jobs)."""
    room = room_of(spec)
    if operation == "snapshot":
        return room.trigger_pod(spec, facts.agent_image)
    plan = job_plan(namespace, policy, spec, operation, type_, facts.served)
    key_scheme = parse_key_ref(spec.encryption.key_ref)[0]
    env = [plan.to_env(), {"name": "HOME", "value": "/tmp"}]
    if key_scheme.startswith("vault"):
        env += [{"name": k, "value": v} for k, v in facts.vault_env]
    for i, dest in enumerate(spec.destinations):
        env += credentials_env(i, dest)
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    resources = pod_resources(spec)
    agent = {
        "name": AGENT, "image": facts.agent_image, "imagePullPolicy": "IfNotPresent",
        "command": list(JOB_COMMAND), "args": [operation], "env": env, "resources": resources,
        "securityContext": container_security(), "volumeMounts": mounts,
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
    add_destination_volumes(spec, mounts, volumes)
    add_key_volumes(spec, mounts, volumes, env)
    if operation == "backup":
        draft = BackupPod(pod, agent, resources, facts.agent_image, policy, source_claim)
        room.shape_backup_pod(draft, spec)
        if spec.fingerprint is not None:
            _add_fingerprint(pod, agent, spec, resources, with_source=draft.mounts_source)
    apply_placement(pod, spec)
    return pod


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
    env = [env_var(e) for e in room_of(spec).container_env(spec) if e.name not in {f.name for f in fp.env}]
    env += [env_var(e) for e in fp.env]
    pod["containers"].append({
        "name": "fingerprint", "image": fp.image,
        "command": ["/bin/sh", "-c", FINGERPRINT_SCRIPT, "lifeline-fingerprint", *fp.command],
        "env": env + [{"name": "HOME", "value": "/tmp"}],
        "resources": resources, "securityContext": container_security(), "volumeMounts": mounts,
    })


def _deadline(spec: BackupPolicySpec, interval: int | None) -> int:
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
    return stamp({
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
    operation = "snapshot" if room_of(spec).runs_by_trigger else "backup"
    children = [
        _cronjob(policy_body, spec, facts, child_name(policy, kind), expr, operation, kind)
        for kind, expr in schedules(spec)
    ]
    children.append(_cronjob(policy_body, spec, facts, child_name(policy, "prune"),
                             prune_schedule(meta.get("namespace", ""), policy), "prune", None))
    children.append(_cronjob(policy_body, spec, facts, child_name(policy, "maintenance"),
                             maintenance_schedule(meta.get("namespace", ""), policy, spec), "maintenance", None))
    return children


def on_demand_name(policy: str, request: str) -> str:
    """The Job a ``backup-now`` request starts: named by the request, so it starts at most once."""
    return child_name(policy, f"now-{short_hash(request, 8)}", JOB_NAME_MAX)


def on_demand_job(policy_body: dict, facts: Facts, request: str, type_: str = "incremental") -> dict:
    """The Job a ``dr.lifeline.io/backup-now=<request>`` annotation runs (name fixed by the request)."""
    spec = parse_spec(policy_body)
    if type_ not in TYPES:
        raise PlanError("Ready", "InvalidBackupNowType",
                        f"annotation {ANN_BACKUP_NOW_TYPE}={type_!r}: use one of {', '.join(TYPES)}")
    meta = policy_body["metadata"]
    policy = meta["name"]
    expr = getattr(spec.schedule, type_)
    snapshot = room_of(spec).runs_by_trigger
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
