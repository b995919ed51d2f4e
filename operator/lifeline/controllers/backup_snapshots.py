"""volumeSnapshot backups: a finished trigger Job → hooks, VolumeSnapshot, PVC, data-mover Job, cleanup.

The mechanism and its reasons are in :mod:`lifeline.planning.snapshot`. This module acts: each call
of :meth:`SnapshotPipelines.advance` reads where one trigger Job's pipeline stands (the snapshot, the
temporary PVC and the mover are named after the trigger, so nothing but the API holds the state and
an operator restart resumes where it was) and takes the next step. It is called on the trigger's and
the mover's Job events and on every timer round while the trigger is not recorded.

Pre-hooks run before the snapshot is created; post-hooks as soon as it is cut (or failed), and always
once pre-hooks ran. A failing pre-hook (``onError: Fail``) aborts the backup: post-hooks still run,
no snapshot is taken. Hook progress is written on the trigger Job (``dr.lifeline.io/hooks``), so a
restart does not run a phase twice once it was recorded (a restart in the middle of a phase runs it
again: hooks must be idempotent, as fsfreeze --unfreeze and CHECKPOINT are).
"""
from __future__ import annotations

import logging

from pydantic import ValidationError

from lifeline.api.backuppolicy import BackupPolicySpec, Hook
from lifeline.api.common import parse_duration
from lifeline.clock import rfc3339
from lifeline.controllers.backup_audit import ACTOR
from lifeline.kube import (JOBS, PERSISTENTVOLUMECLAIMS, PODS, VOLUMESNAPSHOTCLASSES, VOLUMESNAPSHOTS, Kind,
                           KubeError, ObjectRef)
from lifeline.labels import ANN_HOOKS
from lifeline.observability import audit
from lifeline.planning import backup, snapshot
from lifeline.clock import parse_time
from lifeline.planning.job_record import JobRecord

log = logging.getLogger(__name__)


# What a data-mover Job's fact (lifeline.planning.backup_points.job_fact) tells the policy's status;
# kept on the trigger Job once the mover is deleted.
MOVED_FACTS = ("name", "operation", "trigger", "type", "start", "created", "completion", "phase", "recorded",
               "result", "failMessage")


