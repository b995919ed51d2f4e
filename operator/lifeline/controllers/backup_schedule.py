"""A BackupPolicy's children kept as planned: its CronJobs, its shipping Deployment, and backup-now Jobs.

The planner (:mod:`lifeline.planning.backup`) says which CronJobs a policy should have; this
module parses a policy once per generation, compares the plan with what the CronJob store holds
and writes only the difference: created when missing (one deleted by hand comes back), replaced
when its spec hash or a field an edit by hand could change differs, deleted when a schedule kind
leaves the spec. A continuous policy's shipping Deployment is handed to
:class:`~lifeline.controllers.backup_continuous.ShippingDeployments`. A ``dr.lifeline.io/backup-now``
annotation with a new value starts one Job.
"""
from __future__ import annotations

import asyncio

from pydantic import ValidationError

from lifeline.api import BACKUP_POLICY as POLICY
from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.validation import problems_in_spec
from lifeline.clock import rfc3339
from lifeline.controllers.backup_objects import backs_up_objects
from lifeline.controllers.common import delete_owned, write_owned
from lifeline.kube import CRONJOBS, JOBS, KubeError, ObjectRef
from lifeline.planning import backup, continuous
from lifeline.sources import room_of


# Policies writing CronJobs at once (see BackupSchedule._writers).
WRITERS = 32

# What is compared besides the spec hash, to put right a CronJob someone edited by hand (other
# fields are compared by the hash only: a real API server adds defaults to the pod template).
CRONJOB_FIELDS = ("schedule", "suspend", "timeZone", "concurrencyPolicy")


