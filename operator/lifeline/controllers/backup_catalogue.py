"""Adoption: a policy's points made RecoveryPoints again from what its destinations hold.

The planner is :mod:`lifeline.planning.catalogue`. Here: a new value of the policy's
``dr.lifeline.io/adopt-points`` annotation starts one catalogue Job (named by the value, so it
starts at most once); when it has finished, the points its log lists that no RecoveryPoint records
are created, the Job is marked recorded (``dr.lifeline.io/recorded``) so that is done once, and an
Event and an audit record say how many were adopted. A log that lists fewer points than the
agent's summary counted (cut, rotated) adopts nothing: the request can be made again.
"""
from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from lifeline.api import RECOVERY_POINT as POINT
from lifeline.clock import rfc3339
from lifeline.kube import JOBS, PODS, KubeError, ObjectRef
from lifeline.labels import ANN_ADOPT_POINTS, ANN_POLICY, ANN_RECORDED
from lifeline.messages import CatalogueSummary
from lifeline.observability import audit
from lifeline.planning import backup, backup_points, catalogue

log = logging.getLogger(__name__)
OPERATOR = "lifeline-operator"
RETRY_SECONDS = 10


class PointAdoption:
    """One BackupPolicy controller's adoption requests and catalogue Jobs."""

    def __init__(self, controller):
        self.ctl = controller
        self.ctx = controller.ctx
        self.kube = controller.kube
        self._started: set[tuple[str, str, str]] = set()  # (namespace, policy, request) handled here
        self._recording: set[str] = set()

    async def requested(self, body: dict) -> None:
        """Start the catalogue Job of a new ``adopt-points`` request (once per value)."""
        request = catalogue.request_of(body)
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"], request or "")
        if not request or key in self._started:
            return
        self._started.add(key)
        now = rfc3339(self.ctx.clock.now())
        try:
            job = catalogue.job(body, self.ctl.facts, request)
            await self.kube.create(JOBS, key[0], job)
        except (backup.PlanError, ValidationError) as exc:
            said = exc.message if isinstance(exc, backup.PlanError) else exc.errors()[0]["msg"]
            await self.kube.emit_event(ObjectRef.of(body), "Warning", "AdoptionFailed",
                                       f"{ANN_ADOPT_POINTS}={request}: {said}", now)
            return
        except KubeError as exc:
            if exc.status == 409:  # started before (by this process before a restart, or another replica)
                return
            self._started.discard(key)
            raise
        await self.kube.emit_event(ObjectRef.of(body), "Normal", "AdoptionStarted",
                                   f"Job {job['metadata']['name']} lists the points of this policy's destinations "
                                   f"({ANN_ADOPT_POINTS}={request})", now)

    async def finished(self, job: dict) -> None:
        """A catalogue Job that ended: adopt what it listed, once."""
        meta = job.get("metadata") or {}
        ann = meta.get("annotations") or {}
        uid, namespace = meta.get("uid", ""), meta.get("namespace", "")
        end = backup_points.job_fact(job)["phase"]
        if end == "Running" or ann.get(ANN_RECORDED) or uid in self._recording:
            return
        policy = self.ctl.policy(namespace, ann.get(ANN_POLICY, ""))
        if policy is None:
            return  # the policy is gone; its Job goes with it
        self._recording.add(uid)
        try:
            said, adopted = await self._adopt(policy, job)
            await self.kube.patch(JOBS, namespace, meta["name"], {"metadata": {"annotations": {ANN_RECORDED: said}}})
        except KubeError as exc:  # the Job sends no more events: try again after a while
            log.warning("adopting the points of %s/%s: %s (retried in %ss)", namespace, policy["metadata"]["name"],
                        exc, RETRY_SECONDS)
            asyncio.get_running_loop().call_later(RETRY_SECONDS, lambda: asyncio.ensure_future(self.finished(job)))
            return
        finally:
            self._recording.discard(uid)
        now = rfc3339(self.ctx.clock.now())
        pmeta = policy["metadata"]
        audit.record("adoption", actor=OPERATOR, outcome="succeeded" if adopted is not None else "failed",
                     subject={"kind": "BackupPolicy", "namespace": namespace, "name": pmeta["name"],
                              "uid": pmeta.get("uid", "")},
                     details={"job": meta["name"], "request": ann.get(ANN_ADOPT_POINTS), "points": adopted or [],
                              "message": said})
        await self.kube.emit_event(ObjectRef.of(policy), "Normal" if adopted is not None else "Warning",
                                   "PointsAdopted" if adopted is not None else "AdoptionFailed", said, now)

    async def _adopt(self, policy: dict, job: dict) -> tuple[str, list[str] | None]:
        """The sentence to record, and the points made (None: nothing could be adopted)."""
        meta = job["metadata"]
        namespace = meta["namespace"]
        pods = await self.kube.list(PODS, namespace, f"job-name={meta['name']}")
        summary, report, _ = backup_points.pod_report(pods, CatalogueSummary)
        if summary is None or summary.error:
            return f"Job {meta['name']}: the destinations could not be listed: {summary.error if summary else report}", None
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        rows = catalogue.listed(await self.kube.pod_log(namespace, pod["metadata"]["name"], backup.AGENT))
        counted = sum(summary.listed.values())
        if len(rows) != counted:
            return (f"Job {meta['name']} counted {counted} points but its log lists {len(rows)} (cut or rotated): "
                    f"nothing adopted; ask again with a new {ANN_ADOPT_POINTS} value"), None
        existing = [(f["name"], [sid for _, sid in f["copies"]])
                    for f in self.ctl.stores.of_policy("backup_points", (namespace, policy["metadata"]["name"]))]
        made = []
        for point in catalogue.adopt(policy, rows, existing):
            try:
                await self.kube.create(POINT, namespace, point)
            except KubeError as exc:
                if exc.status != 409:  # 409: made by an earlier attempt of this Job's record
                    raise
                continue
            made.append(point["metadata"]["name"])
        failed = "; ".join(f"{f.destination}: {f.error}" for f in summary.failures)
        listed = ", ".join(f"{n} in {d}" for d, n in sorted(summary.listed.items())) or "none"
        return (f"adopted {len(made)} points from the destinations (listed: {listed})"
                + (f"; not listed: {failed}" if failed else "")), made
