"""RestoreDrill: start runs when due, follow their Jobs, record the measurements, clean sandboxes up.

Thin and level-triggered: a timer (``LIFELINE_DRILL_INTERVAL`` s, default 5), every watch event of a drill
and the end of each sandbox Job end in :func:`reconcile`, which decides with the planners (``drill_schedule``,
``drill_points``, ``drill_sandbox``, ``drill_measure``) and writes the status only when it changed. A run's
state lives in ``status.lastRun`` (Restoring -> [Starting ->] Verifying -> Done): a restart resumes it. Deletions
only in namespaces labelled ``dr.lifeline.io/sandbox=true``; outside the sandbox only the drill's status and Events.
A drill of a resources policy starts the restored application in the sandbox (Starting) before it is verified:
:mod:`.drill_application`. What a finished run leaves (Event, metrics, audit record): :mod:`.drill_records`.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import random

import kopf

from lifeline.api import BACKUP_POLICY as POLICY, RECOVERY_POINT as POINT, RESTORE_DRILL as DRILL
from lifeline.api.restoredrill import RestoreDrillSpec
from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.common import parse_duration
from lifeline.api.validation import problems_in_spec
from lifeline.clock import rfc3339
from lifeline.controllers.common import job_end, stop_ticker, vault_env
from lifeline.controllers import drill_records
from lifeline.controllers.drill_application import ApplicationDrills, create_in_sandbox
from lifeline.kube import (JOBS, LIMITRANGES, NAMESPACES, NETWORKPOLICIES, PERSISTENTVOLUMECLAIMS, PERSISTENTVOLUMES,
                           PODS, RESOURCEQUOTAS, ROLEBINDINGS, ROLES, SECRETS, SERVICEACCOUNTS, SERVICES, KubeError,
                           ObjectRef)
from lifeline.labels import ANN_RUN_NOW, LABEL_JOB_NAME
from lifeline.messages import RestoreSummary, VerifyReport, read_summary
from lifeline.observability import audit
from lifeline.planning import backup, conditions, drill_measure, drill_points, drill_sandbox, drill_schedule
from lifeline.clock import parse_time

log = logging.getLogger(__name__)

OWNS = ("RestoreDrill",)
ACTOR = "lifeline-operator"
RNG = random.SystemRandom()  # tests replace it with a seeded random.Random
def sandbox_role() -> str:
    """The ClusterRole bound inside each sandbox: the right to delete it, and nothing else (the chart's
    <release>-operator-sandbox, never bound cluster-wide)."""
    return os.environ.get("LIFELINE_SANDBOX_ROLE") or "lifeline-operator-sandbox"


# What a sandbox is made of (lifeline.planning.drill_sandbox), by kind.
SANDBOX_KINDS = {r.kind: r for r in (NAMESPACES, RESOURCEQUOTAS, NETWORKPOLICIES, SECRETS, PERSISTENTVOLUMECLAIMS,
                                     PODS, SERVICES, JOBS, PERSISTENTVOLUMES, LIMITRANGES, SERVICEACCOUNTS, ROLES,
                                     ROLEBINDINGS)}


class Stop(Exception):
    """The drill cannot go on: ``reason``/``message`` end up in Ready=False and an Event."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _kept(run: dict) -> RestoreSummary:
    """The restore's measurements, kept on the run when its Job ended (its seconds include the check)."""
    return RestoreSummary(ok=True, restore_seconds=run.get("restoreSeconds"), bytes_restored=run.get("bytesRestored"))