def cronjob_fact(body) -> dict:
    """What the CronJob store keeps of a policy's CronJob: what :meth:`BackupSchedule.apply` compares."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    return {
        "name": meta.get("name"), "resourceVersion": meta.get("resourceVersion"),
        "hash": (meta.get("annotations") or {}).get(backup.ANN_HASH),
        "owners": [r.get("uid") for r in meta.get("ownerReferences") or []],
        "fields": {k: spec.get(k) for k in CRONJOB_FIELDS},
    }


class BackupSchedule:
    """One BackupPolicy controller's writer of policies' children (it reads the controller's stores and facts)."""

    def __init__(self, controller):
        self.ctl = controller
        self.kube = controller.kube
        self._children: dict[tuple, object] = {}  # (uid, generation) -> manifests | PlanError | ValidationError
        # Policies rendering and writing CronJobs at once: enough to keep the threads the API calls run
        # on busy (asyncio's default executor: min(32, CPUs + 4)) while the event loop is busy too. With
        # no bound, every policy that arrives renders its manifests (~17 KiB each, parsed) at once, to
        # wait in the executor's queue: 3,000 of them when 1,000 policies are applied together.
        self._writers = asyncio.Semaphore(WRITERS)
        # CronJobs written but not yet seen back through the watch: (ns, name) -> spec hash, and
        # the resourceVersion a replace started from (a newer one means the watch caught up)
        self._pending: dict[tuple, str] = {}
        self._pending_rv: dict[tuple, str] = {}

    def parsed(self, body: dict):
        """``(desired CronJobs | PlanError | ValidationError, spec or None, problems)``, once per generation."""
        meta = body["metadata"]
        # a resources policy's plan follows what the API server serves, too, as the policy may read it (its
        # record of the kinds its author was checked for, which an annotation changes without a generation)
        facts = self.ctl.objects.facts(body)
        served = facts.served if backs_up_objects(body) else None
        key = (meta.get("uid"), meta.get("generation"), meta["name"], meta.get("namespace"), served)
        if key not in self._children:
            _, problems = problems_in_spec(POLICY, body.get("spec"))
            spec = None if problems else BackupPolicySpec.model_validate(body["spec"])
            try:
                # Only what tells a CronJob apart is kept; the manifests are rendered again to write one.
                desired = [{"name": m["metadata"]["name"], "hash": m["metadata"]["annotations"][backup.ANN_HASH],
                            "spec": {k: m["spec"].get(k) for k in CRONJOB_FIELDS}}
                           for m in backup.plan(body, facts)]
            except (ValidationError, backup.PlanError) as exc:
                desired = exc
            self._children[key] = (desired, spec, problems)
            if len(self._children) > 20000:
                self._children.pop(next(iter(self._children)))
        return self._children[key]

    # ---- CronJobs ----------------------------------------------------------------------------

    def _cronjob_changes(self, body: dict, desired: list[dict]) -> tuple[list[tuple], dict]:
        """The CronJobs to write, as (wanted, current fact or None), and those left over (name -> fact)."""
        meta = body["metadata"]
        namespace = meta.get("namespace", "")
        existing = {f["name"]: f for f in self.ctl.stores.of_policy("backup_cronjobs", (namespace, meta["name"]))}
        writes = []
        for want in desired:
            name, digest = want["name"], want["hash"]
            current = existing.pop(name, None)
            pending = self._pending.get((namespace, name))
            if current is not None and current["hash"] == pending:
                self._pending.pop((namespace, name), None)  # the watch brought our write back
            elif pending == digest and (current is None or current["resourceVersion"] == self._pending_rv.get(
                    (namespace, name))):
                continue  # written a moment ago; the watch has not brought it back yet
            if current is not None and current["hash"] == digest and \
                    all(current["fields"].get(k) == want["spec"].get(k) for k in CRONJOB_FIELDS):
                continue
            writes.append((want, current))
        return writes, existing

    async def apply(self, body: dict, desired: list[dict]) -> str | None:
        """Create, replace or delete CronJobs until they are ``desired``; the error text, if any."""
        meta = body["metadata"]
        uid = meta.get("uid")
        writes, leftovers = self._cronjob_changes(body, desired)
        if not writes and not any(uid in f["owners"] for f in leftovers.values()):
            return None
        async with self._writers:
            # looked at again: the watch may have brought news while this waited its turn
            writes, leftovers = self._cronjob_changes(body, desired)
            return await self._write_cronjobs(body, writes, leftovers)

    async def _write_cronjobs(self, body: dict, writes: list[tuple], leftovers: dict) -> str | None:
        meta = body["metadata"]
        namespace, uid = meta.get("namespace", ""), meta.get("uid")
        errors = []
        rendered: dict[str, dict] = {}
        for want, current in writes:
            name, digest = want["name"], want["hash"]
            if not rendered:
                rendered = {m["metadata"]["name"]: m for m in backup.plan(body, self.ctl.objects.facts(body))}
            manifest = rendered[name]
            written, replaced = await write_owned(self.kube, CRONJOBS, namespace, manifest, current, uid, errors)
            if written:
                self._pending[(namespace, name)] = digest
            if replaced is not None:
                self._pending_rv[(namespace, name)] = replaced
        # what is left: a schedule kind left the spec
        await delete_owned(self.kube, CRONJOBS, namespace, leftovers, uid, errors)
        return "; ".join(errors) or None

    # ---- the shipping Deployment -----------------------------------------------------------------

    async def apply_shipping(self, body: dict, spec: BackupPolicySpec, plan_error) -> str | None:
        """A continuous policy's shipping Deployment (lifeline.controllers.backup_continuous)."""
        key = (body["metadata"].get("namespace", ""), body["metadata"]["name"])
        if not room_of(spec).ships_segments and not self.ctl.stores.of_policy("backup_deployments", key):
            return None
        try:
            desired = [] if plan_error is not None else continuous.plan(body, self.ctl.facts)
        except (ValidationError, backup.PlanError):
            desired = []  # the CronJob plan said the same (plan_error), or says it on the next round
        return await self.ctl.shipping.apply(body, desired)

    # ---- backup now --------------------------------------------------------------------------------

    async def backup_now(self, body: dict) -> str | None:
        """Start the Job a new ``backup-now`` annotation asks for; the value handled (None: unchanged)."""
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        request = annotations.get(backup.ANN_BACKUP_NOW)
        handled = (body.get("status") or {}).get("backupNowHandled")
        if not request or request == handled:
            return None
        namespace = meta.get("namespace", "")
        if any(j.get("backupNow") == request for j in self.ctl.stores.of_policy("backup_jobs",
                                                                                  (namespace, meta["name"]))):
            return request
        now = rfc3339(self.ctl.ctx.clock.now())
        try:
            job = backup.on_demand_job(body, self.ctl.objects.facts(body), request,
                                       annotations.get(backup.ANN_BACKUP_NOW_TYPE) or "incremental")
            await self.kube.create(JOBS, namespace, job)
        except backup.PlanError as exc:
            await self.kube.emit_event(ObjectRef.of(body), "Warning", exc.reason, exc.message, now)
            return request  # a bad request is handled: it will not get better by retrying
        except KubeError as exc:
            if exc.status != 409:  # 409: started before, its status write was lost
                await self.kube.emit_event(ObjectRef.of(body), "Warning", "BackupNowFailed",
                                           f"could not start the backup asked for by {backup.ANN_BACKUP_NOW}="
                                           f"{request}: {exc}", now)
                return None
        await self.kube.emit_event(ObjectRef.of(body), "Normal", "BackupNowStarted",
                                   f"Job {job['metadata']['name']} started for {backup.ANN_BACKUP_NOW}={request}", now)
        return request
