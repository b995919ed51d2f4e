"""BackupPolicy and RecoveryPoint: schedules into CronJobs, finished Jobs into the catalogue.

Thin, level-triggered, and the one writer of both kinds' status. This module holds the
BackupPolicy reconcile (a round per policy, its status written) and the watch handlers; each
concern it drives has its own module:

- what exists (:mod:`~lifeline.controllers.backup_stores`): policies, CronJobs, Jobs, shipping Deployments and
  RecoveryPoints are read from in-memory stores (one LIST each at start-up, then the watch
  events), so a reconcile that changes nothing makes no API request at all; the PVCs and Secrets
  a policy names are looked up with GET and trusted for ``facts_ttl`` seconds (only a Secret's
  key names are kept, never its values);
- a policy's children (:mod:`~lifeline.controllers.backup_schedule`): the planners
  (:mod:`lifeline.planning.backup`, :mod:`~lifeline.planning.backup_status`) say what the
  CronJobs and the status should be, and only the difference is written, so a resync of
  unchanged policies writes nothing; a ``dr.lifeline.io/backup-now`` annotation with a new value
  starts one Job;
- finished Jobs (:mod:`~lifeline.controllers.backup_runs`): recorded once, as a RecoveryPoint,
  Events and metrics, and the outcome stored on the Job (``dr.lifeline.io/recorded`` /
  ``dr.lifeline.io/result``) so that the status can be planned from the Jobs alone, after a
  restart too; snapshot sources go through :mod:`~lifeline.controllers.backup_snapshots`,
  continuous ones ship through :mod:`~lifeline.controllers.backup_continuous`;
- RecoveryPoint status and owner references (:mod:`~lifeline.controllers.recoverypoint_status`),
  audit records (:mod:`~lifeline.controllers.backup_audit`);
- RPOs are re-planned every ``rpo_check_interval`` seconds against the injected clock (the timer).
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import time

import kopf
from pydantic import ValidationError

from lifeline import GROUP, VERSION
from lifeline.api import BACKUP_POLICY as POLICY
from lifeline.clock import rfc3339
from lifeline.controllers.backup_audit import audit_deletion
from lifeline.controllers.backup_catalogue import PointAdoption
from lifeline.controllers.backup_continuous import ShippingDeployments
from lifeline.controllers.backup_objects import ObjectReaders, backs_up_objects
from lifeline.controllers.backup_runs import BackupRuns
from lifeline.controllers.backup_schedule import BackupSchedule
from lifeline.controllers.backup_snapshots import SnapshotPipelines
from lifeline.controllers.backup_stores import BackupStores, RefCache, policy_of, resource_version
from lifeline.controllers.common import pinned_vault_env, stop_ticker, vault_env
from lifeline.controllers.recoverypoint_status import RecoveryPointStatus
from lifeline.keys import health
from lifeline.kube import KubeError, ObjectRef
from lifeline.labels import LABEL_CATALOGUE
from lifeline.planning import backup, backup_points, backup_status
from lifeline.planning.recoverypoint_shred import FINALIZER as shred_finalizer
from lifeline.sources import room_of

log = logging.getLogger(__name__)

OWNS = ("BackupPolicy", "RecoveryPoint")
PRESENT = {backup.LABEL_POLICY: kopf.PRESENT}
ADMIN_GRANTS = ("ClusterObjectsNotAllowed",)  # plan errors an admin's grant ends: asked again on every tick


def _plain(body) -> dict:
    return copy.deepcopy(dict(body))


class BackupController:
    """The BackupPolicy reconcile and the hub its helpers act through (their stores, policies and facts)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.kube = ctx.kube
        self.facts = backup.Facts(ctx.options.agent_image, vault_env=vault_env())
        self._key_checks: dict[str, asyncio.Future] = {}
        self.stores = BackupStores(ctx.kube, ctx.options)
        self.refs = RefCache(ctx.kube, ctx.options.facts_ttl)
        # (ns, name) -> None while a reconcile of the policy runs; True/False once another round is asked
        # for meanwhile (True: one that puts the children right too)
        self._rounds: dict[tuple, bool | None] = {}
        self.ticker: asyncio.Task | None = None
        self._applied: dict[tuple, tuple] = {}  # (ns, name) -> (cron jobs, apply error, plan error)
        self._written: dict[tuple, dict] = {}  # (ns, name) -> the policy as our last status write returned it
        self._looked_up: dict[tuple, tuple] = {}  # (ns, name) -> (generation, when it was first seen)
        self.schedule = BackupSchedule(self)  # CronJobs, the shipping Deployment, backup-now
        self.runs = BackupRuns(self)  # finished Jobs into RecoveryPoints
        self.point_status = RecoveryPointStatus(ctx)
        self.snapshots = SnapshotPipelines(self)
        self.shipping = ShippingDeployments(self)  # continuous sources: the shipper and what it shipped
        self.objects = ObjectReaders(self)  # resources sources: discovery, and the account Jobs read as
        self.adoption = PointAdoption(self)  # adopt-points requests: points made again from the destinations

    def policy(self, namespace: str, name: str) -> dict | None:
        """The policy as the store has it, with the status our last write returned until the watch brings it."""
        found = self.stores.of_policy("backup_policies", (namespace, name))
        body = found[0] if found else None
        written = self._written.get((namespace, name))
        if body is not None and written is not None:
            if resource_version(written) > resource_version(body) and \
                    written["metadata"].get("uid") == body["metadata"].get("uid"):
                body = dict(body, status=written.get("status"))  # the watch has not brought our write back yet
            else:
                self._written.pop((namespace, name), None)
        return body

    def forget(self, namespace: str, name: str) -> None:
        self.ctx.metrics.forget("BackupPolicy", namespace, name)
        for store in (self._applied, self._written, self._looked_up):
            store.pop((namespace, name), None)
        self.shipping.forget(namespace, name)

    # ---- the reconcile ---------------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str, *, children: bool = True) -> None:
        """Bring a policy's children and status in line with what the stores say now.

        One round at a time per policy. A call that comes while a round runs does not wait behind
        it: it asks for one more round (which reads the stores again) and returns, and the call
        running the rounds makes it. So the events that arrive meanwhile (a policy's CronJobs coming
        back through the watch as they are created) cost one more round between them, and the watch
        events are not held in memory while they wait.
        """
        key = (namespace, name)
        if key in self._rounds:
            asked = self._rounds[key]
            self._rounds[key] = children if asked is None else (asked or children)
            return
        self._rounds[key] = None
        try:
            while True:
                try:
                    await self._round(namespace, name, children)
                except Exception:
                    if self._rounds.get(key) is None:
                        raise
                    log.exception("BackupPolicy %s/%s: reconcile failed; making the round asked for meanwhile",
                                  namespace, name)
                asked = self._rounds.get(key)
                if asked is None:
                    return
                self._rounds[key], children = None, asked
        finally:
            self._rounds.pop(key, None)

    async def _round(self, namespace: str, name: str, children: bool) -> None:
        body = self.policy(namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return
        try:
            await self._reconcile(body, children)
        except KubeError as exc:
            self.ctx.metrics.reconciles.labels("BackupPolicy", "error").inc()
            if exc.status != 404:
                log.warning("BackupPolicy %s/%s: %s", namespace, name, exc)
        if self.policy(namespace, name) is None:  # deleted while this round ran: drop what it observed
            self.ctx.metrics.forget("BackupPolicy", namespace, name)

    async def _reconcile(self, body: dict, children: bool) -> None:
        meta = body["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        key = (namespace, name)
        now = self.ctx.clock.now()
        discovery_error = await self.objects.refresh() if backs_up_objects(body) else None
        desired, spec, problems = self.schedule.parsed(body)
        inputs = backup_status.Inputs(now=now, spec=spec, problems=problems)
        if spec is not None and not isinstance(desired, ValidationError):
            # A new generation (a new policy, or a changed spec) looks its references up again; other
            # policies' lookups made since this round began count (many policies share a Secret, and
            # a round may wait its turn to write CronJobs while others look the Secret up).
            seen = self._looked_up.get(key)
            if seen is None or seen[0] != meta.get("generation"):
                seen = self._looked_up[key] = (meta.get("generation"), time.monotonic())
            waiting = key in self._applied and getattr(self._applied[key][2], "reason", None) in ADMIN_GRANTS
            if children or key not in self._applied or waiting:  # (a grant makes no event here: asked each tick)
                plan_error = desired if isinstance(desired, backup.PlanError) else None
                # (with no kind checked for its author, the reader is planned too: it is given none)
                reader_error = await self.objects.apply(body) \
                    if plan_error is None or plan_error.reason == "KindsNotChecked" else None
                if reader_error:  # no Job runs until its account is this policy's alone, as planned
                    plan_error = backup.PlanError("SourceAvailable", "ReaderNotReady", reader_error)
                elif plan_error is None and (reader_error := await self.objects.cluster_refused(body)):
                    plan_error = backup.PlanError("SourceAvailable", "ClusterObjectsNotAllowed", reader_error)
                manifests = [] if plan_error else desired
                apply_error = await self.schedule.apply(body, manifests)
                ship_error = await self.schedule.apply_shipping(body, spec, plan_error)
                apply_error = "; ".join(e for e in (apply_error, ship_error, discovery_error) if e) or None
                cron_jobs = [(m["name"], m["spec"]["schedule"]) for m in manifests]
                self._applied[key] = (cron_jobs, apply_error, plan_error)
                if not reader_error:  # a Job would run as an account that is not (yet) this policy's
                    inputs.backup_now_handled = await self.schedule.backup_now(body)
                if plan_error is None:
                    await self.adoption.requested(body)
                await self.point_status.sync_owners(body, self.stores.of_policy("backup_points", key))
            inputs.cron_jobs, inputs.apply_error, inputs.plan_error = self._applied[key]
            inputs.refs = await self.refs.get(namespace, backup_status.required_refs(spec), newer_than=seen[1])
            inputs.jobs = self.stores.of_policy("backup_jobs", key)
            inputs.points = self.stores.of_policy("backup_points", key)
            inputs.key_check = await self.key_check(spec.encryption.key_ref)
            inputs.served = self.objects.facts(body).served  # a resources policy's own view
            if room_of(spec).ships_segments and not spec.suspend:
                inputs.shipped = await self.shipping.shipped(body)
        plan = backup_status.plan_status(body, inputs)
        self._observe(body, plan)
        if plan.patch is None:
            self.ctx.metrics.reconciles.labels("BackupPolicy", "unchanged").inc()
            return
        written = await self.kube.patch(POLICY, namespace, name, {"status": plan.patch}, subresource="status")
        if isinstance(written, dict):  # kept until the watch brings the write back (see policy())
            self._written[key] = {"metadata": {k: written["metadata"].get(k) for k in ("uid", "resourceVersion")},
                                  "status": written.get("status")}
        self.ctx.metrics.reconciles.labels("BackupPolicy", "written").inc()
        stamp = rfc3339(now)
        for ev in plan.events:
            await self.kube.emit_event(ObjectRef.of(body), ev.type, ev.reason, ev.message, stamp)
            self.ctx.notifier.tell(body, ev.reason, ev.message, stamp)

    async def key_check(self, ref: str) -> tuple[str, str, str] | None:
        """What the key provider says about a Vault key (lifeline.keys.health: cached, one check at a time)."""
        if not ref.startswith(("vault-transit://", "vault-kv://")):
            return None  # secret:// keys are checked through their Secret
        if not (os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR")):
            return ("Unknown", "VaultNotConfigured",
                    f"the operator has no Vault address (chart value vault.addr) so it cannot check {ref}; "
                    "the first backup shows whether the key works")
        task = self._key_checks.get(ref)
        if task is None:
            # pinned: the operator's own Vault settings and credentials, whatever the reference says
            task = self._key_checks[ref] = asyncio.ensure_future(
                asyncio.to_thread(health.check, ref, env=pinned_vault_env()))
            task.add_done_callback(lambda _: self._key_checks.pop(ref, None))
        try:
            return await asyncio.shield(task)
        except Exception as exc:  # noqa: BLE001 - a check that breaks says so, it does not stop the reconcile
            return ("Unknown", "CheckFailed", f"checking {ref} failed: {exc}")

    def _observe(self, body: dict, plan) -> None:
        meta = body["metadata"]
        labels = meta.get("namespace", ""), meta["name"], str((body.get("spec") or {}).get("tier", ""))
        m = self.ctx.metrics
        m.spec_valid.labels("BackupPolicy", labels[0], labels[1]).set(1 if plan.valid else 0)
        if plan.rpo_target_seconds is not None:
            m.rpo_target.labels(*labels).set(plan.rpo_target_seconds)
            m.rpo_achievable.labels(*labels).set(1 if plan.achievable else 0)
            gap = (plan.patch or {}).get("scheduleIntervalSeconds") or (body.get("status") or {}).get(
                "scheduleIntervalSeconds")
            if gap is not None:
                m.backup_schedule_gap.labels(*labels).set(gap)
        if plan.data_age_seconds is not None:
            m.rpo_seconds.labels(*labels).set(plan.data_age_seconds)
        conds = ((plan.patch or {}).get("conditions") if plan.patch and "conditions" in plan.patch
                 else (body.get("status") or {}).get("conditions")) or []
        for c in conds:
            m.backup_condition.labels(labels[0], labels[1], c["type"]).set(1 if c.get("status") == "True" else 0)

    # ---- the timer -------------------------------------------------------------------------------

    async def tick_forever(self) -> None:
        await self.stores.synced.wait()
        interval = max(0.05, float(self.ctx.options.rpo_check_interval))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the timer must survive one bad round
                log.exception("backup timer round failed")

    async def tick(self) -> None:
        for key in self.stores["backup_jobs"].groups():
            for job in self.stores.of_policy("backup_jobs", key):
                if job["operation"] == "trigger" and not job.get("recorded"):
                    await self.snapshots.advance(job)
                elif job["phase"] != "Running" and not job.get("recorded"):
                    await self.runs.record(job)
        for namespace, name in self.stores["backup_policies"].groups():
            await self.reconcile(namespace, name, children=False)


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    controller = BackupController(ctx)

    @kopf.on.startup(registry=registry, id="backup-start")
    async def start(logger, **_):
        for attempt in range(1, 31):
            try:
                await controller.stores.prime()
                break
            except KubeError as exc:
                logger.warning(f"listing what backups depend on failed (attempt {attempt}): {exc}")
                await asyncio.sleep(min(10, attempt))
        else:
            raise kopf.PermanentError("could not list BackupPolicies, CronJobs, Jobs and RecoveryPoints")
        controller.ticker = asyncio.create_task(controller.tick_forever(), name="lifeline-backup-timer")

    @kopf.on.cleanup(registry=registry, id="backup-timer-stop")
    async def stop(**_):
        await stop_ticker(controller.ticker)

    @kopf.on.event(GROUP, VERSION, "backuppolicies", registry=registry, id="backup-policy")
    async def on_policy(event, body, namespace, name, **_):
        if event.get("type") == "DELETED":
            controller.stores["backup_policies"].remove(body)
            controller.forget(namespace, name)
            audit_deletion(body, ctx.clock.now())
            return
        controller.stores["backup_policies"].put(body)
        await controller.reconcile(namespace, name)

    async def child_changed(store_name: str, event, body, namespace) -> None:
        """A policy's CronJob or Deployment changed (or went): cache it, and put the policy's children right."""
        store = controller.stores[store_name]
        store.remove(body) if event.get("type") == "DELETED" else store.put(body)
        policy = policy_of(body)
        if policy and controller.policy(namespace, policy) is not None:
            await controller.reconcile(namespace, policy)

    @kopf.on.event("batch", "v1", "cronjobs", labels=PRESENT, registry=registry, id="backup-cronjob")
    async def on_cronjob(event, body, namespace, **_):
        await child_changed("backup_cronjobs", event, body, namespace)

    @kopf.on.event("batch", "v1", "jobs", labels=PRESENT, registry=registry, id="backup-job")
    async def on_job(event, body, namespace, **_):
        if event.get("type") == "DELETED":
            controller.stores["backup_jobs"].remove(body)
            return
        controller.stores["backup_jobs"].put(body)
        job = backup_points.job_fact(body)
        await controller.runs.record(job)
        trigger = job if job["operation"] == "trigger" else controller.snapshots.trigger_of(job)
        if trigger is not None:
            await controller.snapshots.advance(trigger)
        if job["policy"] and controller.policy(namespace, job["policy"]) is not None:
            await controller.reconcile(namespace, job["policy"], children=False)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_CATALOGUE: kopf.PRESENT}, registry=registry,
                   id="backup-catalogue-job")
    async def on_catalogue_job(event, body, **_):
        if event.get("type") != "DELETED":
            await controller.adoption.finished(_plain(body))

    @kopf.on.event("apps", "v1", "deployments", labels=PRESENT, registry=registry, id="backup-deployment")
    async def on_deployment(event, body, namespace, **_):
        await child_changed("backup_deployments", event, body, namespace)

    @kopf.on.event(GROUP, VERSION, "recoverypoints", registry=registry, id="backup-recoverypoint")
    async def on_point(event, body, namespace, name, **_):
        store = controller.stores["backup_points"]
        store.remove(body) if event.get("type") == "DELETED" else store.put(body)
        policy = (body.get("spec") or {}).get("policyName")
        meta = body.get("metadata") or {}
        held = shred_finalizer in (meta.get("finalizers") or [])  # deleted, its keys' shred awaiting review
        if event.get("type") != "DELETED" and meta.get("deletionTimestamp") and held:
            await controller.point_status.reconcile(namespace, name, _plain(body))
        if event.get("type") != "DELETED" and not meta.get("deletionTimestamp"):
            plain = _plain(body)
            await controller.point_status.reconcile(namespace, name, plain)
            owner = controller.policy(namespace, policy) if policy else None
            if owner is not None:
                await controller.point_status.sync_owners(owner, [backup_points.point_fact(plain)])
        else:
            ctx.metrics.forget("RecoveryPoint", namespace, name)
            if event.get("type") == "DELETED":
                audit_deletion(body, ctx.clock.now())
        if policy and controller.policy(namespace, policy) is not None:
            await controller.reconcile(namespace, policy, children=False)
