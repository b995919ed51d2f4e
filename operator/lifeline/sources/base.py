"""What the house asks of a backup source, and the pod pieces every source's Jobs share. Pure.

A :class:`SourceRoom` answers for one kind of ``spec.source``: the job plan's source (what the
agent reads), the containers and volumes the backup pod needs for it, the objects it refers to
and whether they are there (``SourceAvailable``), and how its points come back (into a volume,
or piped into a load command). The planners ask the room; none of them branches on the kind.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import ClassVar

from lifeline.api.backuppolicy import BackupPolicySpec, EnvVar
from lifeline.messages import SourcePlan

RUN_AS = 65532  # the image's lifeline user
AGENT = "agent"
JOB_COMMAND = ("python", "-m", "lifeline.agent.jobs")  # the image's entry point is `lifeline`
TERMINATION_LOG = "/dev/termination-log"
SOURCE_MOUNT = "/source"
SMALL_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}


class PlanError(ValueError):
    """The policy cannot be turned into objects; ``condition`` says which condition reports it."""

    def __init__(self, condition: str, reason: str, message: str):
        super().__init__(message)
        self.condition, self.reason, self.message = condition, reason, message


def container_security() -> dict:
    """Every Lifeline container: no privilege escalation, read-only root, no capabilities, non-root."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def env_var(entry: EnvVar) -> dict:
    """A model's environment variable as a container's ``env`` item."""
    if entry.value_from_secret is not None:
        ref = entry.value_from_secret
        return {"name": entry.name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    return {"name": entry.name, "value": entry.value or ""}


def inside(mount: str, path: str, what: str) -> str:
    """``path`` (from the spec) under ``mount``; refused when it climbs out with ``..``."""
    parts = [p for p in (path or "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PlanError("SourceAvailable", "InvalidPath",
                        f"{what} {path!r} climbs out of its volume ('..'); give a path inside the volume")
    return posixpath.join(mount, *parts) if parts else mount


def mount_source(pod: dict, agent: dict, claim: str) -> None:
    """``claim`` mounted read-only at ``/source`` in the agent, right after ``/tmp`` (before the
    destinations and the key, where rendered Jobs have always had it)."""
    agent["volumeMounts"].insert(1, {"name": "source", "mountPath": SOURCE_MOUNT, "readOnly": True})
    pod["volumes"].insert(1, {"name": "source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})


# ---- what a lookup found, and the problems it shows ----------------------------------------------


@dataclass(frozen=True)
class Ref:
    """What a lookup found: ``exists`` None means the lookup failed (``error`` says why)."""

    exists: bool | None
    keys: frozenset[str] = frozenset()
    error: str | None = None


@dataclass(frozen=True)
class Seen:
    """What the operator found around a policy: ``refs`` by ``pvc/``, ``secret/``, ``vsclass/`` name, and
    the newest failure of the source's own pipeline since the last good backup, as ``(reason, message)``."""

    namespace: str
    refs: dict[str, Ref] = field(default_factory=dict)
    pipeline_failure: tuple[str, str] | None = None
    policy: str = ""
    served: tuple = ()  # what the API server serves (resources.Served), for a resources source


@dataclass(frozen=True)
class Availability:
    """``SourceAvailable``: True, False or None (not known), with its reason and message."""

    status: bool | None
    reason: str
    message: str


def secret_problem(ref: Ref | None, ns: str, name: str, need: tuple[str, ...], what: str) -> tuple[str, str] | None:
    if ref is None or ref.exists is None:
        return None
    if not ref.exists:
        return "SecretNotFound", f"{what}: Secret {ns}/{name} does not exist: create it" + (
            f" with the keys {', '.join(need)}" if need else "")
    missing = [k for k in need if k not in ref.keys]
    if missing:
        return "SecretKeyMissing", (f"{what}: Secret {ns}/{name} has no key {', '.join(missing)} "
                                    f"(it has: {', '.join(sorted(ref.keys)) or 'none'})")
    return None


def pvc_problem(ref: Ref | None, ns: str, name: str, what: str, field_: str) -> tuple[str, str] | None:
    if ref is None or ref.exists is None or ref.exists:
        return None
    return "PVCNotFound", f"{what}: PersistentVolumeClaim {ns}/{name} does not exist: create it, or fix {field_}"


def env_secret_problem(env: list[EnvVar], seen: Seen, of: str) -> tuple[str, str] | None:
    """The first ``valueFrom.secretKeyRef`` of a source container's ``env`` whose Secret or key is missing."""
    for e in env:
        if e.value_from_secret:
            ref = seen.refs.get(f"secret/{e.value_from_secret.name}")
            problem = secret_problem(ref, seen.namespace, e.value_from_secret.name, (e.value_from_secret.key,),
                                     f"source: env {e.name} of {of}")
            if problem:
                return problem
    return None


def env_secrets(env: list[EnvVar]) -> list[str]:
    return [f"secret/{e.value_from_secret.name}" for e in env if e.value_from_secret]


def claim_availability(seen: Seen, claim: str, field_: str, works: str) -> Availability:
    """A source read from a PVC: missing, not looked up, or there (``works`` says what backups do with it)."""
    ref = seen.refs.get(f"pvc/{claim}")
    problem = pvc_problem(ref, seen.namespace, claim, "source", field_)
    if problem:
        return Availability(False, *problem)
    if ref is None or ref.exists is None:
        return Availability(None, "LookupFailed", f"could not look up PersistentVolumeClaim {seen.namespace}/{claim}: "
                                                  f"{(ref.error if ref else None) or 'not looked up yet'}")
    return Availability(True, "PVCFound", f"PersistentVolumeClaim {claim} exists; {works}")


# ---- the room ---------------------------------------------------------------------------------------


@dataclass
class BackupPod:
    """The backup pod being drawn: the room adds its containers and volumes to ``pod`` and ``agent``."""

    pod: dict
    agent: dict
    resources: dict
    image: str  # the agent image (init containers that only prepare use it too)
    policy: str = ""
    source_claim: str | None = None  # a PVC made from a snapshot, which the data mover reads at /source

    @property
    def mounts_source(self) -> bool:
        return any(v["name"] == "source" for v in self.pod["volumes"])


class SourceRoom:
    """One kind of ``spec.source``. Subclasses set the class attributes and override what differs."""

    kind: ClassVar[str]  # the API's word: spec.source.<kind>
    attribute: ClassVar[str]  # the field's name on the model
    # The CronJobs' pods only say "now"; the operator runs the source's pipeline (volumeSnapshot).
    runs_by_trigger: ClassVar[bool] = False
    # A shipper Deployment sends closed segments as they appear; RPOMet counts from the newest one.
    ships_segments: ClassVar[bool] = False
    # spec.hooks run around the source's cut.
    runs_hooks: ClassVar[bool] = False
    # "volume": a point is a tree restored into a PVC; "command": a byte stream piped into a load command.
    restores_into: ClassVar[str] = "volume"

    def settings(self, spec: BackupPolicySpec):
        return getattr(spec.source, self.attribute)

    def job_source(self, namespace: str, policy: str, spec: BackupPolicySpec, served: tuple = ()) -> SourcePlan:
        """What the backup Job's agent reads (the plan's ``source``); ``served``: what the API server
        serves (:class:`lifeline.sources.resources.Served`), which only a resources source reads."""
        raise NotImplementedError

    def shape_backup_pod(self, draft: BackupPod, spec: BackupPolicySpec) -> None:
        """Add the source's volumes and containers to a backup pod."""
        raise NotImplementedError

    def container_env(self, spec: BackupPolicySpec) -> list[EnvVar]:
        """The source container's environment, which the fingerprint container starts from."""
        return []

    def references(self, spec: BackupPolicySpec) -> list[str]:
        """Every ``pvc/``, ``secret/`` and ``vsclass/`` name the source's Jobs need."""
        raise NotImplementedError

    def availability(self, spec: BackupPolicySpec, seen: Seen) -> Availability:
        raise NotImplementedError