class SnapshotPipelines:
    def __init__(self, controller):
        self.ctl = controller
        self.kube = controller.kube
        self.busy: set[str] = set()
        self.finished: set[str] = set()  # trigger uids recorded by this process (until the watch catches up)

    # ---- entry point ---------------------------------------------------------------------------

    async def advance(self, trigger: dict) -> None:
        """Take the next step of a trigger Job's pipeline (no-op when it runs elsewhere or is done)."""
        uid = trigger["uid"]
        if trigger.get("recorded") or uid in self.finished or uid in self.busy:
            return
        self.busy.add(uid)
        try:
            await self._advance(trigger)
        except KubeError as exc:
            log.warning("snapshot pipeline of Job %s/%s: %s (retried on the next event or tick)",
                        trigger["namespace"], trigger["name"], exc)
        finally:
            self.busy.discard(uid)

    def trigger_of(self, mover: dict) -> dict | None:
        """The trigger Job fact a data-mover Job belongs to."""
        name = mover.get("triggerJob")
        if not name:
            return None
        return next((j for j in self.ctl.stores.of_policy("backup_jobs", (mover["namespace"], mover["policy"]))
                     if j["name"] == name and j["operation"] == "trigger"), None)

    # ---- the steps -----------------------------------------------------------------------------

    async def _advance(self, trig: dict) -> None:
        ns, name = trig["namespace"], trig["name"]
        body = self.ctl.policy(ns, trig["policy"])
        if body is None or trig["phase"] == "Running":
            return
        try:
            spec = BackupPolicySpec.model_validate(body.get("spec") or {})
        except ValidationError:
            return  # the policy's Ready condition says what is wrong; the pipeline waits for a fix
        vs = spec.source.volume_snapshot
        if vs is None:
            return await self._fail(trig, body, "SourceChanged",
                                    "the policy's source is no longer a volumeSnapshot: no snapshot taken")
        if trig["phase"] == "Failed":
            return await self._fail(trig, body, "TriggerFailed",
                                    f"the trigger Job {name} failed: {trig.get('failMessage') or trig.get('reason')}")
        hooks = trig.get("hooks")
        running = self._mover(trig)
        if running is not None and running["phase"] == "Running":
            return  # nothing to do until the data mover ends (no API call per timer round meanwhile)
        snap = await self.kube.get(VOLUMESNAPSHOTS, ns, snapshot.snapshot_name(name), missing_ok=True)
        if snap is None:
            if self._mover(trig) is not None:
                return await self._cleanup(trig, body, spec)  # the snapshot went away after the mover ran
            if spec.hooks.pre and hooks is None:
                ok, why = await self._run_hooks(body, spec.hooks.pre, "pre")
                if not ok:
                    await self._run_hooks(body, spec.hooks.post, "post")  # always, once a pre-hook ran
                    return await self._fail(trig, body, "PreHookFailed", why)
                hooks = await self._mark_hooks(trig, "pre")
            cls = vs.volume_snapshot_class_name
            if cls and await self.kube.get(VOLUMESNAPSHOTCLASSES, None, cls, missing_ok=True) is None:
                if hooks == "pre":
                    await self._run_hooks(body, spec.hooks.post, "post")
                return await self._fail(trig, body, "VolumeSnapshotClassNotFound",
                                        f"VolumeSnapshotClass {cls} does not exist: create it for the PVC's CSI "
                                        "driver, or fix spec.source.volumeSnapshot.volumeSnapshotClassName")
            snap = await self._create_snapshot(body, trig)
        since = parse_time(trig.get("completion")) or parse_time(trig.get("start")) or self.ctl.ctx.clock.now()
        state = snapshot.snapshot_state(snap, since, self.ctl.ctx.clock.now(), vs.ready_timeout)
        if spec.hooks.post and hooks != "post" and (state.cut or state.phase in ("Failed", "TimedOut")):
            await self._run_hooks(body, spec.hooks.post, "post")  # a failing post-hook warns; the data is cut
            hooks = await self._mark_hooks(trig, "post")
        if state.phase in ("Failed", "TimedOut"):
            await self.kube.delete(VOLUMESNAPSHOTS, ns, snap["metadata"]["name"], missing_ok=True)
            reason = "SnapshotFailed" if state.phase == "Failed" else "SnapshotTimeout"
            return await self._fail(trig, body, reason, state.message)
        if state.phase != "Ready":
            return  # the timer comes back
        mover = self._mover(trig)
        if mover is None:
            return await self._start_mover(body, trig, snap)
        if mover["phase"] != "Running" and (mover.get("recorded") or self.ctl.runs.recorded_here(mover["uid"])):
            await self._cleanup(trig, body, spec)

    def _mover(self, trig: dict) -> dict | None:
        want = snapshot.mover_name(trig["name"])
        return next((j for j in self.ctl.stores.of_policy("backup_jobs", (trig["namespace"], trig["policy"]))
                     if j["name"] == want), None)

    async def _create_snapshot(self, body: dict, trig: dict) -> dict:
        manifest = snapshot.volume_snapshot(body, trig)
        try:
            return await self.kube.create(VOLUMESNAPSHOTS, trig["namespace"], manifest)
        except KubeError as exc:
            if exc.status != 409:
                raise
            return await self.kube.get(VOLUMESNAPSHOTS, trig["namespace"], manifest["metadata"]["name"],
                                       missing_ok=True)

    async def _start_mover(self, body: dict, trig: dict, snap: dict) -> None:
        ns = trig["namespace"]
        claim = snapshot.data_claim_name(trig["name"])
        if await self.kube.get(PERSISTENTVOLUMECLAIMS, ns, claim, missing_ok=True) is None:
            vs = body["spec"]["source"]["volumeSnapshot"]
            source = await self.kube.get(PERSISTENTVOLUMECLAIMS, ns, vs["claimName"], missing_ok=True)
            await self._create(PERSISTENTVOLUMECLAIMS, ns, snapshot.data_claim(body, trig, snap, source))
        await self._create(JOBS, ns, snapshot.mover_job(body, self.ctl.facts, trig, claim))
        await self.kube.emit_event(ObjectRef.of(body), "Normal", "SnapshotReady",
                                   f"VolumeSnapshot {snap['metadata']['name']} is ready; data-mover Job "
                                   f"{snapshot.mover_name(trig['name'])} reads it through PVC {claim}",
                                   rfc3339(self.ctl.ctx.clock.now()))

    async def _create(self, res: Kind, ns: str, manifest: dict) -> None:
        try:
            await self.kube.create(res, ns, manifest)
        except KubeError as exc:
            if exc.status != 409:  # made before a restart
                raise

    async def _cleanup(self, trig: dict, body: dict, spec: BackupPolicySpec) -> None:
        """The mover is recorded: it goes with the temporary PVC, snapshots beyond keepSnapshots go, done."""
        ns, policy = trig["namespace"], trig["policy"]
        mover = self._mover(trig)
        recorded = JobRecord.of(mover)
        outcome = (recorded.outcome if recorded else None) or (mover or {}).get("phase") or "Failed"
        # A claim stays while any pod bound to a node names it, finished or not (the PVC protection
        # controller): the recorded mover Job goes with its pod, then the claim and its copy of the volume.
        await self.kube.delete(JOBS, ns, snapshot.mover_name(trig["name"]), missing_ok=True)
        await self.kube.delete(PERSISTENTVOLUMECLAIMS, ns, snapshot.data_claim_name(trig["name"]), missing_ok=True)
        keep = spec.source.volume_snapshot.keep_snapshots if spec.source.volume_snapshot else 0
        mine = snapshot.snapshot_name(trig["name"])
        if outcome != "Succeeded":
            await self.kube.delete(VOLUMESNAPSHOTS, ns, mine, missing_ok=True)
        existing = await self.kube.list(VOLUMESNAPSHOTS, ns, f"{backup.LABEL_POLICY}={backup.label_value(policy)}")
        running = {snapshot.snapshot_name(j["name"]) for j in self.ctl.stores.of_policy("backup_jobs", (ns, policy))
                   if j["operation"] == "trigger" and not j.get("recorded") and j["name"] != trig["name"]}
        existing = [s for s in existing if (s["metadata"].get("annotations") or {}).get(backup.ANN_POLICY) == policy
                    and (outcome == "Succeeded" or s["metadata"]["name"] != mine)]
        for name in snapshot.snapshots_to_delete(existing, keep, running):
            await self.kube.delete(VOLUMESNAPSHOTS, ns, name, missing_ok=True)
        # The mover Job is gone now: the trigger keeps what the policy's status shows of it.
        moved = {k: mover[k] for k in MOVED_FACTS if mover and mover.get(k) is not None}
        if moved and not moved.get("recorded") and self.ctl.runs.written_on(mover["uid"]):
            moved["recorded"], moved["result"] = self.ctl.runs.written_on(mover["uid"])  # before the watch said so
        await self._record(trig, JobRecord(outcome=outcome, operation="trigger",
                                           mover=snapshot.mover_name(trig["name"]), moved=moved or None))

    # ---- outcomes ------------------------------------------------------------------------------

    async def _record(self, trig: dict, record: JobRecord) -> None:
        await self.kube.patch(JOBS, trig["namespace"], trig["name"], {"metadata": {"annotations": {
            backup.ANN_RECORDED: record.outcome, backup.ANN_RESULT: record.to_annotation()}}})
        self.finished.add(trig["uid"])

    async def _fail(self, trig: dict, body: dict, reason: str, message: str) -> None:
        """The backup ends before a mover ran: an Event, a metric, an audit record, the outcome on the Job."""
        ns, policy = trig["namespace"], trig["policy"]
        now = self.ctl.ctx.clock.now()
        tier = str((body.get("spec") or {}).get("tier", ""))
        self.ctl.ctx.metrics.backup_failures.labels(ns, policy, tier, "", reason).inc()
        text = f"{trig.get('type') or ''} backup (trigger Job {trig['name']}) failed: {message}".strip()
        await self.kube.emit_event(ObjectRef.of(body), "Warning", reason, text, rfc3339(now))
        audit.record("backup", actor=ACTOR, outcome="failed",
                     subject={"kind": "BackupPolicy", "namespace": ns, "name": policy,
                              "uid": body["metadata"].get("uid", "")},
                     details={"job": trig["name"], "type": trig.get("type"), "trigger": trig.get("trigger"),
                              "reason": reason, "message": message[:500]}, when=now)
        await self._record(trig, JobRecord(outcome="Failed", operation="backup", reason=reason, error=message[:300],
                                           report=message[:300]))

    async def _mark_hooks(self, trig: dict, phase: str) -> str:
        await self.kube.patch(JOBS, trig["namespace"], trig["name"], {"metadata": {"annotations": {ANN_HOOKS: phase}}})
        return phase

    # ---- hooks ---------------------------------------------------------------------------------

    async def _run_hooks(self, body: dict, hooks: list[Hook], phase: str) -> tuple[bool, str]:
        """Run hooks in order; ``(False, why)`` at the first failing ``onError: Fail`` pre-hook."""
        ref, ns = ObjectRef.of(body), body["metadata"].get("namespace", "")
        for hook in hooks:
            ok, text = await self._run_hook(ns, hook)
            now = rfc3339(self.ctl.ctx.clock.now())
            what = f"{phase}-hook {hook.name}: {text}"
            await self.kube.emit_event(ref, "Normal" if ok else "Warning", "HookSucceeded" if ok else "HookFailed",
                                       what, now)
            if not ok and phase == "pre" and hook.on_error == "Fail":
                return False, what + " (onError: Fail aborts the backup; post-hooks ran)"
        return True, ""

    async def _run_hook(self, ns: str, hook: Hook) -> tuple[bool, str]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(hook.pod_selector.items()))
        try:
            pods = await self.kube.list(PODS, ns, selector)
        except KubeError as exc:
            return False, f"could not list pods {selector}: {exc}"
        running = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Running"
                          and not p["metadata"].get("deletionTimestamp")), key=lambda p: p["metadata"]["name"])
        if not running:
            return False, f"no Running pod matches {selector} in {ns}: fix hooks[].podSelector or start the workload"
        pod = running[0]
        container = hook.container or ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name")
        where = f"pod {pod['metadata']['name']}, container {container}"
        try:
            result = await self.kube.exec(ns, pod["metadata"]["name"], container, hook.command,
                                          timeout=parse_duration(hook.timeout))
        except KubeError as exc:
            return False, f"exec in {where} failed: {exc}"
        if result.exit_code is None:
            return False, f"{where}: did not finish within {hook.timeout}"
        if result.exit_code != 0:
            tail = (result.stderr or result.stdout).strip().replace("\n", " ")[-300:]
            return False, f"{where}: exited {result.exit_code}" + (f": {tail}" if tail else "")
        return True, f"{where}: exited 0"
