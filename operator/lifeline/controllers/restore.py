"""Restore: approvals into status, then one restore Job, then the outcome. Thin.

Every event about a Restore or its Job ends in :meth:`RestoreController.reconcile`: the
pure phase machine (:func:`lifeline.planning.restore.plan`) says what the status should be
and what to do; this module reads the facts it needs (the Job and its pods' termination
messages, the target claim, the RecoveryPoint and its policy when the Job is to be
made), acts, writes the status only when it changed, and then posts the Events and audit
records of the transitions it wrote. The identities in the approvals come from the
admission webhook's annotations (:mod:`lifeline.webhooks.approvals`), never from here.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import defaultdict

import kopf
from pydantic import ValidationError

from lifeline.api import BACKUP_POLICY as POLICY, RECOVERY_POINT as POINT, RESTORE as INFO
from lifeline.clock import rfc3339
from lifeline.controllers.common import vault_env
from lifeline.controllers.common import job_end
from lifeline.kube import (JOBS, PERSISTENTVOLUMECLAIMS, PODS, ROLEBINDINGS, ROLES, SERVICEACCOUNTS, KubeError,
                          ObjectRef)
from lifeline.labels import LABEL_JOB_NAME
from lifeline.messages import RestoreSummary, read_summary
from lifeline.observability import audit
from lifeline.planning import (approval_policy, authority, backup, objects_writer, restore, restore_objects,
                               restore_run)
from lifeline.sources import room_of
from lifeline.sources.resources import selection
from lifeline.webhooks.seal_key import seal_key

log = logging.getLogger(__name__)
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)  # seconds before reconciling a Restore again after an API error

OWNS = ("Restore",)
OPERATOR = "lifeline-operator"


def _job_phase(job: dict) -> str:
    end = job_end(job)
    if end is not None:
        return "Succeeded" if end == "Complete" else "Failed"
    return "Running" if (job.get("status") or {}).get("startTime") else "Pending"


def _objects_status(summary: RestoreSummary) -> dict | None:
    """status.objects of an objects restore, from the agent's summary."""
    if summary.objects is None:
        return None
    out: dict = {"counts": dict(summary.objects)}
    if summary.object_failures:
        out["failures"] = [{"kind": f.kind, "name": f.name, "message": f.error} for f in summary.object_failures[:50]]
    if summary.claims_with_data:
        out["claimsWithData"] = list(summary.claims_with_data)
    return out


def _summary(pods: list[dict]) -> tuple[str, int | None, dict | None]:
    """The agent's (or the guard's) message, the bytes restored when it says so, and status.objects."""
    messages = []
    for pod in pods:
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("message"):
                messages.append((cs.get("name"), term.get("exitCode"), term["message"]))
    problems = []
    for name, _, text in messages:
        summary, problem = read_summary(text, RestoreSummary)
        if summary is not None:
            if summary.ok:
                return "restored", summary.bytes_restored, _objects_status(summary)
            return (f"{summary.reason or 'RestoreFailed'}: {summary.error or ''}".strip(), None,
                    _objects_status(summary))
        if problem:
            problems.append(f"{name}: {problem}")
    if problems:
        return "; ".join(problems), None, None
    failed = [f"{n} exited {c}: {t.strip()[-500:]}" for n, c, t in messages if c]
    return ("; ".join(failed), None, None)


