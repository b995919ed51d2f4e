"""RecoveryPoint status and owner references: the one writer of both, acting for the BackupPolicy controller.

A point's status (Ready: is its spec valid; its phase: Available, or Pruned once a prune forgot
every copy) is planned by :func:`lifeline.planning.backup_points.plan_point_status` and written
only when it changes. Its
owner references follow its policy's ``deletionPolicy``: owned (so collected with the policy)
under ``Delete`` and ``Shred``, not owned under ``Retain``. The shred controller
(:mod:`lifeline.controllers.shred`) writes a point's finalizer and annotations, never these.
"""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from lifeline.api import RECOVERY_POINT as POINT
from lifeline.clock import rfc3339
from lifeline.kube import KubeError, ObjectRef
from lifeline.planning import backup, backup_points, shred_approval
from lifeline.planning import recoverypoint_shred as shred
from lifeline.webhooks.seal_key import seal_key

log = logging.getLogger(__name__)


class RecoveryPointStatus:
    """Writes RecoveryPoint status and owner references, one write per point at a time."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.kube = ctx.kube
        self._locks: dict[tuple, asyncio.Lock] = defaultdict(asyncio.Lock)  # (ns, name): one write at a time

    async def reconcile(self, namespace: str, name: str, body: dict | None = None, pruned: bool = False) -> None:
        """Bring a point's status in line with its plan (``body``: as the watch brought it; None: read it)."""
        async with self._locks[(namespace, name)]:
            if body is None:
                body = await self.kube.get(POINT, namespace, name, missing_ok=True)
                if body is None:
                    return
            now = rfc3339(self.ctx.clock.now())
            patch, event = backup_points.plan_point_status(body, now, pruned, self._shred_review(body))
            if patch is None:
                self.ctx.metrics.reconciles.labels("RecoveryPoint", "unchanged").inc()
                return
            try:
                await self.kube.patch(POINT, namespace, name, {"status": patch}, subresource="status")
            except KubeError as exc:
                self.ctx.metrics.reconciles.labels("RecoveryPoint", "error").inc()
                if exc.status != 404:
                    log.warning("RecoveryPoint %s/%s: %s", namespace, name, exc)
                return
            self.ctx.metrics.reconciles.labels("RecoveryPoint", "written").inc()
            if event is not None:
                await self.kube.emit_event(ObjectRef.of(body), event.type, event.reason, event.message, now)

    def _shred_review(self, body: dict) -> tuple[bool, str] | None:
        """For a deleted point held for its shred: (approved, who approved / what it waits for)."""
        meta = body.get("metadata") or {}
        if not meta.get("deletionTimestamp") or shred.FINALIZER not in (meta.get("finalizers") or []):
            return None
        key = seal_key(self.ctx.options)
        reviewed = shred_approval.approved_by(body, key)
        if reviewed:
            return True, f"asked by {reviewed[0]}, approved by {reviewed[1]}"
        return False, shred_approval.waiting(body)

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
                await self.kube.patch(POINT, point["namespace"], point["name"], {"metadata": {"ownerReferences": new}})
            except KubeError as exc:
                if exc.status != 404:
                    log.warning("RecoveryPoint %s/%s: %s", point["namespace"], point["name"], exc)
