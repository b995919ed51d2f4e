"""Every kind's first duty: say whether its spec is valid, in status and as an Event.

Level-triggered: the handler runs on every watch event (and on the initial
listing after a restart), asks the planner what the status should be, and writes
only when that differs from what is stored. So a resync of unchanged objects
costs no writes, and kopf keeps no annotations on users' objects for GitOps
tools to diff against.
"""
from __future__ import annotations

import logging

import kopf

from lifeline.api import KINDS, KindInfo
from lifeline.clock import rfc3339
from lifeline.kube import KubeError, ObjectRef
from lifeline.planning import readiness

log = logging.getLogger(__name__)


def register(registry: kopf.OperatorRegistry, ctx, skip: set[str] = frozenset()) -> None:
    """Handle every kind whose status no dedicated controller owns."""
    for info in KINDS:
        if info.kind not in skip:
            _register_kind(registry, ctx, info)


def _register_kind(registry: kopf.OperatorRegistry, ctx, info: KindInfo) -> None:
    @kopf.on.event(info.group, info.version, info.plural, registry=registry, id=f"readiness-{info.plural}")
    async def on_event(event, body, namespace, name, **_):
        if event.get("type") == "DELETED":
            ctx.metrics.forget(info.kind, namespace, name)
            return
        if body.get("metadata", {}).get("deletionTimestamp"):
            return
        now = rfc3339(ctx.clock.now())
        decision = readiness.plan(info, dict(body), now)
        ctx.metrics.spec_valid.labels(info.kind, namespace, name).set(1 if decision.valid else 0)
        if decision.patch is None:
            ctx.metrics.reconciles.labels(info.kind, "unchanged").inc()
            return
        try:
            await ctx.kube.patch(info, namespace, name, {"status": decision.patch}, subresource="status")
        except KubeError as exc:
            ctx.metrics.reconciles.labels(info.kind, "error").inc()
            if exc.status == 404:  # deleted meanwhile: nothing to report on
                return
            # The next watch event (or resync) tries again; say why in the log meanwhile.
            log.warning("%s %s/%s: %s", info.kind, namespace, name, exc)
            return
        ctx.metrics.reconciles.labels(info.kind, "written").inc()
        if decision.event is not None:
            ev = decision.event
            await ctx.kube.emit_event(ObjectRef.of(dict(body)), ev.type, ev.reason, ev.message, now)