class RestoreController:
    def __init__(self, ctx):
        self.ctx = ctx
        self.kube = ctx.kube
        self.facts = backup.Facts(ctx.options.agent_image, vault_env=vault_env())
        self.locks: dict[tuple, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._failures: dict[tuple, int] = {}
        self.policies = ctx.approval_policies
        self.tiers: dict[str, str | None] = {}  # Restore uid -> the tier of the backup it restores

    async def _approval_policy(self, body: dict, phase: str | None) -> approval_policy.ApprovalPolicy:
        """The admin's policy for this Restore: by its namespace, and by the tier of the backup it restores
        (looked up only when some policy names tiers; an unknown tier matches only tier-less policies).
        Once running or decided, the policy it was held to (its status names it) stays."""
        namespace = body["metadata"]["namespace"]
        if phase not in (None, restore.PENDING, restore.APPROVED):
            named = (body.get("status") or {}).get("approvalPolicy")
            kept = next((p for p in self.policies if p.name == named), None)
            if kept is not None or named == approval_policy.DEFAULT.name:
                return kept or approval_policy.DEFAULT
        uid = body["metadata"].get("uid", "")
        if approval_policy.needs_tier(self.policies) and uid not in self.tiers:
            # the spec is immutable: the point, its policy and their tier are looked up once per Restore
            point = await self.kube.get(POINT, namespace, body["spec"].get("recoveryPoint", ""), missing_ok=True)
            policy_name = ((point or {}).get("spec") or {}).get("policyName")
            policy = policy_name and await self.kube.get(POLICY, namespace, policy_name, missing_ok=True)
            if policy:  # not there (yet): asked again on the next reconcile
                self.tiers[uid] = (policy.get("spec") or {}).get("tier")
        return approval_policy.choose(self.policies, namespace, self.tiers.get(uid))

    async def _job(self, body: dict) -> restore.JobFacts | None:
        namespace = restore_run.job_namespace(body)
        name = restore_run.job_name(body["metadata"]["name"])
        job = await self.kube.get(JOBS, namespace, name, missing_ok=True)
        if job is None:
            return None
        phase = _job_phase(job)
        message, size, objects = "", None, None
        if phase in ("Succeeded", "Failed"):
            pods = await self.kube.list(PODS, namespace, f"{LABEL_JOB_NAME}={name}")
            message, size, objects = _summary(pods)
            if not message and phase == "Failed":
                conds = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"]
                message = (conds[0].get("message") if conds else "") or "the Job failed"
        status = job.get("status") or {}
        return restore.JobFacts(name, phase, message, status.get("startTime"), status.get("completionTime"), size,
                                objects)

    async def _claim(self, body: dict) -> dict | None:
        pvc = ((body.get("spec") or {}).get("target") or {}).get("pvc")
        if not pvc:
            return None
        return await self.kube.get(PERSISTENTVOLUMECLAIMS, restore_run.target_namespace(body), pvc["claimName"],
                                   missing_ok=True)

    async def _start(self, body: dict) -> tuple[str, str] | None:
        """Create the claim (NewClaim) and the Job; ``(reason, message)`` when it cannot start."""
        spec, namespace = body["spec"], body["metadata"]["namespace"]
        # another cluster's namespaces are its own: its RBAC judges the kubeconfig's identity there
        elsewhere = bool(((spec.get("target") or {}).get("objects") or {}).get("kubeconfigSecret"))
        outside = None if elsewhere else authority.outside_problem(
            "the restore target", namespace, restore_run.target_namespace(body), authority.allowed_pairs(os.environ))
        if outside:
            return "TargetNamespaceNotAllowed", outside
        point = await self.kube.get(POINT, namespace, spec["recoveryPoint"], missing_ok=True)
        if point is None:
            return "RecoveryPointNotFound", (f"RecoveryPoint {spec['recoveryPoint']} does not exist in {namespace}: "
                                             "create a new Restore naming an existing one (kubectl get recoverypoints)")
        policy_name = (point.get("spec") or {}).get("policyName", "")
        policy = await self.kube.get(POLICY, namespace, policy_name, missing_ok=True)
        if policy is None:
            return "PolicyNotFound", (f"BackupPolicy {policy_name}, which made {spec['recoveryPoint']}, is gone: its "
                                      "key reference and destinations are needed; restore by hand with "
                                      "`lifeline agent restore`")
        try:
            objects = await self._objects(body, point, policy) if restore_run.restores_objects(body) else None
            manifest = restore_run.job(body, point, policy, self.facts, objects)
        except backup.PlanError as exc:
            return exc.reason, exc.message
        except ValidationError as exc:
            return "InvalidPolicy", f"BackupPolicy {policy_name} is invalid: {exc.errors()[0]['msg']}"
        claim = restore_run.new_claim(body)
        if claim is not None and await self._claim(body) is None:
            await self.kube.create(PERSISTENTVOLUMECLAIMS, claim["metadata"]["namespace"], claim)
        try:
            await self.kube.create(JOBS, manifest["metadata"]["namespace"], manifest)
        except KubeError as exc:
            if exc.status != 409:  # 409: created before, the status write was lost
                raise
        return None

    async def _objects(self, body: dict, point: dict, policy: dict):
        """An objects restore's writer account (this cluster) and data Jobs; PlanError when it cannot be.

        The writer gets the kinds the policy selects now only when the requester was checked for each
        of them at creation (the sealed record: :func:`~lifeline.planning.objects_writer.writable`):
        otherwise the restore does not start (KindsNotChecked, SelectionChanged), and nothing is made."""
        spec = backup.parse_spec(policy)
        if room_of(spec).kind != "resources":
            return restore_objects.target(body, point, [], [], self.facts)  # the plan refuses it, with the reason
        namespace = body["metadata"]["namespace"]
        with_data = (body["spec"]["target"]["objects"] or {}).get("withData", True)
        policies = await self.kube.list(POLICY, namespace) if with_data else []
        points = await self.kube.list(POINT, namespace) if with_data else []
        target = restore_objects.target(body, point, policies, points, self.facts)
        if target.writer:
            try:
                served = await self.kube.discover()
            except KubeError as exc:
                raise backup.PlanError("Ready", "DiscoveryFailed",
                                       f"the kinds the API server serves could not be read: {exc}") from None
            chosen, _ = selection(spec.source.resources, served)
            # no more than the requester was checked for at creation (refused when the policy selects more now)
            annotations = body["metadata"].get("annotations") or {}
            sealed = restore.sealed(body, seal_key(self.ctx.options))
            checked = annotations.get(restore.ANN_CHECKED_KINDS) if sealed else None
            chosen = objects_writer.writable(chosen, checked, policy=policy["metadata"]["name"])
            for child in objects_writer.plan(body, restore_run.job_name(body["metadata"]["name"]),
                                             restore_run.target_namespace(body), chosen,
                                             with_data=bool(target.data_jobs), update=target.existing == "update"):
                await self._apply(child)
        return target

    async def _apply(self, child: dict) -> None:
        kind = {"ServiceAccount": SERVICEACCOUNTS, "Role": ROLES, "RoleBinding": ROLEBINDINGS}[child["kind"]]
        meta = child["metadata"]
        try:
            await self.kube.create(kind, meta["namespace"], child)
        except KubeError as exc:
            if exc.status != 409:
                raise
            await self.kube.replace(kind, meta["namespace"], meta["name"], child)

    async def _drop_writer(self, body: dict) -> None:
        """The writer's rights end with the restore (the Role and binding in another namespace have no owner)."""
        name = objects_writer.writer_name(restore_run.job_name(body["metadata"]["name"]))
        target = restore_run.target_namespace(body)
        for kind, namespace in ((ROLEBINDINGS, target), (ROLES, target), (SERVICEACCOUNTS, body["metadata"]["namespace"])):
            await self.kube.delete(kind, namespace, name, missing_ok=True)

    async def reconcile(self, namespace: str, name: str, body: dict | None = None) -> None:
        async with self.locks[(namespace, name)]:
            try:
                body = body or await self.kube.get(INFO, namespace, name, missing_ok=True)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    return
                await self._reconcile(body)
            except KubeError as exc:
                self.ctx.metrics.reconciles.labels("Restore", "error").inc()
                if exc.status != 404:
                    log.warning("Restore %s/%s: %s", namespace, name, exc)
                    self._retry_later(namespace, name)
            else:
                self._failures.pop((namespace, name), None)

    def _retry_later(self, namespace: str, name: str) -> None:
        """Try again after a growing pause: the event that failed (a Job's end) will not come again."""
        failures = self._failures.get((namespace, name), 0)
        self._failures[(namespace, name)] = failures + 1
        delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
        asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self.reconcile(namespace, name)))

    async def _reconcile(self, body: dict) -> None:
        now = rfc3339(self.ctx.clock.now())
        phase = (body.get("status") or {}).get("phase")
        job = None if phase in restore.FINAL else await self._job(body)
        claim = await self._claim(body) if phase not in restore.FINAL else None
        switched = ((claim or {}).get("metadata", {}).get("labels") or {}).get(restore_run.LABEL_STATE) == "verified"
        sealed = restore.sealed(body, seal_key(self.ctx.options))
        held_to = await self._approval_policy(body, phase)
        plan = restore.plan(body, job, now, switched=switched, records_sealed=sealed, policy=held_to)
        if plan.create_job:
            blocked = await self._start(body)
            plan = restore.plan(body, await self._job(body), now, switched=switched, blocked=blocked,
                                records_sealed=sealed, policy=held_to)
        if plan.switch_claim:
            await self._label_claim(body, "verified")
            plan = restore.plan(body, job, now, switched=True, records_sealed=sealed, policy=held_to)
        if plan.mark_failed:
            await self._label_claim(body, "failed")
        if plan.phase in restore.FINAL and phase not in restore.FINAL and restore_run.restores_objects(body) \
                and not body["spec"]["target"]["objects"].get("kubeconfigSecret"):
            await self._drop_writer(body)
        self._metrics(body, plan.phase)
        if restore.unchanged(body, plan.status):
            self.ctx.metrics.reconciles.labels("Restore", "unchanged").inc()
            return
        meta = body["metadata"]
        rv = meta.get("resourceVersion")  # written only over what was read (a 409 otherwise)
        await self.kube.patch(INFO, meta["namespace"], meta["name"],
                              {"status": plan.status, **({"metadata": {"resourceVersion": rv}} if rv else {})},
                              subresource="status")
        self.ctx.metrics.reconciles.labels("Restore", "written").inc()
        ref = ObjectRef.of(body)
        subject = {"kind": "Restore", "namespace": meta["namespace"], "name": meta["name"], "uid": meta.get("uid", "")}
        for note in plan.notes:
            if note.audit is not None:
                action, actor, outcome = note.audit
                event = "RestoreRejected" if action == "rejection" else f"Restore{outcome.capitalize()}" \
                    if action == "restore" else None
                if event:
                    self.ctx.notifier.tell(body, event, note.message, now)
                audit.record(action, actor=actor, outcome=outcome, subject=subject,
                             details={"recoveryPoint": body["spec"].get("recoveryPoint"), "phase": plan.phase,
                                      "message": note.message})
            await self.kube.emit_event(ref, note.type, note.reason, note.message, now)

    async def _label_claim(self, body: dict, state: str) -> None:
        pvc = ((body.get("spec") or {}).get("target") or {}).get("pvc")
        if pvc:
            try:
                await self.kube.patch(PERSISTENTVOLUMECLAIMS, restore_run.target_namespace(body), pvc["claimName"],
                                      restore_run.claim_state_patch(body, state))
            except KubeError as exc:
                if exc.status != 404:
                    raise

    def _metrics(self, body: dict, phase: str) -> None:
        meta = body["metadata"]
        for p in restore.PHASES:
            self.ctx.metrics.restore_phase.labels(meta["namespace"], meta["name"], p).set(1 if p == phase else 0)


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    controller = RestoreController(ctx)

    @kopf.on.event(INFO.group, INFO.version, INFO.plural, registry=registry, id="restore")
    async def on_restore(event, body, namespace, name, **_):
        if event.get("type") == "DELETED":
            ctx.metrics.forget(INFO.kind, namespace, name)
            controller.tiers.pop((body.get("metadata") or {}).get("uid", ""), None)
            return
        await controller.reconcile(namespace, name, json.loads(json.dumps(dict(body))))

    @kopf.on.event("batch", "v1", "jobs", labels={restore_run.LABEL_RESTORE: kopf.PRESENT}, registry=registry,
                   id="restore-job")
    async def on_job(event, body, **_):
        owner = ((body.get("metadata") or {}).get("annotations") or {}).get(restore_run.LABEL_RESTORE, "")
        if "/" in owner and event.get("type") != "DELETED":
            namespace, name = owner.split("/", 1)
            await controller.reconcile(namespace, name)
