"""RecoveryPoint + policy + target -> the batch/v1 Job that restores it. Pure.

Shared by RestoreDrill (restores into a sandbox) and Restore (restores into production):
both decide *where*; this module only renders *how*.

``restore_job(point, policy_body, target, namespace=..., name=..., facts=...)`` returns one
complete Job manifest:

- ``point`` is the RecoveryPoint object (a dict as the API serves it). Its
  ``spec.copies`` says which destinations hold it; :func:`choose_copy` picks the
  ``destination`` asked for, else the first copy in an object store destination (S3, Azure,
  GCS: readable from any namespace), else the first copy at all.
- ``policy_body`` is the BackupPolicy that made the point: the encryption ``keyRef``,
  the destinations (repository URL, endpoint/region, the credentials Secret, the PVC of
  a filesystem destination) and the pod options (runAsUser, resources, node selector...).
  The Secrets and PVCs it names are mounted *by name in the Job's namespace*: a Job in
  another namespace (a drill's sandbox) needs copies of those Secrets there, see
  :func:`secrets_needed` and :func:`claims_needed`.
- ``target`` (:class:`RestoreTarget`) is either a PVC (+ a directory inside it) that the
  tree is written into, or a command (in its own image, which needs ``/bin/sh``) that the
  point's byte stream is piped into, such as ``pg_restore -d his`` or ``psql``.

What the pod runs: an ``agent`` container, ``python -m lifeline.agent.restore_task restore``,
reading its task from ``LIFELINE_JOB_PLAN`` (a :class:`~lifeline.messages.RestorePlan`, no
secret in it). It checks the stored manifest against the checksum the RecoveryPoint recorded,
restores (every chunk is authenticated on the way), and writes a
:class:`~lifeline.messages.RestoreSummary` to its termination message (ok, reason, error, bytes,
files, restoreSeconds, checksumSeconds, ...). Durations are measured by the agent itself
(monotonic clock), so they are real whatever clock the cluster keeps.

For a command target the pod mirrors a dump backup: an init container makes a FIFO in a shared
emptyDir (``/restore/stream``), the agent writes the stream into it, the ``load`` container runs
the command with the FIFO as stdin and publishes its exit status (``/restore/exit-code``), and the
agent reports success only when the command exited 0; its restore time ends when the load ends.

With ``target.target_time`` (a continuous PostgreSQL policy) the agent container runs
``lifeline agent restore-pitr --target-time T|latest`` instead: see :mod:`.restore_pitr`.

Pod hardening is the backup pod's (:mod:`lifeline.planning.backup`): non-root, read-only root
filesystem, no capabilities, seccomp RuntimeDefault, no service-account token unless the key is
in Vault.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.messages import RestorePlan, RestoreTargetPlan
from lifeline.sources import room_of
from lifeline.sources.resources import reader_name

from . import backup, restore_pitr as pitr
from .backup import Facts, PlanError
from .pod_security import add_credentials_volume, add_key_volumes, apply_placement, credentials_env

RESTORE_COMMAND = ("python", "-m", "lifeline.agent.restore_task")
TARGET_MOUNT = "/target"
STREAM_MOUNT = "/restore"
FIFO = f"{STREAM_MOUNT}/stream"
EXIT_CODE = f"{STREAM_MOUNT}/exit-code"
LOAD_ERRORS = f"{STREAM_MOUNT}/load-errors"  # the command's stderr: its last error line is the failure's reason
LOADER = "load"
COMPONENT = "restore"
# The load container's whole program: the command reads the FIFO, its stderr is kept for the agent
# (and copied to the log), then its status is published.
LOAD_SCRIPT = (
    f'"$@" < {FIFO} 2> {LOAD_ERRORS}; rc=$?; cat {LOAD_ERRORS} >&2; '
    f'echo "$rc" > {EXIT_CODE}.tmp && mv {EXIT_CODE}.tmp {EXIT_CODE}; exit "$rc"'
)
DEFAULT_DEADLINE = 6 * 3600
OBJECTS_MOUNT = "/objects"  # an objects restore's tree: memory-backed, Secrets included, gone with the pod
KUBECONFIG_MOUNT = "/kubeconfig"


@dataclass(frozen=True)
class ObjectsTarget:
    """An objects restore: the point's namespace -> the target's, what to do with what exists, who writes
    (``writer``: a ServiceAccount of this cluster; ``kubeconfig``: (Secret, key) of another cluster's),
    and the Jobs, as JSON, that give the claims restored here their data. Into a drill's sandbox
    (``sandbox``): the kinds never put back there (``leave_out``: ``Kind`` or ``Kind.group``), Services
    kept inside the cluster and CronJobs suspended (:mod:`lifeline.planning.drill_application`)."""

    namespace_map: tuple[tuple[str, str], ...]
    existing: str = "skip"
    writer: str | None = None
    kubeconfig: tuple[str, str] | None = None
    data_jobs: tuple[str, ...] = ()
    leave_out: tuple[str, ...] = ()
    sandbox: bool = False

    def __post_init__(self):
        if bool(self.writer) == bool(self.kubeconfig):
            raise ValueError("an objects restore writes either as a writer account here or through a kubeconfig")


@dataclass(frozen=True)
class RestoreTarget:
    """Where the data goes: ``claim_name`` (+ ``path``), ``command`` run in ``image``, or ``objects``."""

    claim_name: str | None = None
    path: str = "/"
    image: str | None = None
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # literal variables for the command (no secrets)
    target_time: str | None = None  # point-in-time (continuous policies): RFC 3339 or "latest"
    overwrite: bool = False  # restore over what is there (never through a link already there)
    objects: ObjectsTarget | None = None

    def __post_init__(self):
        if self.target_time and not self.claim_name:
            raise ValueError("a point-in-time restore writes a PostgreSQL data directory: it needs a PVC target")
        if sum(map(bool, (self.claim_name, self.command, self.objects))) != 1:
            raise ValueError("a restore target is a PVC (claim_name), a command or objects, exactly one")
        if self.command and not self.image:
            raise ValueError("a command target needs the image that holds the command")


@dataclass(frozen=True)
class Options:
    """What differs between a drill's Job and a production restore's Job."""

    labels: dict = field(default_factory=dict)  # added to the Job's and pod's labels
    annotations: dict = field(default_factory=dict)
    owner: dict | None = None  # an ownerReference (same namespace only)
    deadline_seconds: int | None = None  # activeDeadlineSeconds; 6 h when left out
    ttl_seconds_after_finished: int | None = None


def choose_copy(point: dict, policy: BackupPolicySpec, destination: str | None = None) -> dict:
    """The copy to read: the one asked for, else the first in an object store (S3, Azure, GCS), else the first."""
    copies = (point.get("spec") or {}).get("copies") or []
    known = {d.name: d for d in policy.destinations}
    usable = [c for c in copies if c.get("destination") in known]
    name = (point.get("metadata") or {}).get("name", "?")
    listed = ", ".join(c.get("destination", "?") for c in copies) or "none"
    asked = next((c for c in usable if c["destination"] == destination), None) if destination else None
    if destination and asked is None:
        raise PlanError("Ready", "NoSuchCopy", f"recovery point {name} has no copy in destination {destination!r} "
                                               f"of the policy (copies: {listed})")
    if asked is not None:
        return asked
    if not usable:
        raise PlanError("Ready", "NoReadableCopy",
                        f"recovery point {name}: none of its copies ({listed}) is in a destination the policy "
                        "still names; restore it by hand with `lifeline agent restore`")
    stores = [c for c in usable if known[c["destination"]].credentials_secret is not None]  # s3, azure, gcs
    return (stores or usable)[0]


def secrets_needed(policy: BackupPolicySpec, copy: dict) -> list[str]:
    """Secrets the Job mounts or reads by name: the key (secret://) and the copy's object store credentials
    (S3 or Azure variables, a GCS key file)."""
    out = []
    _, key_secret, _ = backup.parse_key_ref(policy.encryption.key_ref)
    if key_secret:
        out.append(key_secret)
    dest = next(d for d in policy.destinations if d.name == copy["destination"])
    if dest.credentials_secret is not None:
        out.append(dest.credentials_secret)
    return sorted(set(out))


def claims_needed(policy: BackupPolicySpec, copy: dict) -> list[str]:
    """PVCs of a filesystem destination the Job mounts (read-only) to read the copy."""
    dest = next(d for d in policy.destinations if d.name == copy["destination"])
    return [dest.filesystem.claim_name] if dest.filesystem is not None else []


def restore_plan(point: dict, policy_namespace: str, policy_name: str, spec: BackupPolicySpec, copy: dict,
                 target: RestoreTarget) -> RestorePlan:
    """The task ``python -m lifeline.agent.restore_task`` reads from LIFELINE_JOB_PLAN (no secret in it)."""
    holds_objects = room_of(spec).restores_into == "objects"
    if holds_objects and target.objects is None:  # never as files: the Secrets would land readable in a volume
        raise PlanError("Ready", "ObjectsRestoreNotSupported",
                        f"policy {policy_name} backs up Kubernetes objects, which are never written into a volume "
                        "or a command: restore them with a Restore's target.objects, or by hand with "
                        "`lifeline agent objects-restore` (docs/kubernetes-objects.md)")
    if target.objects is not None and not holds_objects:
        raise PlanError("Ready", "NotAnObjectsPoint",
                        f"policy {policy_name} does not back up Kubernetes objects: restore its points with "
                        "target.pvc or target.command")
    index = next(i for i, d in enumerate(spec.destinations) if d.name == copy["destination"])
    dest = backup.destination_plan(index, spec.destinations[index])
    p_spec = point.get("spec") or {}
    if target.claim_name:
        where = RestoreTargetPlan(kind="pvc", path=backup.inside(TARGET_MOUNT, target.path, "target path"),
                                  overwrite=target.overwrite)
    elif target.objects is not None:
        o = target.objects
        where = RestoreTargetPlan(kind="objects", path=f"{OBJECTS_MOUNT}/tree", namespace_map=dict(o.namespace_map),
                                  existing=o.existing, kubeconfig=f"{KUBECONFIG_MOUNT}/config" if o.kubeconfig else None,
                                  data_jobs=[json.loads(j) for j in o.data_jobs] or None,
                                  leave_out=list(o.leave_out) or None, sandbox=True if o.sandbox else None)
    else:
        where = RestoreTargetPlan(kind="command", path=FIFO, exit_code=EXIT_CODE, errors=LOAD_ERRORS)
    return RestorePlan(
        namespace=policy_namespace, policy=policy_name, point=(point.get("metadata") or {}).get("name"),
        snapshot_id=copy["snapshotId"],
        # the copy's own checksum when it differs from the point's (another repository, another manifest)
        manifest_checksum=copy.get("manifestChecksum") or p_spec.get("manifestChecksum"),
        destinations=[dest], key=backup.key_plan(spec), target=where)


def _labels(policy: str, extra: dict) -> dict:
    return {**backup.labels(policy, COMPONENT), **extra}


def pod_spec(plan: RestorePlan, spec: BackupPolicySpec, copy: dict, target: RestoreTarget, facts: Facts) -> dict:
    key_scheme = backup.parse_key_ref(spec.encryption.key_ref)[0]
    env = [plan.to_env(), {"name": "HOME", "value": "/tmp"}]
    if key_scheme.startswith("vault"):
        env += [{"name": k, "value": v} for k, v in facts.vault_env]
    index = next(i for i, d in enumerate(spec.destinations) if d.name == copy["destination"])
    dest = spec.destinations[index]
    env += credentials_env(index, dest)
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    add_credentials_volume(index, dest, mounts, volumes)
    if dest.filesystem is not None:
        mounts.append({"name": "repository", "mountPath": f"{backup.DESTINATIONS_MOUNT}/{dest.name}",
                       "readOnly": True})
        volumes.append({"name": "repository",
                        "persistentVolumeClaim": {"claimName": dest.filesystem.claim_name, "readOnly": True}})
    add_key_volumes(spec, mounts, volumes, env)
    resources = backup.pod_resources(spec)
    if target.target_time:
        env = pitr.env(env, spec, copy)
    agent = {
        "name": backup.AGENT, "image": facts.agent_image, "imagePullPolicy": "IfNotPresent",
        "command": list(RESTORE_COMMAND), "args": ["restore"], "env": env, "resources": resources,
        "securityContext": backup.container_security(), "volumeMounts": mounts,
        "terminationMessagePath": backup.TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod: dict = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": key_scheme.startswith("vault"),
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": spec.pod.run_as_user or backup.RUN_AS,
            "runAsGroup": spec.pod.run_as_group if spec.pod.run_as_group is not None else backup.RUN_AS,
            # the restored files belong to the pod's group, so a verify pod of the same policy can read them
            "fsGroup": spec.pod.run_as_group if spec.pod.run_as_group is not None else backup.RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [agent],
        "volumes": volumes,
    }
    if target.target_time:
        agent["command"], agent["args"] = pitr.command(), pitr.args(plan, target.target_time, no_archive=True)
    if target.claim_name:
        mounts.append({"name": "target", "mountPath": TARGET_MOUNT})
        volumes.append({"name": "target", "persistentVolumeClaim": {"claimName": target.claim_name}})
    elif target.objects is not None:
        _objects_pod(pod, agent, target.objects)
    else:
        volumes.append({"name": "stream", "emptyDir": {}})
        mounts.append({"name": "stream", "mountPath": STREAM_MOUNT})
        pod["initContainers"] = [{
            "name": "prepare", "image": facts.agent_image, "imagePullPolicy": "IfNotPresent",
            "command": list(backup.JOB_COMMAND), "args": ["prepare", "--fifo", FIFO],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": backup.container_security(),
            "volumeMounts": [{"name": "stream", "mountPath": STREAM_MOUNT}],
        }]
        pod["containers"].append({
            "name": LOADER, "image": target.image,
            "command": ["/bin/sh", "-c", LOAD_SCRIPT, "lifeline-load", *target.command],
            "env": [{"name": k, "value": v} for k, v in target.env] + [{"name": "HOME", "value": "/tmp"}],
            "resources": resources, "securityContext": backup.container_security(),
            "volumeMounts": [{"name": "stream", "mountPath": STREAM_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
        })
    apply_placement(pod, spec, service_account=key_scheme.startswith("vault"))
    if target.objects is not None and target.objects.writer:
        # the writer's token: the API server judges every write by it (a vault key logs in with it too)
        pod["serviceAccountName"], pod["automountServiceAccountToken"] = target.objects.writer, True
    elif target.objects is not None and key_scheme.startswith("vault"):
        # another cluster's writes go through the kubeconfig; the token here only logs in to Vault, as the
        # policy's backups do: as its reader
        pod["serviceAccountName"] = reader_name(plan.policy)
    return pod


def _objects_pod(pod: dict, agent: dict, objects: ObjectsTarget) -> None:
    """The tree's scratch space in memory (it holds the Secrets in clear), another cluster's kubeconfig."""
    pod["volumes"].append({"name": "objects", "emptyDir": {"medium": "Memory"}})
    agent["volumeMounts"].append({"name": "objects", "mountPath": OBJECTS_MOUNT})
    if objects.kubeconfig:
        secret, key = objects.kubeconfig
        pod["volumes"].append({"name": "kubeconfig", "secret": {"secretName": secret, "defaultMode": 0o400,
                                                                 "items": [{"key": key, "path": "config"}]}})
        agent["volumeMounts"].append({"name": "kubeconfig", "mountPath": KUBECONFIG_MOUNT, "readOnly": True})


def restore_job(point: dict, policy_body: dict, target: RestoreTarget, *, namespace: str, name: str,
                facts: Facts, destination: str | None = None, options: Options | None = None) -> dict:
    """The Job that restores ``point`` (a RecoveryPoint dict) into ``target``, in ``namespace``.

    Raises :class:`~lifeline.planning.backup.PlanError` when no copy can be read and pydantic's
    ValidationError for an invalid policy.
    """
    options = options or Options()
    spec = backup.parse_spec(policy_body)
    meta = policy_body["metadata"]
    policy, policy_ns = meta["name"], meta.get("namespace", "")
    copy = choose_copy(point, spec, destination)
    if target.target_time:
        pitr.require_continuous(spec, policy)
    plan = restore_plan(point, policy_ns, policy, spec, copy, target)
    lbl = _labels(policy, options.labels)
    annotations = {backup.ANN_POLICY: policy, **options.annotations}
    job_meta: dict = {"name": name[: backup.JOB_NAME_MAX], "namespace": namespace, "labels": lbl,
                      "annotations": annotations}
    if options.owner:
        job_meta["ownerReferences"] = [options.owner]
    job_spec: dict = {
        "backoffLimit": 0,  # a second attempt would measure a different restore; the caller decides
        "activeDeadlineSeconds": int(options.deadline_seconds or DEFAULT_DEADLINE),
        "template": {"metadata": {"labels": dict(lbl)},
                     "spec": pod_spec(plan, spec, copy, target, facts)},
    }
    if options.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = int(options.ttl_seconds_after_finished)
    return json.loads(json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}))


__all__ = ["ObjectsTarget", "Options", "RestoreTarget", "choose_copy", "claims_needed", "restore_job", "restore_plan",
           "secrets_needed"]
