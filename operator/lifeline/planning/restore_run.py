"""The production Restore's children: its Job, its new claim, and the claim's outcome labels. Pure.

The Job itself comes from :func:`lifeline.planning.restore_job.restore_job` (shared with
RestoreDrill); this module wraps it with what a restore into production needs besides:

- **an emptiness guard**: unless ``spec.overwrite`` is true, an init container looks at the
  target directory first and stops the Job, having written nothing, when it holds anything
  (``lost+found`` aside). The agent's own restore writes into whatever is there, so the guard
  is here, in front of it;
- **its own labels** (``dr.lifeline.io/restore``) instead of the policy label: a restore Job
  must not be read as one of the policy's backup Jobs by the BackupPolicy controller;
- **an ownerReference** to the Restore (the Job goes with it), while the claims it writes
  into never get one: deleting a Restore must never delete restored data;
- **the NewClaim strategy**: the data goes to a new PVC (``target.pvc.claimName``, created
  here, labelled ``dr.lifeline.io/restore-state=restoring``). "Switching" means: only after
  the Job succeeded -- the agent authenticated and re-hashed every chunk and checked the
  manifest checksum recorded at backup time -- the claim is labelled
  ``dr.lifeline.io/restore-state=verified`` and annotated with the point it holds. Workloads
  (or the GitOps change that points them at the new claim) select on that label; Lifeline
  never edits a workload's ``claimName`` itself. A failed restore labels the target
  ``dr.lifeline.io/restore-state=failed``, so half-written data never passes for good data.
"""
from __future__ import annotations

import hashlib

from lifeline.labels import (ANN_RESTORED_FROM, LABEL_APP_COMPONENT, LABEL_APP_INSTANCE, LABEL_APP_MANAGED_BY,
                             LABEL_APP_NAME, LABEL_APP_PART_OF, LABEL_RESTORE)
from lifeline.labels import LABEL_RESTORE_STATE as LABEL_STATE
from lifeline.objects import owner_reference

from . import backup, restore_job

GUARD = "check-target"
# The guard container (the agent image): refuse a target that holds anything (lifeline.agent.target_guard).
GUARD_COMMAND = ("python", "-m", "lifeline.agent.target_guard")


def job_name(restore: str) -> str:
    """``restore-<name>``, shortened with a hash to fit a Job name (63) when needed."""
    name = f"restore-{restore}"
    if len(name) <= backup.JOB_NAME_MAX:
        return name
    digest = hashlib.sha256(restore.encode()).hexdigest()[:8]
    return f"{name[:backup.JOB_NAME_MAX - 9].rstrip('-.')}-{digest}"


def labels(restore: str) -> dict:
    return {
        LABEL_APP_NAME: "lifeline", LABEL_APP_INSTANCE: backup.label_value(restore),
        LABEL_APP_COMPONENT: "restore", LABEL_APP_MANAGED_BY: "lifeline",
        LABEL_APP_PART_OF: backup.PART_OF, LABEL_RESTORE: backup.label_value(restore),
    }


def target_of(spec: dict, objects: restore_job.ObjectsTarget | None = None) -> restore_job.RestoreTarget:
    target = spec.get("target") or {}
    if objects is not None:
        return restore_job.RestoreTarget(objects=objects)
    if target.get("pvc"):
        pvc = target["pvc"]
        return restore_job.RestoreTarget(claim_name=pvc["claimName"], path=pvc.get("path") or "/",
                                         target_time=spec.get("targetTime"), overwrite=bool(spec.get("overwrite")))
    cmd = target["command"]
    return restore_job.RestoreTarget(image=cmd["image"], command=tuple(cmd["command"]))


def target_namespace(body: dict) -> str:
    return ((body.get("spec") or {}).get("target") or {}).get("namespace") or body["metadata"].get("namespace", "")


def restores_objects(body: dict) -> bool:
    return ((body.get("spec") or {}).get("target") or {}).get("objects") is not None  # {}: every default


def job_namespace(body: dict) -> str:
    """Where the Job runs: the target namespace, except for objects, which are written through the API
    server from the Restore's own namespace (beside the policy's Secrets)."""
    return body["metadata"].get("namespace", "") if restores_objects(body) else target_namespace(body)


def job(body: dict, point: dict, policy_body: dict, facts: backup.Facts,
        objects: restore_job.ObjectsTarget | None = None) -> dict:
    """The restore Job for ``body`` (a Restore), reading ``point`` made by ``policy_body`` (``objects``:
    how an objects restore writes, :func:`lifeline.planning.restore_objects.target`).

    Raises :class:`~lifeline.planning.backup.PlanError` when no copy of the point is readable.
    """
    meta, spec = body["metadata"], body.get("spec") or {}
    name = meta["name"]
    namespace = job_namespace(body)
    same_namespace = namespace == meta.get("namespace")
    manifest = restore_job.restore_job(
        point, policy_body, target_of(spec, objects), namespace=namespace, name=job_name(name), facts=facts,
        destination=spec.get("destination"),
        options=restore_job.Options(owner=owner_reference(body) if same_namespace else None,
                                    annotations={LABEL_RESTORE: f"{meta.get('namespace', '')}/{name}"}))
    own = labels(name)
    for m in (manifest["metadata"], manifest["spec"]["template"]["metadata"]):
        m["labels"] = {k: v for k, v in m["labels"].items() if k != backup.LABEL_POLICY} | own
    manifest["metadata"]["annotations"].pop(backup.ANN_POLICY, None)
    pod = manifest["spec"]["template"]["spec"]
    if spec.get("target", {}).get("pvc") and not spec.get("overwrite"):
        agent = next(c for c in pod["containers"] if c["name"] == backup.AGENT)
        path = backup.inside(restore_job.TARGET_MOUNT, spec["target"]["pvc"].get("path") or "/", "target path")
        shown = f"{spec['target']['pvc']['claimName']}:{spec['target']['pvc'].get('path') or '/'}"
        pod.setdefault("initContainers", []).insert(0, {
            "name": GUARD, "image": agent["image"], "imagePullPolicy": "IfNotPresent",
            "command": [*GUARD_COMMAND, path, shown],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "securityContext": agent["securityContext"],
            "volumeMounts": [m for m in agent["volumeMounts"] if m["name"] == "target"],
            "terminationMessagePath": backup.TERMINATION_LOG, "terminationMessagePolicy": "FallbackToLogsOnError",
        })
    return manifest


def new_claim(body: dict, default_size: str = "10Gi") -> dict | None:
    """The PVC a NewClaim restore writes into (None for other strategies and command targets)."""
    spec = body.get("spec") or {}
    pvc = (spec.get("target") or {}).get("pvc")
    if (spec.get("strategy") or "NewClaim") != "NewClaim" or not pvc:
        return None
    claim: dict = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": pvc["claimName"], "namespace": target_namespace(body),
                     "labels": {**labels(body["metadata"]["name"]), LABEL_STATE: "restoring"},
                     "annotations": {ANN_RESTORED_FROM: spec.get("recoveryPoint", "")}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": pvc.get("size") or default_size}}},
    }
    if pvc.get("storageClassName"):
        claim["spec"]["storageClassName"] = pvc["storageClassName"]
    return claim


def claim_state_patch(body: dict, state: str) -> dict:
    """Labels for the target claim: ``verified`` (the switch) or ``failed``."""
    spec = body.get("spec") or {}
    return {"metadata": {"labels": {LABEL_STATE: state, LABEL_RESTORE: backup.label_value(body["metadata"]["name"])},
                         "annotations": {ANN_RESTORED_FROM: spec.get("recoveryPoint", "")}}}
