"""Where a namespaced Lifeline object may make the operator act: its own namespace.

The operator holds rights across namespaces; a Restore or a FailoverPlan is written by a tenant
of one. So a Restore restores into its own namespace and a FailoverPlan fences, promotes and
switches traffic in its own namespace of this cluster, unless the admin allowed the pair
(chart value ``crossNamespace``: ``["his->his-restore"]``, read from ``LIFELINE_CROSS_NAMESPACE``).
Sites in other clusters are reached with the rights of the kubeconfig their Secret holds, so they
are that cluster's admin's business, not this rule's.
"""
from __future__ import annotations

from collections.abc import Mapping

CROSS_NAMESPACE_ENV = "LIFELINE_CROSS_NAMESPACE"
Pairs = frozenset[tuple[str, str]]


def allowed_pairs(env: Mapping[str, str]) -> Pairs:
    """``his->his-restore, lab->lab-restore`` as pairs; malformed items are ignored (the chart's
    schema refuses them)."""
    pairs = set()
    for item in (env.get(CROSS_NAMESPACE_ENV) or "").split(","):
        source, arrow, target = item.strip().partition("->")
        if arrow and source.strip() and target.strip():
            pairs.add((source.strip(), target.strip()))
    return frozenset(pairs)


def outside_problem(what: str, own: str, other: str, allowed: Pairs) -> str | None:
    """Why ``what`` of an object in namespace ``own`` may not act in ``other`` (None: it may)."""
    if other == own or (own, other) in allowed:
        return None
    return (f"{what} is in namespace {other}, but this object is in {own}: Lifeline acts only in an object's "
            f"own namespace unless the admin allows '{own}->{other}' (chart value crossNamespace)")


__all__ = ["CROSS_NAMESPACE_ENV", "Pairs", "allowed_pairs", "outside_problem"]
