"""Deletion that shreds: a RecoveryPoint of a ``deletionPolicy: Shred`` policy goes only after its key is destroyed.

While the point lives, it carries the finalizer ``dr.lifeline.io/shred`` (added and removed
as its policy's deletionPolicy says). When it is deleted, this controller waits until a second
person approved the shred (:mod:`lifeline.planning.shred_approval`), and until no
other live point shares its key epoch, runs a shred Job (``lifeline keys shred`` for every
copy, with the destinations' credentials), and removes the finalizer only when every copy
was shredded: an Event and an audit record (``key-shred``) either way. A failed shred keeps
the object, posts a Warning Event and tries again with a growing delay (timer).

Status stays with the BackupPolicy controller (one writer per status:
:mod:`lifeline.controllers.recoverypoint_status`): this one writes metadata only (finalizer,
annotations), with the resourceVersion it read, so a concurrent write is a 409 and the next
event tries again.
"""
from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict

import kopf

from lifeline.api import BACKUP_POLICY as POLICY, RECOVERY_POINT as POINT
from lifeline.clock import rfc3339
from lifeline.controllers.common import job_end, stop_ticker, vault_env
from lifeline.kube import JOBS, PODS, KubeError, ObjectRef
from lifeline.messages import ShredSummary, read_summary
from lifeline.observability import audit
from lifeline.planning import backup_points, shred_approval
from lifeline.planning import recoverypoint_shred as shred
from lifeline.webhooks.seal_key import seal_key

log = logging.getLogger(__name__)

OWNS: tuple[str, ...] = ()  # RecoveryPoint status is the BackupPolicy controller's (recoverypoint_status)


def _key(body) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _deleting(point: dict) -> bool:
    meta = point.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and shred.FINALIZER in (meta.get("finalizers") or [])


def _job_phase(job: dict) -> str:
    return {"Complete": "Succeeded", "Failed": "Failed"}.get(job_end(job), "Running")


