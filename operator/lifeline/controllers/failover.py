"""FailoverPlan: one kopf daemon per plan runs its probe-decide-act loop.

The daemon (:class:`~lifeline.failover.runner.PlanRunner`) is the only writer of the
plan's status, readiness included (``OWNS``). A watch handler wakes it on every
change of the object (a request annotation, a spec edit) and stops it when the
object is deleted.

kopf puts a finalizer on every object that has a daemon, so that it can stop the
daemon before the object goes. Lifeline keeps no bookkeeping on users' objects (Argo
CD and Flux should see what was committed), and a FailoverPlan's daemon holds nothing
that must be released, so the daemon is registered without one: on deletion the watch
handler stops it, and a daemon whose status write answers 404 stops itself.
kopf still starts daemons on the first sight of an object, pauses them when peering
hands the work to another replica, and stops them on shutdown.
"""
from __future__ import annotations

import dataclasses
import logging

import kopf

from lifeline.api import FAILOVER_PLAN as INFO
from lifeline.failover.runner import PlanRunner

log = logging.getLogger(__name__)

OWNS = ("FailoverPlan",)
DAEMON_ID = "failover"


def register(registry: kopf.OperatorRegistry, ctx) -> None:
    runners: dict[str, PlanRunner] = {}

    @kopf.on.event(INFO.group, INFO.version, INFO.plural, registry=registry, id="failover-watch")
    async def on_event(event, uid, namespace, name, **_):
        runner = runners.get(uid)
        if event.get("type") == "DELETED":
            if runner is not None:
                runner.stop()
            ctx.metrics.forget(INFO.kind, namespace, name)
            return
        if runner is not None:
            runner.poke()

    async def run_plan(stopped, body, uid, namespace, name, **_):
        runner = PlanRunner(ctx, namespace, name, body_source=lambda: body)
        runners[uid] = runner
        try:
            await runner.run(stopped)
        finally:
            if runners.get(uid) is runner:
                del runners[uid]

    kopf.daemon(INFO.group, INFO.version, INFO.plural, registry=registry, id=DAEMON_ID,
                cancellation_backoff=2.0, cancellation_timeout=10.0)(run_plan)
    _without_finalizer(registry, DAEMON_ID)


def _without_finalizer(registry: kopf.OperatorRegistry, handler_id: str) -> None:
    """Turn off the finalizer kopf 1.45 always requests for daemons (see the module docstring)."""
    handlers = getattr(getattr(registry, "_spawning", None), "_handlers", None)
    if not isinstance(handlers, list):
        raise RuntimeError("kopf's registry changed shape: cannot register the failover daemon without a finalizer")
    for i, handler in enumerate(handlers):
        if handler.id == handler_id:
            handlers[i] = dataclasses.replace(handler, requires_finalizer=False)
            return
    raise RuntimeError(f"daemon {handler_id!r} not found in kopf's registry")
