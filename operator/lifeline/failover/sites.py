"""Reaching a site: the operator's own cluster, or another one through a kubeconfig in a Secret.

:class:`Clusters` hands out one API client per site (rebuilt only when the Secret's
content changes); :func:`observe` asks a site's API about its workloads and sums
the answer up as a :class:`~lifeline.failover.machine.SiteView`, with a reason and a
message a person can act on when something is wrong.
"""
from __future__ import annotations

import asyncio
import logging

from lifeline.api.failoverplan import Site
from lifeline.kube import WORKLOADS, Kube, KubeError
from lifeline.planning import authority

from .machine import SiteView
from .probes import workload_ready

log = logging.getLogger(__name__)


class SiteUnavailable(Exception):
    """The site's API cannot be used; ``reason`` names why (for the SitesResolved condition)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Clusters:
    """API clients per site of one FailoverPlan (whose namespace holds the kubeconfig Secrets).

    In this cluster the plan acts only in its own namespace, or in one the admin paired with it
    (:mod:`lifeline.planning.authority`): the operator's rights are not the plan's author's."""

    def __init__(self, own: Kube, namespace: str, allowed: authority.Pairs = frozenset()):
        self.own = own
        self.namespace = namespace
        self.allowed = allowed
        self._remote: dict[str, tuple[bytes, Kube]] = {}

    def here(self, what: str, namespace: str) -> Kube:
        """The operator's own client, for ``what`` in ``namespace`` of this cluster; raises
        :class:`SiteUnavailable` when the plan may not act there."""
        problem = authority.outside_problem(what, self.namespace, namespace, self.allowed)
        if problem:
            raise SiteUnavailable("NamespaceNotAllowed", problem)
        return self.own

    async def connect(self, site: Site) -> Kube:
        """The client for ``site``; raises :class:`SiteUnavailable`."""
        if site.cluster is None:
            return self.here(f"site {site.name}", site.namespace)
        ref = site.cluster.kubeconfig_secret
        try:
            text = await self.own.read_secret_key(self.namespace, ref.name, ref.key)
        except KubeError as exc:
            if exc.status == 404:
                raise SiteUnavailable(
                    "KubeconfigSecretMissing",
                    f"site {site.name}: {exc}; create Secret {self.namespace}/{ref.name} with the kubeconfig of "
                    f"that cluster under key {ref.key!r}") from None
            raise SiteUnavailable("KubeconfigSecretUnreadable", f"site {site.name}: {exc}") from None
        cached = self._remote.get(site.name)
        if cached is not None and cached[0] == text:
            return cached[1]
        try:
            kube = Kube.from_kubeconfig_text(text)
        except KubeError as exc:
            raise SiteUnavailable(
                "KubeconfigInvalid",
                f"site {site.name}: Secret {self.namespace}/{ref.name} key {ref.key!r} is {exc}") from None
        if cached is not None:
            cached[1].close()
        self._remote[site.name] = (text, kube)
        return kube

    def close(self) -> None:
        for _, kube in self._remote.values():
            kube.close()
        self._remote.clear()


def where(site: Site) -> str:
    return "this cluster" if site.cluster is None else f"the cluster in Secret {site.cluster.kubeconfig_secret.name}"


async def observe(clusters: Clusters, site: Site, role: str) -> SiteView:
    """What ``site``'s API says now about its workloads; never raises."""
    try:
        kube = await clusters.connect(site)
    except SiteUnavailable as exc:
        return SiteView(reachable=False, resolved=False, reason=exc.reason, message=str(exc))
    answers = await asyncio.gather(
        *(kube.get(WORKLOADS[w.kind], site.namespace, w.name) for w in site.workloads), return_exceptions=True)
    replicas, missing, unready, failures = {}, [], [], []
    for i, (w, answer) in enumerate(zip(site.workloads, answers)):
        key = f"{w.kind}/{w.name}"
        if isinstance(answer, KubeError):
            if answer.status == 404:
                missing.append(f"{w.kind} {site.namespace}/{w.name} (spec.{role}.workloads[{i}])")
            else:
                failures.append(answer)
            continue
        if isinstance(answer, BaseException):
            failures.append(answer)
            continue
        replicas[key] = (answer.get("spec") or {}).get("replicas", 1)
        ready, why = workload_ready(answer)
        if not ready:
            unready.append(f"{key}: {why}")
    unreachable = [f for f in failures if isinstance(f, KubeError) and f.status == 0]
    if unreachable or (failures and not replicas and not missing):
        first = (unreachable or failures)[0]
        return SiteView(reachable=False, resolved=False, reason="ClusterUnreachable",
                        message=f"site {site.name} ({where(site)}): {first}")
    if failures:
        first = failures[0]
        reason = "Forbidden" if isinstance(first, KubeError) and first.status == 403 else "APIError"
        return SiteView(reachable=True, resolved=False, replicas=replicas, reason=reason,
                        message=f"site {site.name}: {first}")
    if missing:
        return SiteView(reachable=True, resolved=False, replicas=replicas, reason="WorkloadNotFound",
                        message=f"site {site.name}: not found in {where(site)}: {', '.join(missing)}; "
                                f"create the workload or correct its kind and name")
    return SiteView(reachable=True, resolved=True, ready=not unready, replicas=replicas,
                    reason="Resolved", message="; ".join(unready))