class ShredController:
    def __init__(self, ctx):
        self.ctx = ctx
        self.kube = ctx.kube
        self.facts = shred.ShredFacts(ctx.options.agent_image, vault_env=vault_env())
        self.points: dict[tuple[str, str], dict] = {}
        self.jobs: dict[tuple[str, str], dict] = {}
        self.locks: dict[tuple, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.handled: set[str] = set()  # uids of shred Jobs whose outcome was acted on
        self.waiting: dict[tuple[str, str], tuple] = {}  # the blockers last reported per point
        self.ticker: asyncio.Task | None = None

    # ---- while the point lives: the finalizer follows the policy --------------------------------

    async def follow_policy(self, point: dict, policy: dict | None = None) -> None:
        namespace = point["metadata"]["namespace"]
        policy_name = (point.get("spec") or {}).get("policyName")
        if not policy_name:
            return
        if policy is None:
            policy = await self.kube.get(POLICY, namespace, policy_name, missing_ok=True)
        patch = shred.finalizer_patch(point, policy)
        if patch is None:
            return
        try:
            await self.kube.patch(POINT, namespace, point["metadata"]["name"], {"metadata": patch})
        except KubeError as exc:
            if exc.status not in (404, 409):  # gone, or changed meanwhile: the next event decides again
                log.warning("RecoveryPoint %s/%s: %s", namespace, point["metadata"]["name"], exc)

    # ---- when it is deleted: shred, then let it go -----------------------------------------------

    async def advance(self, namespace: str, name: str) -> None:
        async with self.locks[(namespace, name)]:
            point = self.points.get((namespace, name))
            if point is None or not _deleting(point):
                return
            attempt = shred.attempt_of(point)
            job = self.jobs.get((namespace, shred.job_name(name, attempt)))
            if job is None:
                await self._start(point, attempt)
            elif _job_phase(job) != "Running" and job["metadata"].get("uid") not in self.handled:
                await self._finish(point, job, attempt)

    async def _start(self, point: dict, attempt: int) -> None:
        namespace, name = _key(point)
        now = self.ctx.clock.now()
        ann = point["metadata"].get("annotations") or {}
        if ann.get(shred.ANN_RETRY_AFTER) and rfc3339(now) < ann[shred.ANN_RETRY_AFTER]:
            return  # the timer comes back
        # a fresh list, not the watch cache: a sibling not seen yet must still hold the shred back
        ref = ObjectRef.of(point)
        key = seal_key(self.ctx.options)
        if shred_approval.approved_by(point, key) is None:
            why = shred_approval.waiting(point)
            if self.waiting.get((namespace, name)) != (why,):  # once per state, not per event
                self.waiting[(namespace, name)] = (why,)
                await self.kube.emit_event(ref, "Normal", "ShredAwaitingApproval", f"not shredded yet: {why}",
                                           rfc3339(now))
            return
        points = await self.kube.list(POINT, namespace)
        blocked = shred.blockers(point, points)
        if blocked:
            if self.waiting.get((namespace, name)) != tuple(blocked):
                self.waiting[(namespace, name)] = tuple(blocked)
                await self.kube.emit_event(
                    ref, "Normal", "ShredWaiting",
                    f"not shredded yet: its key epoch (a full backup and the points on it) also protects "
                    f"{', '.join(blocked)}; the key is destroyed once those are deleted too", rfc3339(now))
            return
        self.waiting.pop((namespace, name), None)
        if shred.ahead(point, points):
            return  # its turn comes when those are gone (their deletion wakes the others)
        try:
            job = shred.shred_job(point, self.facts, attempt)
        except ValueError as exc:
            await self.kube.emit_event(ref, "Warning", "ShredFailed", f"cannot shred: {exc}", rfc3339(now))
            return
        try:
            await self.kube.create(JOBS, namespace, job)
        except KubeError as exc:
            if exc.status == 409:
                return  # already started (the watch brings it)
            await self.kube.emit_event(ref, "Warning", "ShredFailed",
                                       f"could not start shred Job {job['metadata']['name']}: {exc}", rfc3339(now))
            return
        await self.kube.emit_event(ref, "Normal", "Shredding",
                                   f"shred Job {job['metadata']['name']} destroys the key epoch of this point's "
                                   f"{len((point.get('spec') or {}).get('copies') or [])} cop(ies)", rfc3339(now))

    async def _finish(self, point: dict, job: dict, attempt: int) -> None:
        namespace, name = _key(point)
        uid = job["metadata"].get("uid")
        now = self.ctx.clock.now()
        pods = []
        for label in backup_points.JOB_UID_LABELS:
            pods = await self.kube.list(PODS, namespace, f"{label}={uid}")
            if pods:
                break
        summary, report, problem = self._report(pods)
        ok, message, epochs = shred.outcome(summary, report, problem)
        ref = ObjectRef.of(point)
        reviewed = shred_approval.approved_by(point, seal_key(self.ctx.options)) or ("", "")
        plan = shred.plan_of(job)
        shredder = plan.actor if plan is not None else None  # the Job's own identity, from its plan
        actor = reviewed[0] or shredder or "lifeline-operator"
        subject = {"kind": "RecoveryPoint", "namespace": namespace, "name": name,
                   "uid": point["metadata"].get("uid", "")}
        details = {"policy": (point.get("spec") or {}).get("policyName"), "job": job["metadata"]["name"],
                   "attempt": attempt, "epochs": epochs, "result": message, "requestedBy": reviewed[0],
                   "approvedBy": reviewed[1], "shredder": shredder}
        if ok:
            audit.record("key-shred", actor=actor, outcome="succeeded", subject=subject, details=details)
            await self.kube.emit_event(ref, "Normal", "Shredded", f"key destroyed, the point is unreadable for "
                                       f"good: {message}", rfc3339(now))
            try:
                await self.kube.patch(POINT, namespace, name, {"metadata": shred.release_patch(point)})
            except KubeError as exc:
                if exc.status not in (404, 409):
                    log.warning("RecoveryPoint %s/%s: %s", namespace, name, exc)
                return  # 409: the next event finds the Job done again and retries the release
            self.handled.add(uid)
            return
        audit.record("key-shred", actor=actor, outcome="failed", subject=subject, details=details)
        after = shred.retry_after(now, attempt)
        try:
            await self.kube.patch(POINT, namespace, name, {"metadata": {
                "resourceVersion": point["metadata"].get("resourceVersion"),
                "annotations": {shred.ANN_ATTEMPT: str(attempt + 1), shred.ANN_RETRY_AFTER: rfc3339(after)}}})
        except KubeError as exc:
            if exc.status not in (404, 409):
                log.warning("RecoveryPoint %s/%s: %s", namespace, name, exc)
            return
        self.handled.add(uid)
        await self.kube.emit_event(ref, "Warning", "ShredFailed",
                                   f"shred Job {job['metadata']['name']} failed, the point stays until its key is "
                                   f"destroyed; retrying after {rfc3339(after)}: {message}", rfc3339(now))

    @staticmethod
    def _report(pods: list[dict]) -> tuple[ShredSummary | None, str, str | None]:
        """The newest pod's shred summary, how its container ended, and why the summary is unusable (if so)."""
        ended = [(p, backup_points.terminated(p)) for p in pods]
        ended = [(p, t) for p, t in ended if t]
        if not ended:
            return None, "no pod of the Job reported a finished container", None
        _pod, state = max(ended, key=lambda pt: pt[1].get("finishedAt") or "")
        summary, problem = read_summary(state.get("message"), ShredSummary)
        report = f"exited {state.get('exitCode')}"
        if summary is None and problem is None and state.get("message"):
            report += "; last output: " + state["message"].strip().replace("\n", " ")[-300:]
        return summary, report, problem

    # ---- the timer: retries after their delay ---------------------------------------------------

    async def tick_forever(self) -> None:
        interval = max(0.05, float(self.ctx.options.rpo_check_interval))
        while True:
            await asyncio.sleep(interval)
            for (namespace, name), point in list(self.points.items()):
                if _deleting(point):
                    try:
                        await self.advance(namespace, name)
                    except Exception:  # noqa: BLE001 - the timer must survive one bad round
                        log.exception("shred of RecoveryPoint %s/%s", namespace, name)


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    controller = ShredController(ctx)

    @kopf.on.startup(registry=registry, id="shred-start")
    async def start(**_):
        controller.ticker = asyncio.create_task(controller.tick_forever(), name="lifeline-shred-timer")

    @kopf.on.cleanup(registry=registry, id="shred-timer-stop")
    async def stop(**_):
        await stop_ticker(controller.ticker)

    @kopf.on.event(POINT.group, POINT.version, POINT.plural, registry=registry, id="shred-recoverypoint")
    async def on_point(event, body, **_):
        key = _key(body)
        if event.get("type") == "DELETED":
            controller.points.pop(key, None)
            controller.waiting.pop(key, None)
            policy = (body.get("spec") or {}).get("policyName")
            for other, waiting in list(controller.points.items()):  # the next shred of its epoch may start
                if other[0] == key[0] and (waiting.get("spec") or {}).get("policyName") == policy \
                        and _deleting(waiting):
                    await controller.advance(*other)
            return
        point = copy.deepcopy(dict(body))
        controller.points[key] = point
        if (point.get("metadata") or {}).get("deletionTimestamp"):
            await controller.advance(*key)
        else:
            await controller.follow_policy(point)

    @kopf.on.event(POLICY.group, POLICY.version, POLICY.plural, registry=registry, id="shred-policy")
    async def on_policy(event, body, namespace, name, **_):
        if event.get("type") == "DELETED" or (body.get("metadata") or {}).get("deletionTimestamp"):
            return  # points keep their finalizer and the snapshot of what a shred needs
        policy = copy.deepcopy(dict(body))
        for (ns, _n), point in list(controller.points.items()):
            if ns == namespace and (point.get("spec") or {}).get("policyName") == name:
                await controller.follow_policy(point, policy)

    @kopf.on.event("batch", "v1", "jobs", labels={shred.LABEL_FOR: kopf.PRESENT}, registry=registry,
                   id="shred-job")
    async def on_job(event, body, **_):
        namespace, name = _key(body)
        if event.get("type") == "DELETED":
            controller.jobs.pop((namespace, name), None)
            return
        controller.jobs[(namespace, name)] = copy.deepcopy(dict(body))
        point = ((body.get("metadata") or {}).get("annotations") or {}).get(shred.ANN_POINT)
        if point and _job_phase(body) != "Running":
            await controller.advance(namespace, point)
