"""Finished backup, prune and maintenance Jobs, recorded once: RecoveryPoints, Events, metrics and audit records.

A finished Job's pod carries the agent's summary in its termination message. A backup that
stored its data somewhere becomes a RecoveryPoint; a prune marks the points it forgot Pruned; a
maintenance (repack) says how large each repository was before and after (status.lastMaintenance).
Either way the outcome is written on the Job (``dr.lifeline.io/recorded`` /
``dr.lifeline.io/result``), so that the policy's status can be planned from the Jobs alone, after
an operator restart too, and no Job is recorded twice. (A snapshot trigger Job is recorded by
its pipeline, :mod:`lifeline.controllers.backup_snapshots`.)
"""
from __future__ import annotations

import logging

from lifeline.api import RECOVERY_POINT as POINT
from lifeline.clock import parse_time, rfc3339
from lifeline.controllers.backup_audit import audit_backup
from lifeline.kube import JOBS, PODS, KubeError, ObjectRef
from lifeline.messages import BackupSummary, MaintenanceSummary, PruneReport
from lifeline.planning import backup, backup_points

log = logging.getLogger(__name__)


class BackupRuns:
    """Records the finished Jobs of one BackupPolicy controller's policies (read through its stores)."""

    def __init__(self, controller):
        self.ctl = controller
        self.ctx = controller.ctx
        self.kube = controller.kube
        self._recording: set[str] = set()
        # uids of Jobs recorded by this process, oldest first, with what was recorded (the annotations'
        # values) until the watch brings the Job back with them
        self._recorded: dict[str, tuple[str, dict] | None] = {}

    def recorded_here(self, uid: str) -> bool:
        """Whether this process has recorded the Job: the snapshot pipeline cleans up after a data mover
        as soon as it is recorded, before the watch brings the Job back with its annotations."""
        return uid in self._recorded

    def written_on(self, uid: str) -> tuple[str, dict] | None:
        """What this process wrote on the Job's recorded and result annotations (None: nothing, or its
        policy was gone): the snapshot pipeline copies them to the trigger Job before the watch has them."""
        return self._recorded.get(uid)

    async def record(self, job: dict) -> None:
        """Turn a finished Job into its RecoveryPoint, Events and metrics, once."""
        if job["phase"] == "Running" or job.get("recorded") or job["uid"] in self._recording \
                or job["uid"] in self._recorded or job["operation"] == "trigger":
            return  # (a snapshot trigger is recorded by its pipeline)
        self._recording.add(job["uid"])
        try:
            # until the watch brings the Job back with its annotation, remember it here
            self._recorded[job["uid"]] = await self._record(job)
            if len(self._recorded) > 10000:
                self._recorded.pop(next(iter(self._recorded)))
        except KubeError as exc:
            log.warning("recording Job %s/%s: %s (retried on the next event or tick)",
                        job["namespace"], job["name"], exc)
        finally:
            self._recording.discard(job["uid"])

    async def _pods(self, job: dict) -> list[dict]:
        for label in backup_points.JOB_UID_LABELS:
            pods = await self.kube.list(PODS, job["namespace"], f"{label}={job['uid']}")
            if pods:
                return pods
        return []

    async def _record(self, job: dict) -> tuple[str, dict] | None:
        """Record a finished Job; what its annotations now say (None: its policy is gone)."""
        namespace, policy = job["namespace"], job["policy"]
        body = self.ctl.policy(namespace, policy)
        if body is None:
            return None  # the policy is gone; its Jobs go with it
        prune = job["operation"] == "prune"
        maintenance = job["operation"] == "maintenance"
        summary, report, problem = backup_points.pod_report(
            await self._pods(job), PruneReport if prune else MaintenanceSummary if maintenance else BackupSummary)
        now = rfc3339(self.ctx.clock.now())
        ref = ObjectRef.of(body)
        tier = str(body["spec"].get("tier", ""))
        labels = (namespace, policy, tier)
        m = self.ctx.metrics
        point = None
        if prune:
            await self._record_prune(job, body, summary, report, now)
        elif maintenance:
            await self._record_maintenance(job, body, summary, report, now)
        elif job["phase"] == "Succeeded" and summary is not None and summary.copies:
            point = await self._create_point(job, body, summary)
            for c in summary.copies:
                m.backup_last_success.labels(*labels, c.destination).set(parse_time(c.end).timestamp())
                if c.seconds is not None:
                    m.backup_duration.labels(*labels, c.destination, c.type).observe(c.seconds)
                m.backup_bytes.labels(*labels, c.destination).inc(c.stored_bytes)
            m.backup_source_bytes.labels(*labels).inc(summary.size_bytes)
            stored = ", ".join(c.destination for c in summary.copies)
            audit_backup(job, body, "succeeded", point, summary, self.ctx.clock.now())
            await self.kube.emit_event(ref, "Normal", "BackupSucceeded",
                                       f"{summary.copies[0].type} backup recorded as RecoveryPoint {point}, stored "
                                       f"at {stored} ({summary.size_bytes} bytes read)", now)
            for f in summary.failures:
                m.backup_failures.labels(*labels, f.destination, "DestinationFailed").inc()
                await self.kube.emit_event(ref, "Warning", "DestinationFailed",
                                           f"backup {point} could not be stored at {f.destination}: {f.error}; "
                                           f"it is stored at {stored}", now)
        else:
            failed = summary.failures if summary is not None else []
            for f in failed:
                m.backup_failures.labels(*labels, f.destination, "BackupFailed").inc()
            if not failed:
                m.backup_failures.labels(*labels, "", job.get("reason") or "BackupFailed").inc()
            why = (summary.error if summary is not None else None) or problem or \
                "; ".join(f"{f.destination}: {f.error}" for f in failed) or \
                job.get("failMessage") or ("the Job succeeded but left no summary" if job["phase"] == "Succeeded"
                                           else "")
            audit_backup(job, body, "failed", None, summary, self.ctx.clock.now(), why)
            said = f"{job.get('type') or ''} backup Job {job['name']} failed: {why} ({report})".replace("  ", " ")
            await self.kube.emit_event(ref, "Warning", "BackupFailed", said, now)
            self.ctx.notifier.tell(body, "BackupFailed", said, now)
        record = backup_points.result_of(job, summary, report, point, problem)
        if job["phase"] == "Succeeded" and job["operation"] == "backup" and not point:
            record.outcome = "Failed"
        await self.kube.patch(JOBS, namespace, job["name"], {"metadata": {"annotations": {
            backup.ANN_RECORDED: point or record.outcome, backup.ANN_RESULT: record.to_annotation()}}})
        return point or record.outcome, record.to_wire()

    async def _create_point(self, job: dict, body: dict, summary: BackupSummary) -> str:
        namespace, policy = job["namespace"], job["policy"]
        points = self.ctl.stores.of_policy("backup_points", (namespace, policy))
        mine = [p for p in points if p.get("jobUid") == job["uid"]]
        if mine:
            return mine[0]["name"]
        first = summary.copies[0]
        parent = next((p["name"] for p in points if first.parent_id and (first.destination, first.parent_id) in
                       [tuple(c) for c in p["copies"]]), None)
        retain = (body.get("spec") or {}).get("deletionPolicy", "Retain") not in ("Delete", "Shred")
        taken = {p["name"] for p in points}
        start = parse_time(summary.start or first.start)
        for _ in range(3):
            name = backup_points.point_name(policy, start, taken, first.type)
            rp = backup_points.recovery_point(body, job, summary, name, parent, retain)
            try:
                await self.kube.create(POINT, namespace, rp)
                return name
            except KubeError as exc:
                if exc.status != 409:
                    raise
                found = await self.kube.get(POINT, namespace, name, missing_ok=True)
                if ((found or {}).get("metadata", {}).get("annotations") or {}).get(
                        backup_points.ANN_JOB_UID) == job["uid"]:
                    return name
                taken.add(name)
        raise KubeError(f"no free RecoveryPoint name for Job {job['name']}", 409)

    async def _record_maintenance(self, job: dict, body: dict, summary: MaintenanceSummary | None, report: str,
                                  now: str) -> None:
        """A repack: the repositories' sizes as metrics, a Normal Event, or a Warning saying where it failed."""
        ref = ObjectRef.of(body)
        namespace, policy = job["namespace"], job["policy"]
        labels = (namespace, policy, str(body["spec"].get("tier", "")))
        m = self.ctx.metrics
        done = summary.repacked if summary is not None else []
        end = parse_time(job.get("completion")) or self.ctx.clock.now()
        for r in done:
            m.repository_bytes.labels(*labels, r.destination).set(r.bytes_after)
            m.maintenance_freed_bytes.labels(*labels, r.destination).inc(max(0, r.bytes_before - r.bytes_after))
            if not r.damaged:
                m.maintenance_last_success.labels(*labels, r.destination).set(end.timestamp())
        failed = summary.failures if summary is not None else []
        if summary is None or failed or job["phase"] != "Succeeded":
            why = "; ".join(f"{f.destination}: {f.error}" for f in failed) or \
                (summary.error if summary is not None else None) or report
            for destination in [f.destination for f in failed] or [""]:
                m.backup_failures.labels(*labels, destination, "MaintenanceFailed").inc()
            await self.kube.emit_event(ref, "Warning", "MaintenanceFailed",
                                       f"maintenance Job {job['name']}: {why}", now)
        elif done:
            sizes = "; ".join(f"{r.destination}: {r.bytes_before} -> {r.bytes_after} bytes" for r in done)
            await self.kube.emit_event(ref, "Normal", "Repacked",
                                       f"maintenance Job {job['name']} repacked {sizes}", now)

    async def _record_prune(self, job: dict, body: dict, summary: PruneReport | None, report: str,
                            now: str) -> None:
        ref = ObjectRef.of(body)
        namespace, policy = job["namespace"], job["policy"]
        failed = summary.failures if summary is not None else []
        if summary is None or failed or job["phase"] != "Succeeded":
            why = "; ".join(f"{f.destination}: {f.error}" for f in failed) or report
            tier = str(body["spec"].get("tier", ""))
            for destination in [f.destination for f in failed] or [""]:
                self.ctx.metrics.backup_failures.labels(namespace, policy, tier, destination, "PruneFailed").inc()
            await self.kube.emit_event(ref, "Warning", "PruneFailed", f"prune Job {job['name']}: {why}", now)
        if summary is not None:
            points = self.ctl.stores.of_policy("backup_points", (namespace, policy))
            for name in backup_points.pruned_points(points, summary.forgotten):
                await self.ctl.point_status.reconcile(namespace, name, pruned=True)
