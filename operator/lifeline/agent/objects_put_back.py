"""An objects Restore's Job, after the point's tree is restored: the objects go back, claims with their data.

:func:`put_back` reads the tree (:mod:`.objects_restore`), maps the namespace, checks every object
with the server's dry run and writes them in order, with the credentials the plan names (the
writer account's in-cluster token, or another cluster's kubeconfig). After the claims' step, and
before any workload, :class:`ClaimData` makes the data Job the operator rendered for each claim
*this restore created* (a claim that was there already keeps what it holds) and waits for it:
a workload then starts on its data. A data Job that fails stops the steps after it, so no
application starts on an empty volume; the failure names the Job and the agent's reason.

Every object's outcome goes to the log (a table); the summary carries the counts, the failed ones
with the API server's words (cut to fit 4 KiB) and the claims given their data.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from lifeline.messages import RestoreTargetPlan

from . import objects_restore as objects
from .jobs import log

POLL_SECONDS = 2.0
JOB_GRACE = 120.0  # beyond a data Job's own deadline, for its controller to say it failed
LOG_LIMIT = 5000  # objects listed one per line in the log; beyond that, only the failed ones


@dataclass
class PutBack:
    outcomes: list[objects.Outcome]
    claims_with_data: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(o.outcome == "failed" for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.outcome] = out.get(o.outcome, 0) + 1
        return out


def _claim_of(job: dict) -> str | None:
    for volume in ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes") or []:
        if volume.get("name") == "target":
            return (volume.get("persistentVolumeClaim") or {}).get("claimName")
    return None


class ClaimData:
    """The after-step hook: data Jobs for the claims just created, one claim at a time."""

    def __init__(self, api: objects.Api, jobs: list[dict], *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.api, self.sleep, self.clock = api, sleep, clock
        self.jobs = {(j["metadata"]["namespace"], _claim_of(j)): j for j in jobs if _claim_of(j)}
        self.restored: list[str] = []

    def __call__(self, step: list[objects.Outcome]) -> str | None:
        for o in step:
            job = self.jobs.get((o.namespace, o.name)) if o.kind == "PersistentVolumeClaim" else None
            if job is None or o.outcome != "created":
                continue
            problem = self._run(job)
            if problem is not None:
                return f"the data of claim {o.namespace}/{o.name} was not restored: {problem}"
            self.restored.append(f"{o.namespace}/{o.name}")
        return None

    def _run(self, job: dict) -> str | None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        path = f"/apis/batch/v1/namespaces/{ns}/jobs"
        try:
            self.api.call("POST", path, job)
        except objects.Refused as exc:
            if exc.status != 409:  # 409: made by an earlier attempt of this Job; wait for that one
                return f"Job {name} could not be created: {exc.message}"
        log(f"restoring the data of claim {ns}/{_claim_of(job)} with Job {name}")
        deadline = self.clock() + float(job["spec"].get("activeDeadlineSeconds") or 6 * 3600) + JOB_GRACE
        while self.clock() < deadline:
            try:
                live = self.api.call("GET", f"{path}/{name}")
            except objects.Refused as exc:
                return f"Job {name} could not be read: {exc.message}"
            for cond in (live.get("status") or {}).get("conditions") or []:
                if cond.get("status") != "True":
                    continue
                if cond.get("type") == "Complete":
                    return None
                if cond.get("type") == "Failed":
                    return f"Job {name} failed: {self._reason(ns, name) or cond.get('message') or cond.get('reason')}"
            self.sleep(POLL_SECONDS)
        return f"Job {name} did not finish in time"

    def _reason(self, ns: str, name: str) -> str:
        """The data restore's own reason, from its agent's termination message (when Pods may be listed)."""
        try:
            pods = self.api.call("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{name}")
        except objects.Refused:
            return ""
        for pod in pods.get("items") or []:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                text = ((cs.get("state") or {}).get("terminated") or {}).get("message") or ""
                try:
                    said = json.loads(text)
                except ValueError:
                    continue
                if isinstance(said, dict) and said.get("error"):
                    return f"{said.get('reason') or 'RestoreFailed'}: {said['error']}"
        return ""


def left_alone(doc: objects.Document, served: objects.Served, other_cluster: bool) -> str | None:
    """Why a restore leaves a cluster-scoped object alone: a PersistentVolume always (it names the old
    site's storage; a claim binds anew and gets its data from its policy), and in this cluster every
    one (the writer's Role is the target namespace's: the cluster's objects are its admin's)."""
    if doc.group_kind == ("", "PersistentVolume"):
        return "a PersistentVolume names the storage it was made on: the claim binds a new one"
    if not served.namespaced and not other_cluster:
        return ("cluster-scoped: a namespace's restore leaves it to the cluster's admin "
                "(lifeline agent objects-restore, with their credentials)")
    return None


def put_back(target: RestoreTargetPlan, *, connect=objects.connect) -> PutBack:
    """Put the tree under ``target.path`` back through the API server the plan names."""
    docs = objects.prepared(objects.read_tree(Path(target.path)), dict(target.namespace_map or {}))
    api = connect(target.kubeconfig)
    data = ClaimData(api, list(target.data_jobs or []))
    log(f"putting back {len(docs)} objects (existing: {target.existing}"
        + (f", {len(data.jobs)} claims may get their data" if data.jobs else "") + ")")
    outcomes = objects.restore_objects(docs, api, existing=target.existing or "skip", after_step=data,
                                       leave=lambda doc, served: left_alone(doc, served, bool(target.kubeconfig)))
    shown = outcomes if len(outcomes) <= LOG_LIMIT else [o for o in outcomes if o.outcome == "failed"]
    print(objects.outcome_table(shown), flush=True)
    return PutBack(outcomes, data.restored)


__all__ = ["ClaimData", "PutBack", "put_back"]
