"""An objects Restore's particulars: who writes, where, and the data that comes with the claims. Pure.

A resources point holds a namespace's objects; a Restore with ``target.objects`` puts them back
through an API server (:mod:`lifeline.agent.objects_put_back` in the Job). This module decides:

- the namespace mapping: the point's namespace (the Restore's own: points live beside their
  policy) to ``target.namespace``;
- who writes: in this cluster, the writer account of :mod:`.objects_writer`; in another cluster,
  the kubeconfig in ``target.objects.kubeconfigSecret`` (its identity, that cluster's RBAC);
- the data: with ``withData``, for every pvc policy of the namespace, a restore Job of its newest
  usable point that finished at or before the objects point did, into that policy's claim in the
  target namespace. The agent makes such a Job only for a claim it has just created (never over a
  claim that was there), after the claims and before any workload, and waits for it, so the
  application starts on its data. The Jobs are rendered here (the agent plans nothing).

A drill of a resources policy (:mod:`.drill_application`) uses the same data (:func:`claim_points`,
:func:`claim_jobs`) into its sandbox.
"""
from __future__ import annotations

import hashlib
import json

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.clock import parse_time
from lifeline.labels import LABEL_RESTORE
from lifeline.sources import room_of

from . import backup, objects_writer, restore_job, restore_run

UNUSABLE = ("Damaged", "Shredded", "Pruned")
DATA_JOB_TTL = 24 * 3600  # a data Job stays a day for its log, then the TTL controller removes it


def data_job_name(restore: str, claim: str) -> str:
    """``restore-<restore>-data-<hash of the claim>``, within a Job name's 63 characters."""
    digest = hashlib.sha256(f"{restore}/{claim}".encode()).hexdigest()[:8]
    head = restore_run.job_name(restore)[:63 - len("-data-") - 8].rstrip("-.")
    return f"{head}-data-{digest}"


def newest_point(points: list[dict], policy: str, until: str | None) -> dict | None:
    """The policy's newest usable point that completed at or before ``until`` (any time when None)."""
    usable = [p for p in points
              if (p.get("spec") or {}).get("policyName") == policy
              and ((p.get("status") or {}).get("phase") not in UNUSABLE)
              and (p.get("spec") or {}).get("completionTime")
              and (until is None or parse_time(p["spec"]["completionTime"]) <= parse_time(until))]
    return max(usable, key=lambda p: parse_time(p["spec"]["completionTime"]), default=None)


def claim_points(objects_point: dict, policies: list[dict],
                 points: list[dict]) -> list[tuple[dict, BackupPolicySpec, dict]]:
    """``(policy, spec, point)`` of every pvc policy that has a usable point finished at or before the
    objects point did, by policy name: the data a restore of ``objects_point`` gives its claims."""
    until = (objects_point.get("spec") or {}).get("completionTime")
    out = []
    for policy in sorted(policies, key=lambda p: p["metadata"]["name"]):
        try:
            spec = backup.parse_spec(policy)
        except ValueError:  # an invalid policy protects nothing a restore could use
            continue
        if room_of(spec).kind != "pvc":
            continue
        point = newest_point(points, policy["metadata"]["name"], until)
        if point is not None:
            out.append((policy, spec, point))
    return out


def claim_jobs(objects_point: dict, policies: list[dict], points: list[dict], facts: backup.Facts, *,
               namespace: str, name, labels: dict, annotations: dict, ttl: int | None = DATA_JOB_TTL,
               deadline: int | None = None) -> list[dict]:
    """The restore Job of every pvc policy's claim (:func:`claim_points`) into ``namespace``, named
    ``name(claim)``, with ``labels`` instead of the policy's (a restore Job is no backup Job of it)."""
    jobs = []
    for policy, spec, point in claim_points(objects_point, policies, points):
        claim = spec.source.pvc.claim_name
        try:
            job = restore_job.restore_job(
                point, policy, restore_job.RestoreTarget(claim_name=claim), namespace=namespace,
                name=name(claim), facts=facts,
                options=restore_job.Options(annotations=dict(annotations), ttl_seconds_after_finished=ttl,
                                            deadline_seconds=deadline))
        except backup.PlanError:  # no readable copy: the claim comes back without data, as status says
            continue
        for m in (job["metadata"], job["spec"]["template"]["metadata"]):
            m["labels"] = {k: v for k, v in m["labels"].items() if k != backup.LABEL_POLICY} | labels
        job["metadata"]["annotations"].pop(backup.ANN_POLICY, None)
        jobs.append(job)
    return jobs


def data_jobs(body: dict, objects_point: dict, policies: list[dict], points: list[dict],
              facts: backup.Facts) -> list[dict]:
    """The restore Job of every pvc policy's claim, into the target namespace (not yet made: the agent
    makes those whose claim it created)."""
    meta = body["metadata"]
    restore = meta["name"]
    return claim_jobs(objects_point, policies, points, facts, namespace=restore_run.target_namespace(body),
                      name=lambda claim: data_job_name(restore, claim), labels=restore_run.labels(restore),
                      annotations={LABEL_RESTORE: f"{meta.get('namespace', '')}/{restore}"})


def target(body: dict, objects_point: dict, policies: list[dict], points: list[dict],
           facts: backup.Facts) -> restore_job.ObjectsTarget:
    """How the Job of ``body`` (a Restore with target.objects) writes, and the data Jobs it may make."""
    spec = body["spec"]
    objects = spec["target"]["objects"]
    source_namespace = body["metadata"].get("namespace", "")
    secret = objects.get("kubeconfigSecret")
    jobs = data_jobs(body, objects_point, policies, points, facts) if objects.get("withData", True) else []
    return restore_job.ObjectsTarget(
        namespace_map=((source_namespace, restore_run.target_namespace(body)),),
        existing=str(objects.get("existing") or "Skip").lower(),
        writer=None if secret else objects_writer.writer_name(restore_run.job_name(body["metadata"]["name"])),
        kubeconfig=(secret["name"], secret.get("key") or "kubeconfig") if secret else None,
        data_jobs=tuple(json.dumps(j, sort_keys=True) for j in jobs))
