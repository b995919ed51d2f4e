"""BackupPolicy and RecoveryPoint: schedules into CronJobs, finished Jobs into the catalogue.

Thin, level-triggered, and the one writer of both kinds' status:

- every event about a policy, one of its CronJobs, Jobs or RecoveryPoints, and a
  timer, ends in :meth:`BackupController.reconcile`: the planners
  (:mod:`lifeline.planning.backup`, :mod:`~lifeline.planning.backup_status`) say what
  the CronJobs and the status should be, and only the difference is written, so a
  resync of unchanged policies writes nothing;
- what exists is read from in-memory stores (policies, CronJobs, Jobs and
  RecoveryPoints: one LIST each at start-up, then the watch events), so a reconcile
  that changes nothing makes no API request at all; the PVCs and Secrets a policy
  names are looked up with GET and trusted for ``facts_ttl`` seconds (only a
  Secret's key names are kept, never its values);
- a finished Job is recorded once: its pod's termination message (the agent's
  summary) becomes a RecoveryPoint, Events and metrics, and the outcome is stored
  on the Job (``dr.lifeline.io/recorded`` / ``dr.lifeline.io/result``) so that the
  status can be planned from the Jobs alone, after a restart too;
- a ``dr.lifeline.io/backup-now`` annotation with a new value starts one Job;
- RPOs are re-planned every ``rpo_check_interval`` seconds against the injected clock.
"""
from __future__ import annotations

import asyncio
import copy
import fnmatch
import json
import logging
import os
import time
from collections import defaultdict

import kopf
from pydantic import ValidationError

from lifeline import GROUP, VERSION
from lifeline.api import BY_KIND
from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.validation import problems_in_spec
from lifeline.clock import rfc3339
from lifeline.controllers.backup_continuous import ShippingDeployments, deployment_fact
from lifeline.controllers.backup_snapshots import ACTOR, SnapshotPipelines
from lifeline.controllers.common import delete_owned, pinned_vault_env, replace_current, stop_ticker, vault_env
from lifeline.observability import audit
from lifeline.kube import KubeError, ObjectRef
from lifeline.planning import backup, backup_points, backup_status, continuous
from lifeline.planning.backup_status import Ref

log = logging.getLogger(__name__)

OWNS = ("BackupPolicy", "RecoveryPoint")
POLICY = BY_KIND["BackupPolicy"]
POINT = BY_KIND["RecoveryPoint"]
PRESENT = {backup.LABEL_POLICY: kopf.PRESENT}


def _plain(body) -> dict:
    return copy.deepcopy(dict(body))


# kubectl's copy of what was last applied: a second copy of the spec, never read here
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _kept_policy(body) -> dict:
    """What the store keeps of a policy: the object as served, less the bookkeeping nothing here reads
    (``metadata.managedFields`` and kubectl's last-applied copy of the spec), which is a third of a
    policy's memory."""
    obj = dict(body)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
    obj["metadata"] = meta
    return copy.deepcopy(obj)


def _policy_of(body) -> str | None:
    meta = body.get("metadata") or {}
    return (meta.get("annotations") or {}).get(backup.ANN_POLICY) or (meta.get("labels") or {}).get(backup.LABEL_POLICY)


