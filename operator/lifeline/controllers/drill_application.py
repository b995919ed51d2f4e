"""RestoreDrill, application drills: the restored application's sandbox, its writer, its start-up.

The concern of a drill whose policy backs up Kubernetes objects (:mod:`lifeline.planning.drill_application`
decides; this module reads and acts for :mod:`.restoredrill`):

- before the run starts, what its sandbox holds besides a drill's usual objects: the namespace's
  policies and points (the claims' data), the API server's discovery (the writer's kinds);
- when the restore Job has ended, the writer's rights end (its RoleBinding is deleted);
- while the run is ``Starting``, the sandbox's Deployments, StatefulSets and Pods, for the verdict.

Everything it writes is inside the sandbox, with the sandbox role the operator binds there.
"""
from __future__ import annotations

import asyncio
import os

from lifeline.api import BACKUP_POLICY as POLICY, RECOVERY_POINT as POINT
from lifeline.api.restoredrill import RestoreDrillSpec
from lifeline.clock import parse_time, rfc3339
from lifeline.kube import DEPLOYMENTS, PODS, ROLEBINDINGS, STATEFULSETS, KubeError
from lifeline.planning import backup, drill_application, drill_sandbox, objects_writer

PORTS_ENV = "LIFELINE_API_SERVER_PORTS"  # the ports the API server answers on, behind the kubernetes Service
RBAC_DELAYS = (0.1, 0.3, 1.0, 2.0)  # a 403 just after the sandbox's RoleBinding: RBAC has not seen it yet


def api_server_ports() -> tuple[int, ...]:
    text = os.environ.get(PORTS_ENV) or ""
    ports = tuple(int(p) for p in text.replace(",", " ").split() if p.isdigit())
    return ports or drill_application.API_SERVER_PORTS


async def create_in_sandbox(kube, res, namespace: str | None, obj: dict) -> None:
    """Create one object of a sandbox; a 403 is tried again a few times (the rights the sandbox role
    gives are judged by an RBAC cache that learns of its RoleBinding a moment after it was made)."""
    for delay in (*RBAC_DELAYS, None):
        try:
            await kube.create(res, namespace, obj)
            return
        except KubeError as exc:
            if exc.status != 403 or delay is None:
                raise
        await asyncio.sleep(delay)


class ApplicationDrills:
    def __init__(self, kube, facts: backup.Facts):
        self.kube, self.facts = kube, facts

    @staticmethod
    def applies(policy: dict) -> bool:
        return drill_application.applies(backup.parse_spec(policy))

    async def additions(self, body: dict, policy: dict, point: dict, run: str,
                        sandbox: str) -> drill_sandbox.Additions | None:
        """What an application drill's sandbox holds besides the usual; None for other drills. PlanError
        when it cannot be planned."""
        if not self.applies(policy):
            return None
        ns = body["metadata"]["namespace"]
        try:
            served = await self.kube.discover()
        except KubeError as exc:
            raise backup.PlanError("Ready", "DiscoveryFailed",
                                   f"the kinds the API server serves could not be read: {exc}") from None
        return drill_application.additions(
            body, policy, point, run, sandbox, policies=await self.kube.list(POLICY, ns),
            points=await self.kube.list(POINT, ns), served=served, facts=self.facts,
            vault_addr=os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR"), api_ports=api_server_ports())

    async def end_writer(self, sandbox: str) -> None:
        """The restore Job has ended: so do its writer's rights (the binding; the rest goes with the sandbox)."""
        await self.kube.delete(ROLEBINDINGS, sandbox, objects_writer.writer_name(drill_sandbox.RESTORE_JOB),
                               missing_ok=True)

    @staticmethod
    def restored(spec: RestoreDrillSpec, run: dict, now) -> dict:
        """The restore Job ended well: the run waits for the restored workloads, until the start-up deadline."""
        return {**run, "phase": "Starting", "startupDeadline": rfc3339(drill_application.startup_deadline(spec, now)),
                "message": "restored; waiting for the restored workloads to be ready"}

    async def startup(self, spec: RestoreDrillSpec, run: dict, restore_job: dict, now) -> drill_application.Startup:
        sandbox = run["sandbox"]
        return drill_application.startup(
            await self.kube.list(DEPLOYMENTS, sandbox), await self.kube.list(STATEFULSETS, sandbox),
            await self.kube.list(PODS, sandbox), restored_at=(restore_job.get("status") or {}).get("completionTime"),
            now=now, deadline=parse_time(run.get("startupDeadline")), timeout=spec.restore.startup_timeout)