def _job_failure(job: dict) -> str:
    c = next((c for c in (job.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"), {})
    return f"the Job failed: {c.get('reason', '')} {c.get('message', '')}".strip()


class DrillController:
    def __init__(self, ctx):
        self.ctx = ctx
        self.kube = ctx.kube
        self.facts = backup.Facts(ctx.options.agent_image, vault_env=vault_env())
        self.apps = ApplicationDrills(self.kube, self.facts)  # drills of resources policies
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.known: set[tuple[str, str]] = set()  # drills seen by the watch: what the timer walks
        self.ticker: asyncio.Task | None = None

    async def tick_forever(self, interval: float) -> None:
        """The timer: one task of our own, so shutdown cancels it at once (a kopf timer per drill lingers)."""
        while True:
            await asyncio.sleep(interval)
            for namespace, name in sorted(self.known):
                try:
                    await self.reconcile({"metadata": {"namespace": namespace, "name": name}})
                except Exception:  # noqa: BLE001 - the timer must survive one bad round
                    log.exception("RestoreDrill %s/%s: timer round failed", namespace, name)

    # ---- reading ------------------------------------------------------------------------------------

    async def _policy(self, namespace: str, name: str) -> dict:
        try:
            return await self.kube.get(POLICY, namespace, name)
        except KubeError as exc:
            if exc.status == 404:
                raise Stop("PolicyNotFound", f"BackupPolicy {namespace}/{name} does not exist; "
                                             "fix spec.policyName or create the policy") from None
            raise Stop("LookupFailed", str(exc)) from None

    async def _message(self, sandbox: str, job: str, container: str) -> str | None:
        pods = await self.kube.list(PODS, sandbox, label_selector=f"{LABEL_JOB_NAME}={job}")
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        for pod in reversed(pods):
            for st in (pod.get("status") or {}).get("containerStatuses") or []:
                if st.get("name") == container and (st.get("state") or {}).get("terminated"):
                    return st["state"]["terminated"].get("message")
        return None

    # ---- the run ------------------------------------------------------------------------------------

    async def _create_all(self, objects: list[dict]) -> None:
        for obj in objects:
            res = SANDBOX_KINDS[obj["kind"]]
            try:
                if obj["kind"] == "Namespace":
                    await self.kube.create_sandbox_namespace(obj, sandbox_role())
                elif obj["kind"] == "PersistentVolume":
                    await self.kube.create(res, None, obj)
                else:
                    await create_in_sandbox(self.kube, res, obj["metadata"]["namespace"], obj)
            except KubeError as exc:
                if exc.status != 409:  # already there: a resumed start
                    raise

    async def _repository_volumes(self, namespace: str, claims) -> dict[str, dict]:
        """The PersistentVolume each repository claim of the drill's own namespace is bound to."""
        out = {}
        for claim in claims:
            pvc = await self.kube.get(PERSISTENTVOLUMECLAIMS, namespace, claim, missing_ok=True)
            volume = ((pvc or {}).get("spec") or {}).get("volumeName")
            if volume and ((pvc.get("status") or {}).get("phase") == "Bound"):
                pv = await self.kube.get(PERSISTENTVOLUMES, None, volume, missing_ok=True)
                claim_ref = ((pv or {}).get("spec") or {}).get("claimRef") or {}
                if pv and (claim_ref.get("namespace"), claim_ref.get("name")) == (namespace, claim):
                    out[claim] = pv  # only a volume really bound to this namespace's claim is mirrored
        return out

    async def _start(self, body: dict, spec: RestoreDrillSpec, policy: dict, trigger: str) -> dict:
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        now = self.ctx.clock.now()
        run = drill_sandbox.run_name(name, now)
        points = await self.kube.list(POINT, ns)
        run_record = {"name": run, "startTime": rfc3339(now), "outcome": "Running", "trigger": trigger}
        try:
            point = drill_points.select_point(points, spec.point, spec.policy_name, now, RNG)
            run_record["recoveryPoint"] = point["metadata"]["name"]
            pspec = backup.parse_spec(policy)
            taken = parse_time(point["spec"].get("completionTime"))
            if taken is not None:  # the age of the data this restore brings back, against the RPO
                age = max(0.0, (now - taken).total_seconds())
                run_record.update(pointAgeSeconds=round(age, 3), rpoSeconds=pspec.rpo_seconds,
                                  rpoMet=age <= pspec.rpo_seconds)
            copy_ = drill_sandbox.restore_job.choose_copy(point, pspec)
            sandbox = drill_sandbox.sandbox_name(spec.sandbox.namespace_prefix, ns, name, run)
            app = await self.apps.additions(body, policy, point, run, sandbox)  # None: not an application drill
            secrets = {}
            for sname in {*drill_sandbox.restore_job.secrets_needed(pspec, copy_), *(app.secrets if app else ())}:
                found = await self.kube.get(SECRETS, ns, sname, missing_ok=True)
                if found is not None:
                    secrets[sname] = found
            volumes = await self._repository_volumes(
                ns, {*drill_sandbox.restore_job.claims_needed(pspec, copy_), *(app.claims if app else ())})
            objects = drill_sandbox.sandbox_objects(body, policy, point, run, sandbox, self.facts, secrets,
                                                    os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR"),
                                                    volumes=volumes, additions=app)
        except backup.PlanError as exc:
            return {**run_record, "outcome": "Failed", "reason": exc.reason, "message": exc.message,
                    "completionTime": rfc3339(now), "phase": "Done"}
        run_record.update(sandbox=sandbox, phase="Restoring")
        try:
            await self._create_all(objects)
        except KubeError as exc:
            return {**run_record, "outcome": "Failed", "reason": "SandboxFailed",
                    "message": f"could not create the sandbox: {exc}", "completionTime": rfc3339(now),
                    "phase": "Done", "cleanupTime": rfc3339(now)}
        audit.record("drill", actor=ACTOR, outcome="started", when=now,
                     subject={"kind": "RestoreDrill", "namespace": ns, "name": name},
                     details={"run": run, "recoveryPoint": run_record["recoveryPoint"], "sandbox": sandbox,
                              "trigger": trigger})
        await self.kube.emit_event(ObjectRef.of(body), "Normal", "DrillStarted",
                                   f"run {run}: restoring {run_record['recoveryPoint']} into sandbox {sandbox}",
                                   rfc3339(now))
        return run_record

    async def _advance(self, body: dict, spec: RestoreDrillSpec, policy: dict, run: dict) -> dict:
        """One step of a running run: nothing until its current Job ends."""
        sandbox = run["sandbox"]
        restore_job = await self.kube.get(JOBS, sandbox, drill_sandbox.RESTORE_JOB, missing_ok=True)
        if restore_job is None:
            return self._finish(body, spec, policy, run, restore=None,
                                failure="the restore Job is gone (was the sandbox deleted by hand?)")
        if run.get("phase") == "Restoring":
            done = job_end(restore_job)
            if done is None:
                return run
            summary, problem = read_summary(
                await self._message(sandbox, drill_sandbox.RESTORE_JOB, backup.AGENT), RestoreSummary)
            if self.apps.applies(policy):
                await self.apps.end_writer(sandbox)
            if summary is None or not summary.ok:
                return self._finish(body, spec, policy, run, restore=summary,
                                    failure=problem or _job_failure(restore_job),
                                    spans=(restore_job["status"].get("startTime"),
                                           restore_job["status"].get("completionTime")))
            run = {**run, "bytesRestored": summary.bytes_restored or 0, "restoreSeconds": summary.seconds or 0.0}
            if self.apps.applies(policy):  # an application drill: its workloads start before it is verified
                return self.apps.restored(spec, run, self.ctx.clock.now())
            return await self._verify_next(body, spec, policy, run, restore_job,
                                           restore_job["status"].get("completionTime"))
        if run.get("phase") == "Starting":
            up = await self.apps.startup(spec, run, restore_job, self.ctx.clock.now())
            if up.state == "waiting":
                return {**run, "message": up.message[:1000]}
            if up.state == "failed":
                return self._finish(body, spec, policy, run, restore=_kept(run),
                                    startup_failure=(up.reason, up.message),
                                    spans=(restore_job["status"].get("startTime"), None))
            return await self._verify_next(body, spec, policy, {**run, "startupSeconds": up.seconds}, restore_job,
                                           up.ready_at)
        verify_job = await self.kube.get(JOBS, sandbox, drill_sandbox.VERIFY_JOB, missing_ok=True)
        if verify_job is not None and job_end(verify_job) is None:
            return run
        output = None
        if verify_job is not None:
            output = VerifyReport.parse(await self._message(sandbox, drill_sandbox.VERIFY_JOB, "verify"))
        point = await self._point(body, run)
        recorded = ((point or {}).get("spec", {}).get("tags") or {}).get("verifyOutput")
        return self._finish(body, spec, policy, run, restore=_kept(run), verify=output,
                            verdict=drill_measure.verify_verdict(spec, output, recorded),
                            spans=(restore_job["status"].get("startTime"),
                                   (verify_job or {}).get("status", {}).get("completionTime")))

    async def _verify_next(self, body, spec, policy, run: dict, restore_job: dict, end: str | None) -> dict:
        """Restored (and an application started): the verify Job, or the run's end when the drill has none."""
        verify = drill_sandbox.verify_job(body, policy, run["name"], run["sandbox"])
        if verify is None:
            return self._finish(body, spec, policy, run, restore=_kept(run),
                                spans=(restore_job["status"].get("startTime"), end))
        await self._create_all([verify])
        return {**run, "phase": "Verifying"}

    async def _point(self, body: dict, run: dict) -> dict | None:
        try:
            return await self.kube.get(POINT, body["metadata"]["namespace"], run.get("recoveryPoint") or "")
        except KubeError:
            return None

    def _finish(self, body, spec, policy, run, *, restore, failure=None, verify=None, verdict=None,
                spans=(None, None), startup_failure=None) -> dict:
        pspec = BackupPolicySpec.model_validate(policy.get("spec") or {})
        return drill_measure.finish(
            run, restore=restore, restore_job_failure=failure, verify=verify,
            verify_needed=spec.verify.command is not None, verify_ok=verdict, spans=spans,
            rto=pspec.rto_seconds, rpo=pspec.rpo_seconds, point_time=None, now=self.ctx.clock.now(),
            ttl=parse_duration(spec.sandbox.ttl), keep_on_failure=spec.sandbox.keep_on_failure,
            startup_failure=startup_failure)

    async def _cleanup(self, body: dict, runs: list[dict]) -> list[dict]:
        now = self.ctx.clock.now()
        out = []
        for run in runs:
            if drill_measure.cleanup_due(run, now):
                if await self.kube.delete_sandbox_namespace(run["sandbox"], sandbox_role()):
                    await self.kube.delete_mirror_volumes(run["sandbox"])
                    run = {**run, "sandboxDeleted": True}
                    await self.kube.emit_event(ObjectRef.of(body), "Normal", "SandboxDeleted",
                                               f"run {run['name']}: sandbox {run['sandbox']} deleted", rfc3339(now))
            out.append(run)
        return out

    # ---- the reconcile --------------------------------------------------------------------------------

    async def reconcile(self, body: dict) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                fresh = await self.kube.get(DRILL, *key)
            except KubeError:
                return
            if fresh["metadata"].get("deletionTimestamp"):
                return
            await self._reconcile(fresh)

    async def _reconcile(self, body: dict) -> None:
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        status = copy.deepcopy(body.get("status") or {})
        new = copy.deepcopy(status)
        now = self.ctx.clock.now()
        generation = meta.get("generation")
        ready = (True, "SpecValid", "")
        policy = None
        spec, problems = problems_in_spec(DRILL, body.get("spec"))
        if problems:
            ready = (False, "InvalidSpec", "; ".join(str(p) for p in problems))
        if spec is not None:
            try:
                policy = await self._policy(ns, spec.policy_name)
                tier = (policy.get("spec") or {}).get("tier")
                last = new.get("lastRun")
                finished_now = None
                if last and last.get("outcome") == "Running":
                    last = await self._advance(body, spec, policy, last)
                    if last.get("outcome") != "Running":
                        finished_now = last
                    new["lastRun"] = last
                request = (meta.get("annotations") or {}).get(ANN_RUN_NOW)
                trigger, next_time = drill_schedule.due(spec, tier, status, now, parse_time(meta.get("creationTimestamp")))
                if next_time is not None:
                    new["nextRunTime"] = rfc3339(next_time)
                running = (new.get("lastRun") or {}).get("outcome") == "Running"
                if request and request != status.get("lastRequest") and not running:
                    trigger = f"run-now:{request}"
                    new["lastRequest"] = request
                if trigger and not running:
                    started = await self._start(body, spec, policy, trigger)
                    if started["outcome"] != "Running":
                        finished_now = started
                    new["lastRun"] = started
                if finished_now is not None:
                    new["history"] = drill_measure.with_history(new.get("history") or [], finished_now,
                                                                spec.history_limit)
                    await drill_records.finished(self.ctx, body, spec, policy, finished_now, ACTOR)
                    if finished_now["outcome"] == "Failed":
                        ready = (True, "LastRunFailed", f"last run failed: {finished_now.get('message')}")
                new["history"] = await self._cleanup(body, new.get("history") or [])
                if new.get("lastRun") and new["history"] and new["lastRun"].get("name") == new["history"][0].get("name"):
                    new["lastRun"] = new["history"][0]
            except Stop as exc:
                ready = (False, exc.reason, exc.message)
            except KubeError as exc:
                ready = (False, "ApplyFailed", str(exc))
        if ready[0] and ready[1] == "SpecValid":  # the generic reason for a valid spec, with the schedule
            nxt = new.get("nextRunTime")
            when = f"next run {nxt}" if nxt else ("ran once" if spec and spec.mode == "Once" else "waiting")
            ready = (True, "SpecValid", f"RestoreDrill spec is valid; {when}")
        new["conditions"] = conditions.merge(status.get("conditions"),
                                             conditions.make("Ready", ready[0], ready[1], ready[2], generation),
                                             rfc3339(now))
        new["observedGeneration"] = generation
        if new != status:
            try:
                await self.kube.patch(DRILL, ns, name, {"status": new}, subresource="status")
            except KubeError as exc:
                log.warning("RestoreDrill %s/%s: %s", ns, name, exc)
                return
            old_ready = conditions.find(status.get("conditions"), "Ready") or {}
            if not ready[0] and (old_ready.get("reason") != ready[1] or old_ready.get("status") != "False"):
                await self.kube.emit_event(ObjectRef.of(body), "Warning", ready[1], ready[2], rfc3339(now))


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    controller = DrillController(ctx)
    interval = float(os.environ.get("LIFELINE_DRILL_INTERVAL") or 5)

    @kopf.on.startup(registry=registry, id="restoredrill-start")
    async def start(**_):
        controller.ticker = asyncio.create_task(controller.tick_forever(interval), name="lifeline-drill-timer")

    @kopf.on.cleanup(registry=registry, id="restoredrill-timer-stop")
    async def stop(**_):
        await stop_ticker(controller.ticker)

    @kopf.on.event(DRILL.group, DRILL.version, DRILL.plural, registry=registry, id="restoredrill-event")
    async def on_event(event, body, namespace, name, **_):
        if event.get("type") == "DELETED":
            controller.known.discard((namespace, name))
            ctx.metrics.forget("RestoreDrill", namespace, name)
            return
        controller.known.add((namespace, name))
        await controller.reconcile(dict(body))

    # A sandbox Job that ended moves its run on at once (the timer alone would take up to an interval).
    @kopf.on.event("batch", "v1", "jobs", labels={drill_sandbox.LABEL_SANDBOX: "true"}, registry=registry,
                   id="restoredrill-job")
    async def on_job(event, body, **_):
        owner = ((body.get("metadata") or {}).get("annotations") or {}).get(drill_sandbox.ANN_DRILL, "")
        if "/" in owner and event.get("type") != "DELETED" and job_end(dict(body)) is not None:
            namespace, name = owner.split("/", 1)
            await controller.reconcile({"metadata": {"namespace": namespace, "name": name}})
