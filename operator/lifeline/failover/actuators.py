"""Carry out what the state machine asks for: fence, promote, switch traffic.

Every action is idempotent (scale to N, set these annotations, set this selector),
so doing one twice -- after a crash between the action and the status write that
records it -- changes nothing the second time. Each returns an
:class:`~lifeline.failover.machine.Outcome`, never raises.
"""
from __future__ import annotations

import asyncio

from lifeline.api.failoverplan import FailoverPlanSpec, Site
from lifeline.kube import ANNOTATABLE, SERVICES, WORKLOADS, Kube, KubeError
from lifeline.labels import ANN_ACTIVE_SITE as ACTIVE_ANNOTATION, ANN_FENCED as FENCED_ANNOTATION

from .machine import Action, Fence, Outcome, Promote, SwitchTraffic
from .sites import Clusters, SiteUnavailable, where


def site_named(spec: FailoverPlanSpec, name: str) -> Site:
    return spec.primary if spec.primary.name == name else spec.standby


async def perform(action: Action, *, spec: FailoverPlanSpec, clusters: Clusters, stamp: str) -> Outcome:
    try:
        if isinstance(action, Fence):
            return await _fence(action, site_named(spec, action.site), clusters, stamp)
        if isinstance(action, Promote):
            return await _promote(action, site_named(spec, action.site), clusters)
        if isinstance(action, SwitchTraffic):
            traffic = spec.traffic.service or spec.traffic.annotation
            return await _switch(action, spec, clusters.here("the traffic switch", traffic.namespace))
    except SiteUnavailable as exc:
        return Outcome(action, ok=False, unreachable=True, message=str(exc))
    except KubeError as exc:
        return Outcome(action, ok=False, unreachable=exc.status == 0, message=str(exc))
    return Outcome(action, ok=False, message=f"unknown action {action!r}")


async def _fence(action: Fence, site: Site, clusters: Clusters, stamp: str) -> Outcome:
    kube = await clusters.connect(site)
    scale = action.how in ("ScaleToZero", "Both")
    annotate = action.how in ("Annotation", "Both")

    async def one(kind: str, name: str) -> tuple[str, int] | None:
        try:
            current = await kube.get(WORKLOADS[kind], site.namespace, name)
        except KubeError as exc:
            if exc.status == 404:
                return None  # nothing there to serve
            raise
        had = (current.get("spec") or {}).get("replicas", 1)
        patch: dict = {}
        if scale and had != 0:
            patch["spec"] = {"replicas": 0}
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if annotate and FENCED_ANNOTATION not in annotations:
            patch["metadata"] = {"annotations": {FENCED_ANNOTATION: stamp}}
        if patch:
            await kube.patch(WORKLOADS[kind], site.namespace, name, patch)
        return f"{kind}/{name}", had

    answers, failed = await _each_workload(action, site, one, "fencing")
    if failed:
        return failed
    had = dict(a for a in answers if a is not None)
    return Outcome(action, ok=True, replicas=had, message=f"fenced {len(had)} workload(s)")


async def _promote(action: Promote, site: Site, clusters: Clusters) -> Outcome:
    kube = await clusters.connect(site)

    async def one(kind: str, name: str) -> None:
        replicas = action.replicas.get(f"{kind}/{name}", 1)
        patch = {"spec": {"replicas": replicas}, "metadata": {"annotations": {FENCED_ANNOTATION: None}}}
        await kube.patch(WORKLOADS[kind], site.namespace, name, patch)

    _, failed = await _each_workload(action, site, one, "promoting")
    return failed or Outcome(action, ok=True, message=f"scaled up {len(site.workloads)} workload(s)")


async def _each_workload(action: Action, site: Site, one, doing: str) -> tuple[list, Outcome | None]:
    """``one(kind, name)`` for every workload of the site at once: the answers, and the Outcome of the
    first failure (None when none failed)."""
    answers = await asyncio.gather(*(one(w.kind, w.name) for w in site.workloads), return_exceptions=True)
    errors = [a for a in answers if isinstance(a, BaseException)]
    if not errors:
        return answers, None
    first = errors[0]
    unreachable = isinstance(first, KubeError) and first.status == 0
    return answers, Outcome(action, ok=False, unreachable=unreachable,
                            message=f"{doing} site {site.name} ({where(site)}): {first}")


def selector_patch(new: dict[str, str], old: dict[str, str]) -> dict:
    """A merge patch that leaves exactly ``new`` as the selector (keys only ``old`` has are removed)."""
    return {**{k: None for k in old if k not in new}, **new}


async def _switch(action: SwitchTraffic, spec: FailoverPlanSpec, kube: Kube) -> Outcome:
    traffic = spec.traffic
    to_primary = action.site == spec.primary.name
    if traffic.service is not None:
        svc = traffic.service
        new, old = ((svc.primary_selector, svc.standby_selector) if to_primary
                    else (svc.standby_selector, svc.primary_selector))
        patch = {"spec": {"selector": selector_patch(new, old)},
                 "metadata": {"annotations": {ACTIVE_ANNOTATION: action.site}}}
        await kube.patch(SERVICES, svc.namespace, svc.name, patch)
        return Outcome(action, ok=True, message=f"Service {svc.namespace}/{svc.name} selects {new}")
    ann = traffic.annotation
    await kube.patch(ANNOTATABLE[ann.kind], ann.namespace, ann.name,
                     {"metadata": {"annotations": {ann.key: action.site}}})
    return Outcome(action, ok=True, message=f"{ann.kind} {ann.namespace}/{ann.name} {ann.key}={action.site}")