def _rv(obj: dict | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque on some servers: treat as unknown
        return 0


# Policies writing CronJobs at once (see BackupController._writers).
WRITERS = 32

# What is compared besides the spec hash, to put right a CronJob someone edited by hand (other
# fields are compared by the hash only: a real API server adds defaults to the pod template).
CRONJOB_FIELDS = ("schedule", "suspend", "timeZone", "concurrencyPolicy")


# Vault settings the operator passes on to Jobs whose key is in Vault: never a secret (tokens come
# from the pod's service account through Kubernetes auth, or a Secret the user mounts).
def cronjob_fact(body) -> dict:
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    return {
        "name": meta.get("name"), "resourceVersion": meta.get("resourceVersion"),
        "hash": (meta.get("annotations") or {}).get(backup.ANN_HASH),
        "owners": [r.get("uid") for r in meta.get("ownerReferences") or []],
        "fields": {k: spec.get(k) for k in CRONJOB_FIELDS},
    }


class RefCache:
    """PVC and Secret lookups, trusted for ``ttl`` seconds (monotonic time: this is about staleness)."""

    def __init__(self, kube, ttl: float):
        self.kube, self.ttl = kube, ttl
        self._seen: dict[tuple[str, str], tuple[float, Ref]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}

    async def _lookup(self, namespace: str, ref: str) -> Ref:
        kind, name = ref.split("/", 1)
        try:
            if kind == "pvc":
                found = await self.kube.get_object("v1", "persistentvolumeclaims", namespace, name)
                return Ref(found is not None)
            if kind == "vsclass":  # cluster-scoped
                found = await self.kube.get_object("snapshot.storage.k8s.io/v1", "volumesnapshotclasses", None, name)
                return Ref(found is not None)
            keys = await self.kube.secret_keys(namespace, name)
            return Ref(keys is not None, frozenset(keys or ()))
        except KubeError as exc:
            return Ref(None, error=str(exc))

    async def _fetch(self, namespace: str, ref: str, started: float) -> Ref:
        key = (namespace, ref)
        task = self._inflight.get(key)
        if task is None:  # many policies naming the same Secret share one lookup
            task = self._inflight[key] = asyncio.ensure_future(self._lookup(namespace, ref))
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        found = await asyncio.shield(task)
        seen = self._seen.get(key)
        if seen is None or seen[0] <= started:
            self._seen[key] = (started, found)
        return found

    async def get(self, namespace: str, refs: list[str], newer_than: float = 0.0) -> dict[str, Ref]:
        """The refs' facts, looked up again when older than ``ttl`` or than ``newer_than`` (monotonic)."""
        now = time.monotonic()
        out, todo = {}, []
        for ref in refs:
            seen = self._seen.get((namespace, ref))
            if seen and seen[0] >= newer_than and now - seen[0] < self.ttl and seen[1].exists is not None:
                out[ref] = seen[1]
            else:
                todo.append(ref)
        for ref, found in zip(todo, await asyncio.gather(*(self._fetch(namespace, r, now) for r in todo))):
            out[ref] = found
        return out


class Store:
    """What the watches said about one kind, grouped by policy: ``(namespace, policy) -> {id: fact}``.

    Filled by one LIST when the operator starts and kept current by the watch events, so a
    reconcile reads it instead of the API. (kopf's own indices would do the same, but their
    start-up barrier costs O(objects^2): minutes at a few thousand CronJobs.)
    """

    def __init__(self, group_of, id_of, fact_of):
        self.group_of, self.id_of, self.fact_of = group_of, id_of, fact_of
        self._groups: dict[tuple, dict] = {}

    def put(self, body) -> None:
        group = self.group_of(body)
        if group[1] is None:
            return
        self._groups.setdefault(group, {})[self.id_of(body)] = self.fact_of(body)

    def remove(self, body) -> None:
        group = self._groups.get(self.group_of(body))
        if group is not None:
            group.pop(self.id_of(body), None)
            if not group:
                self._groups.pop(self.group_of(body), None)

    def clear(self) -> None:
        self._groups.clear()

    def values(self, group: tuple) -> list:
        return list((self._groups.get(group) or {}).values())

    def groups(self) -> list[tuple]:
        return list(self._groups)

    def __len__(self) -> int:
        return sum(len(g) for g in self._groups.values())


def _ns(body) -> str:
    return (body.get("metadata") or {}).get("namespace", "")


def _name(body) -> str:
    return (body.get("metadata") or {}).get("name", "")


def _uid(body) -> str:
    return (body.get("metadata") or {}).get("uid", "")


class BackupController:
    def __init__(self, ctx):
        self.ctx = ctx
        self.kube = ctx.kube
        self.facts = backup.Facts(ctx.options.agent_image, vault_env=vault_env())
        self._key_checks: dict[str, asyncio.Future] = {}
        self.refs = RefCache(ctx.kube, ctx.options.facts_ttl)
        self.locks: dict[tuple, asyncio.Lock] = defaultdict(asyncio.Lock)
        # (ns, name) -> None while a reconcile of the policy runs; True/False once another round is asked
        # for meanwhile (True: one that puts the children right too)
        self._rounds: dict[tuple, bool | None] = {}
        # Policies rendering and writing CronJobs at once: enough to keep the threads the API calls run
        # on busy (asyncio's default executor: min(32, CPUs + 4)) while the event loop is busy too. With
        # no bound, every policy that arrives renders its manifests (~17 KiB each, parsed) at once, to
        # wait in the executor's queue: 3,000 of them when 1,000 policies are applied together.
        self._writers = asyncio.Semaphore(WRITERS)
        self.stores = {
            "backup_policies": Store(lambda b: (_ns(b), _name(b)), lambda b: 0, _kept_policy),
            "backup_cronjobs": Store(lambda b: (_ns(b), _policy_of(b)), _name, cronjob_fact),
            "backup_jobs": Store(lambda b: (_ns(b), _policy_of(b)), _uid, backup_points.job_fact),
            "backup_points": Store(lambda b: (_ns(b), (b.get("spec") or {}).get("policyName")), _name,
                                   backup_points.point_fact),
            "backup_deployments": Store(lambda b: (_ns(b), _policy_of(b)), _name, deployment_fact),
        }
        self.synced = asyncio.Event()
        self.ticker: asyncio.Task | None = None
        self.recording: set[str] = set()
        # uids of Jobs recorded by this process, oldest first, with what was recorded (the annotations'
        # values) until the watch brings the Job back with them
        self.recorded: dict[str, tuple[str, dict] | None] = {}
        self._children: dict[tuple, object] = {}  # (uid, generation) -> manifests | PlanError | ValidationError
        self._applied: dict[tuple, tuple] = {}  # (ns, name) -> (cron jobs, apply error, plan error)
        self._written: dict[tuple, dict] = {}  # (ns, name) -> the policy as our last status write returned it
        self._looked_up: dict[tuple, tuple] = {}  # (ns, name) -> (generation, when it was first seen)
        # CronJobs written but not yet seen back through the watch: (ns, name) -> spec hash, and
        # the resourceVersion a replace started from (a newer one means the watch caught up)
        self._pending: dict[tuple, str] = {}
        self._pending_rv: dict[tuple, str] = {}
        self.snapshots = SnapshotPipelines(self)
        self.shipping = ShippingDeployments(self)  # continuous sources: the shipper and what it shipped

    # ---- what exists ------------------------------------------------------------------------

    # what the stores are filled from: (store, apiVersion, plural, label selector)
    SOURCES = (
        ("backup_policies", f"{GROUP}/{VERSION}", "backuppolicies", None),
        ("backup_cronjobs", "batch/v1", "cronjobs", backup.LABEL_POLICY),
        ("backup_jobs", "batch/v1", "jobs", backup.LABEL_POLICY),
        ("backup_points", f"{GROUP}/{VERSION}", "recoverypoints", None),
        ("backup_deployments", "apps/v1", "deployments", backup.LABEL_POLICY),
    )

    async def prime(self) -> None:
        """One LIST per kind, before any watch event is handled (so a restart sees everything).

        Page by page, each object reduced to what its store keeps before the next page is read: the
        whole list of a kind (3,000 CronJobs: ~90 MiB parsed) is never held at once.
        """
        namespaces = self.ctx.options.namespaces or [None]
        exact = all(ns and not any(c in ns for c in "*?[!") for ns in namespaces)
        patterns = [] if exact else self.ctx.options.namespaces
        for store, api_version, plural, selector in self.SOURCES:
            self.stores[store].clear()  # a retry starts over
            for ns in (namespaces if exact else [None]):
                async for page in self.kube.list_pages(api_version, plural, ns, selector):
                    for item in page:
                        if not patterns or any(fnmatch.fnmatch(_ns(item), pat) for pat in patterns):
                            self.stores[store].put(item)
                    del page
        self.synced.set()

    def _values(self, store: str, key: tuple) -> list:
        return self.stores[store].values(key)

    def policy(self, namespace: str, name: str) -> dict | None:
        found = self._values("backup_policies", (namespace, name))
        body = found[0] if found else None
        written = self._written.get((namespace, name))
        if body is not None and written is not None:
            if _rv(written) > _rv(body) and written["metadata"].get("uid") == body["metadata"].get("uid"):
                body = dict(body, status=written.get("status"))  # the watch has not brought our write back yet
            else:
                self._written.pop((namespace, name), None)
        return body

    # ---- metrics ---------------------------------------------------------------------------

    def _policy_labels(self, body: dict) -> tuple[str, str, str]:
        meta = body["metadata"]
        return meta.get("namespace", ""), meta["name"], str((body.get("spec") or {}).get("tier", ""))

    def forget(self, namespace: str, name: str) -> None:
        self.ctx.metrics.forget("BackupPolicy", namespace, name)
        for store in (self._applied, self._written, self._looked_up):
            store.pop((namespace, name), None)
        self.shipping.forget(namespace, name)

    # ---- the reconcile ---------------------------------------------------------------------

    def _parsed(self, body: dict):
        """``(desired CronJobs | PlanError | ValidationError, spec or None, problems)``, once per generation."""
        meta = body["metadata"]
        key = (meta.get("uid"), meta.get("generation"), meta["name"], meta.get("namespace"))
        if key not in self._children:
            _, problems = problems_in_spec(POLICY, body.get("spec"))
            spec = None if problems else BackupPolicySpec.model_validate(body["spec"])
            try:
                # Only what tells a CronJob apart is kept; the manifests are rendered again to write one.
                desired = [{"name": m["metadata"]["name"], "hash": m["metadata"]["annotations"][backup.ANN_HASH],
                            "spec": {k: m["spec"].get(k) for k in CRONJOB_FIELDS}}
                           for m in backup.plan(body, self.facts)]
            except (ValidationError, backup.PlanError) as exc:
                desired = exc
            self._children[key] = (desired, spec, problems)
            if len(self._children) > 20000:
                self._children.pop(next(iter(self._children)))
        return self._children[key]

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
        desired, spec, problems = self._parsed(body)
        inputs = backup_status.Inputs(now=now, spec=spec, problems=problems)
        if spec is not None and not isinstance(desired, ValidationError):
            # A new generation (a new policy, or a changed spec) looks its references up again; other
            # policies' lookups made since this round began count (many policies share a Secret, and
            # a round may wait its turn to write CronJobs while others look the Secret up).
            seen = self._looked_up.get(key)
            if seen is None or seen[0] != meta.get("generation"):
                seen = self._looked_up[key] = (meta.get("generation"), time.monotonic())
            if children or key not in self._applied:
                plan_error = desired if isinstance(desired, backup.PlanError) else None
                manifests = [] if plan_error else desired
                apply_error = await self._apply(body, manifests)
                ship_error = await self._apply_shipping(body, spec, plan_error)
                apply_error = "; ".join(e for e in (apply_error, ship_error) if e) or None
                cron_jobs = [(m["name"], m["spec"]["schedule"]) for m in manifests]
                self._applied[key] = (cron_jobs, apply_error, plan_error)
                inputs.backup_now_handled = await self._backup_now(body)
                await self.sync_owners(body, self._values("backup_points", key))
            inputs.cron_jobs, inputs.apply_error, inputs.plan_error = self._applied[key]
            inputs.refs = await self.refs.get(namespace, backup_status.required_refs(spec), newer_than=seen[1])
            inputs.jobs = self._values("backup_jobs", key)
            inputs.points = self._values("backup_points", key)
            inputs.key_check = await self.key_check(spec.encryption.key_ref)
            if spec.source.continuous is not None and not spec.suspend:
                inputs.shipped = await self.shipping.shipped(body)
        plan = backup_status.plan_status(body, inputs)
        self._observe(body, plan)
        if plan.patch is None:
            self.ctx.metrics.reconciles.labels("BackupPolicy", "unchanged").inc()
            return
        written = await self.kube.patch_status(POLICY, namespace, name, plan.patch)
        if isinstance(written, dict):  # kept until the watch brings the write back (see policy())
            self._written[key] = {"metadata": {k: written["metadata"].get(k) for k in ("uid", "resourceVersion")},
                                  "status": written.get("status")}
        self.ctx.metrics.reconciles.labels("BackupPolicy", "written").inc()
        stamp = rfc3339(now)
        for ev in plan.events:
            await self.kube.emit_event(ObjectRef.of(body), ev.type, ev.reason, ev.message, stamp)

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
            from lifeline.keys import health

            # pinned: the operator's own Vault settings and credentials, whatever the reference says
            task = self._key_checks[ref] = asyncio.ensure_future(
                asyncio.to_thread(health.check, ref, env=pinned_vault_env()))
            task.add_done_callback(lambda _: self._key_checks.pop(ref, None))
        try:
            return await asyncio.shield(task)
        except Exception as exc:  # noqa: BLE001 - a check that breaks says so, it does not stop the reconcile
            return ("Unknown", "CheckFailed", f"checking {ref} failed: {exc}")

    def _observe(self, body: dict, plan) -> None:
        labels = self._policy_labels(body)
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

    def _cronjob_changes(self, body: dict, desired: list[dict]) -> tuple[list[tuple], dict]:
        """The CronJobs to write, as (wanted, current fact or None), and those left over (name -> fact)."""
        meta = body["metadata"]
        namespace = meta.get("namespace", "")
        existing = {f["name"]: f for f in self._values("backup_cronjobs", (namespace, meta["name"]))}
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

    async def _apply(self, body: dict, desired: list[dict]) -> str | None:
        """Create, replace or delete CronJobs until they are ``desired``; the error text, if any."""
        meta = body["metadata"]
        namespace, uid = meta.get("namespace", ""), meta.get("uid")
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
                rendered = {m["metadata"]["name"]: m for m in backup.plan(body, self.facts)}
            manifest = rendered[name]
            try:
                if current is None:
                    await self._create_cronjob(namespace, manifest, uid)
                else:
                    self._pending_rv[(namespace, name)] = await replace_current(
                        self.kube, "batch/v1", "cronjobs", namespace, name, manifest, current)
                self._pending[(namespace, name)] = digest
            except KubeError as exc:
                if exc.status == 409:  # someone wrote in between: the next event brings it, and we retry
                    continue
                errors.append(f"CronJob {name}: {exc}")
        # what is left: a schedule kind left the spec
        await delete_owned(self.kube, "batch/v1", "cronjobs", "CronJob", namespace, leftovers, uid, errors)
        return "; ".join(errors) or None

    async def _apply_shipping(self, body: dict, spec: BackupPolicySpec, plan_error) -> str | None:
        """A continuous policy's shipping Deployment (lifeline.controllers.backup_continuous)."""
        key = (body["metadata"].get("namespace", ""), body["metadata"]["name"])
        if spec.source.continuous is None and not self._values("backup_deployments", key):
            return None
        try:
            desired = [] if plan_error is not None else continuous.plan(body, self.facts)
        except (ValidationError, backup.PlanError):
            desired = []  # the CronJob plan said the same (plan_error), or says it on the next round
        return await self.shipping.apply(body, desired)

    async def _create_cronjob(self, namespace: str, manifest: dict, uid: str) -> None:
        name = manifest["metadata"]["name"]
        try:
            await self.kube.create_object("batch/v1", "cronjobs", namespace, manifest)
        except KubeError as exc:
            if exc.status != 409:
                raise
            found = await self.kube.get_object("batch/v1", "cronjobs", namespace, name)
            owners = [r.get("uid") for r in ((found or {}).get("metadata") or {}).get("ownerReferences") or []]
            if found is not None and uid not in owners:
                raise KubeError(f"a CronJob named {name} already exists and does not belong to this policy: "
                                "rename or delete it") from None

    async def _backup_now(self, body: dict) -> str | None:
        """Start the Job a new ``backup-now`` annotation asks for; the value handled (None: unchanged)."""
        meta = body["metadata"]
        annotations = meta.get("annotations") or {}
        request = annotations.get(backup.ANN_BACKUP_NOW)
        handled = (body.get("status") or {}).get("backupNowHandled")
        if not request or request == handled:
            return None
        namespace = meta.get("namespace", "")
        if any(j.get("backupNow") == request for j in self._values("backup_jobs", (namespace, meta["name"]))):
            return request
        now = rfc3339(self.ctx.clock.now())
        try:
            job = backup.on_demand_job(body, self.facts, request,
                                       annotations.get(backup.ANN_BACKUP_NOW_TYPE) or "incremental")
            await self.kube.create_object("batch/v1", "jobs", namespace, job)
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

    # ---- finished Jobs -----------------------------------------------------------------------

    async def record(self, job: dict) -> None:
        """Turn a finished Job into its RecoveryPoint, Events and metrics, once."""
        if job["phase"] == "Running" or job.get("recorded") or job["uid"] in self.recording \
                or job["uid"] in self.recorded or job["operation"] == "trigger":
            return  # (a snapshot trigger is recorded by its pipeline)
        self.recording.add(job["uid"])
        try:
            # until the watch brings the Job back with its annotation, remember it here
            self.recorded[job["uid"]] = await self._record(job)
            if len(self.recorded) > 10000:
                self.recorded.pop(next(iter(self.recorded)))
        except KubeError as exc:
            log.warning("recording Job %s/%s: %s (retried on the next event or tick)",
                        job["namespace"], job["name"], exc)
        finally:
            self.recording.discard(job["uid"])

    async def _pods(self, job: dict) -> list[dict]:
        for label in backup_points.JOB_UID_LABELS:
            pods = await self.kube.list_objects("v1", "pods", job["namespace"], f"{label}={job['uid']}")
            if pods:
                return pods
        return []

    async def _record(self, job: dict) -> tuple[str, dict] | None:
        """Record a finished Job; what its annotations now say (None: its policy is gone)."""
        namespace, policy = job["namespace"], job["policy"]
        body = self.policy(namespace, policy)
        if body is None:
            return None  # the policy is gone; its Jobs go with it
        summary, report = backup_points.pod_report(await self._pods(job))
        now = rfc3339(self.ctx.clock.now())
        ref = ObjectRef.of(body)
        tier = str(body["spec"].get("tier", ""))
        labels = (namespace, policy, tier)
        m = self.ctx.metrics
        point = None
        if job["operation"] == "prune":
            await self._record_prune(job, body, summary, report, now)
        elif job["phase"] == "Succeeded" and summary and summary.get("ok"):
            point = await self._create_point(job, body, summary)
            for c in summary["ok"]:
                m.backup_last_success.labels(*labels, c["d"]).set(backup_points.parse_time(c["e"]).timestamp())
                if c.get("dur") is not None:
                    m.backup_duration.labels(*labels, c["d"], c["t"]).observe(float(c["dur"]))
                m.backup_bytes.labels(*labels, c["d"]).inc(int(c.get("stored") or 0))
            m.backup_source_bytes.labels(*labels).inc(int(summary.get("size") or 0))
            stored = ", ".join(c["d"] for c in summary["ok"])
            self.audit_backup(job, body, "succeeded", point, summary)
            await self.kube.emit_event(ref, "Normal", "BackupSucceeded",
                                       f"{summary['ok'][0]['t']} backup recorded as RecoveryPoint {point}, stored at "
                                       f"{stored} ({summary.get('size', 0)} bytes read)", now)
            for f in summary.get("failed") or []:
                m.backup_failures.labels(*labels, f["d"], "DestinationFailed").inc()
                await self.kube.emit_event(ref, "Warning", "DestinationFailed",
                                           f"backup {point} could not be stored at {f['d']}: {f.get('error')}; "
                                           f"it is stored at {stored}", now)
        else:
            failed = (summary or {}).get("failed") or []
            for f in failed:
                m.backup_failures.labels(*labels, f["d"], "BackupFailed").inc()
            if not failed:
                m.backup_failures.labels(*labels, "", job.get("reason") or "BackupFailed").inc()
            why = (summary or {}).get("error") or "; ".join(f"{f['d']}: {f.get('error')}" for f in failed) or \
                job.get("failMessage") or ("the Job succeeded but left no summary" if job["phase"] == "Succeeded"
                                           else "")
            self.audit_backup(job, body, "failed", None, summary, why)
            await self.kube.emit_event(ref, "Warning", "BackupFailed",
                                       f"{job.get('type') or ''} backup Job {job['name']} failed: {why} ({report})"
                                       .replace("  ", " "), now)
        result = backup_points.result_of(job, summary, report, point)
        if job["phase"] == "Succeeded" and job["operation"] == "backup" and not point:
            result["o"] = "Failed"
        await self.kube.patch_object("batch/v1", "jobs", namespace, job["name"], {"metadata": {"annotations": {
            backup.ANN_RECORDED: point or result["o"],
            backup.ANN_RESULT: json.dumps(result, separators=(",", ":"), sort_keys=True)}}})
        return point or result["o"], result

    async def _create_point(self, job: dict, body: dict, summary: dict) -> str:
        namespace, policy = job["namespace"], job["policy"]
        points = self._values("backup_points", (namespace, policy))
        mine = [p for p in points if p.get("jobUid") == job["uid"]]
        if mine:
            return mine[0]["name"]
        first = summary["ok"][0]
        parent = next((p["name"] for p in points if first.get("p") and (first["d"], first["p"]) in
                       [tuple(c) for c in p["copies"]]), None)
        retain = (body.get("spec") or {}).get("deletionPolicy", "Retain") not in ("Delete", "Shred")
        taken = {p["name"] for p in points}
        start = backup_points.parse_time(summary["start"])
        for _ in range(3):
            name = backup_points.point_name(policy, start, taken, first["t"])
            rp = backup_points.recovery_point(body, job, summary, name, parent, retain)
            try:
                await self.kube.create(POINT, namespace, rp)
                return name
            except KubeError as exc:
                if exc.status != 409:
                    raise
                found = await self.kube.get_object(POINT.api_version, POINT.plural, namespace, name)
                if ((found or {}).get("metadata", {}).get("annotations") or {}).get(
                        backup_points.ANN_JOB_UID) == job["uid"]:
                    return name
                taken.add(name)
        raise KubeError(f"no free RecoveryPoint name for Job {job['name']}", 409)

    async def _record_prune(self, job: dict, body: dict, summary: dict | None, report: str, now: str) -> None:
        ref = ObjectRef.of(body)
        namespace, policy = job["namespace"], job["policy"]
        failed = (summary or {}).get("failed") or []
        if summary is None or failed or job["phase"] != "Succeeded":
            why = "; ".join(f"{f['d']}: {f.get('error')}" for f in failed) or report
            tier = str(body["spec"].get("tier", ""))
            for f in failed or [{"d": ""}]:
                self.ctx.metrics.backup_failures.labels(namespace, policy, tier, f["d"], "PruneFailed").inc()
            await self.kube.emit_event(ref, "Warning", "PruneFailed", f"prune Job {job['name']}: {why}", now)
        if summary:
            points = self._values("backup_points", (namespace, policy))
            for name in backup_points.pruned_points(points, summary.get("forgot") or {}):
                await self.reconcile_point(namespace, name, pruned=True)

    # ---- RecoveryPoints ------------------------------------------------------------------------

    async def reconcile_point(self, namespace: str, name: str, body: dict | None = None,
                              pruned: bool = False) -> None:
        async with self.locks[("rp", namespace, name)]:
            if body is None:
                body = await self.kube.get_object(POINT.api_version, POINT.plural, namespace, name)
                if body is None:
                    return
            now = rfc3339(self.ctx.clock.now())
            patch, event = backup_points.plan_point_status(body, now, pruned)
            if patch is None:
                self.ctx.metrics.reconciles.labels("RecoveryPoint", "unchanged").inc()
                return
            try:
                await self.kube.patch_status(POINT, namespace, name, patch)
            except KubeError as exc:
                self.ctx.metrics.reconciles.labels("RecoveryPoint", "error").inc()
                if exc.status != 404:
                    log.warning("RecoveryPoint %s/%s: %s", namespace, name, exc)
                return
            self.ctx.metrics.reconciles.labels("RecoveryPoint", "written").inc()
            if event is not None:
                await self.kube.emit_event(ObjectRef.of(body), event.type, event.reason, event.message, now)

    async def sync_owners(self, policy: dict, points: list[dict]) -> None:
        """Owner references of points follow their policy's deletionPolicy (Delete: owned, so collected)."""
        uid = policy["metadata"].get("uid")
        want = (policy.get("spec") or {}).get("deletionPolicy", "Retain") in ("Delete", "Shred")  # Shred: finalizer
        for point in points:
            refs = point.get("ownerReferences") or []
            if want == any(r.get("uid") == uid for r in refs):
                continue
            new = [r for r in refs if r.get("uid") != uid]
            if want:
                new.append({**backup.owner_reference(policy), "controller": False})
            try:
                await self.kube.patch_metadata(POINT, point["namespace"], point["name"], {"ownerReferences": new})
            except KubeError as exc:
                if exc.status != 404:
                    log.warning("RecoveryPoint %s/%s: %s", point["namespace"], point["name"], exc)

    # ---- audit ---------------------------------------------------------------------------------

    def audit_deletion(self, body) -> None:
        """A policy or a point is gone (seen by the watch: who deleted it is in the API server's audit log)."""
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        kind = body.get("kind") or "BackupPolicy"
        if kind == "BackupPolicy":
            policy = spec.get("deletionPolicy", "Retain")
            details = {"deletionPolicy": policy,
                       "recoveryPoints": "deleted with the policy (owner references)" if policy == "Delete"
                       else "retained", "repositoryData": "retained (see docs/backup.md, deletionPolicy)"}
        else:
            details = {"policy": spec.get("policyName"), "type": spec.get("type"),
                       "phase": (body.get("status") or {}).get("phase"),
                       "copies": [c.get("destination") for c in spec.get("copies") or []]}
        audit.record("deletion", actor=ACTOR, outcome="succeeded",
                     subject={"kind": kind, "namespace": meta.get("namespace", ""), "name": meta.get("name", ""),
                              "uid": meta.get("uid", "")},
                     details=details, when=self.ctx.clock.now())

    def audit_backup(self, job: dict, body: dict, outcome: str, point: str | None, summary: dict | None,
                     why: str = "") -> None:
        details = {"job": job["name"], "type": job.get("type"), "trigger": job.get("trigger"),
                   "recoveryPoint": point,
                   "storedAt": [c["d"] for c in (summary or {}).get("ok") or []],
                   "failedAt": [f["d"] for f in (summary or {}).get("failed") or []]}
        if why:
            details["message"] = why[:500]
        if job.get("triggerJob"):
            details["volumeSnapshot"] = job["triggerJob"]
        audit.record("backup", actor=ACTOR, outcome=outcome,
                     subject={"kind": "BackupPolicy", "namespace": job["namespace"], "name": job["policy"],
                              "uid": body["metadata"].get("uid", "")},
                     details=details, when=self.ctx.clock.now())

    # ---- the timer -------------------------------------------------------------------------------

    async def tick_forever(self) -> None:
        await self.synced.wait()
        interval = max(0.05, float(self.ctx.options.rpo_check_interval))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the timer must survive one bad round
                log.exception("backup timer round failed")

    async def tick(self) -> None:
        for key in self.stores["backup_jobs"].groups():
            for job in self._values("backup_jobs", key):
                if job["operation"] == "trigger" and not job.get("recorded"):
                    await self.snapshots.advance(job)
                elif job["phase"] != "Running" and not job.get("recorded"):
                    await self.record(job)
        for namespace, name in self.stores["backup_policies"].groups():
            await self.reconcile(namespace, name, children=False)


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    controller = BackupController(ctx)

    @kopf.on.startup(registry=registry, id="backup-start")
    async def start(logger, **_):
        for attempt in range(1, 31):
            try:
                await controller.prime()
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
            controller.audit_deletion(body)
            return
        controller.stores["backup_policies"].put(body)
        await controller.reconcile(namespace, name)

    async def child_changed(store_name: str, event, body, namespace) -> None:
        """A policy's CronJob or Deployment changed (or went): cache it, and put the policy's children right."""
        store = controller.stores[store_name]
        store.remove(body) if event.get("type") == "DELETED" else store.put(body)
        policy = _policy_of(body)
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
        await controller.record(job)
        trigger = job if job["operation"] == "trigger" else controller.snapshots.trigger_of(job)
        if trigger is not None:
            await controller.snapshots.advance(trigger)
        if job["policy"] and controller.policy(namespace, job["policy"]) is not None:
            await controller.reconcile(namespace, job["policy"], children=False)

    @kopf.on.event("apps", "v1", "deployments", labels=PRESENT, registry=registry, id="backup-deployment")
    async def on_deployment(event, body, namespace, **_):
        await child_changed("backup_deployments", event, body, namespace)

    @kopf.on.event(GROUP, VERSION, "recoverypoints", registry=registry, id="backup-recoverypoint")
    async def on_point(event, body, namespace, name, **_):
        store = controller.stores["backup_points"]
        store.remove(body) if event.get("type") == "DELETED" else store.put(body)
        policy = (body.get("spec") or {}).get("policyName")
        if event.get("type") != "DELETED" and not (body.get("metadata") or {}).get("deletionTimestamp"):
            plain = _plain(body)
            await controller.reconcile_point(namespace, name, plain)
            owner = controller.policy(namespace, policy) if policy else None
            if owner is not None:
                await controller.sync_owners(owner, [backup_points.point_fact(plain)])
        else:
            ctx.metrics.forget("RecoveryPoint", namespace, name)
            if event.get("type") == "DELETED":
                controller.audit_deletion(body)
        if policy and controller.policy(namespace, policy) is not None:
            await controller.reconcile(namespace, policy, children=False)
