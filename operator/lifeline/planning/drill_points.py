"""Which RecoveryPoint a drill restores: the latest, a random one within a window, or a named one. Pure.

The random source is injected (``random.Random`` or anything with ``choice``), so a test
pins the choice and a scheduled drill in production spreads over the window.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from lifeline.api.common import parse_duration
from lifeline.labels import LABEL_POLICY

from .backup import PlanError
from lifeline.clock import parse_time

UNUSABLE_PHASES = ("Damaged", "Shredded", "Pruned")


def candidates(points: list[dict], policy: str) -> list[dict]:
    """The policy's points a drill may restore, oldest first (damaged, shredded or pruned ones left out)."""
    out = [p for p in points
           if (p.get("spec") or {}).get("policyName") == policy
           and (p.get("status") or {}).get("phase") not in UNUSABLE_PHASES
           and not (p.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(out, key=lambda p: (parse_time(p["spec"].get("completionTime")) or datetime.min,
                                      p["metadata"]["name"]))


def select_point(points: list[dict], selector, policy: str, now: datetime, rng) -> dict:
    """The point to restore; PlanError (condition Ready, reason NoRecoveryPoint) when there is none."""
    usable = candidates(points, policy)
    if selector.strategy == "Named":
        for p in points:
            if p["metadata"]["name"] == selector.name:
                if (p.get("spec") or {}).get("policyName") != policy:
                    raise PlanError("Ready", "PointOfOtherPolicy",
                                    f"recovery point {selector.name} belongs to policy "
                                    f"{p['spec'].get('policyName')}, not {policy}; name one of {policy}'s points")
                if p not in usable:
                    raise PlanError("Ready", "PointUnusable",
                                    f"recovery point {selector.name} is {(p.get('status') or {}).get('phase')}; "
                                    "name another point, or use strategy Latest")
                return p
        raise PlanError("Ready", "NoRecoveryPoint",
                        f"recovery point {selector.name} does not exist; list them with "
                        f"`kubectl get recoverypoints -l {LABEL_POLICY}={policy}`")
    if not usable:
        raise PlanError("Ready", "NoRecoveryPoint",
                        f"policy {policy} has no recovery point to rehearse yet; run a backup first "
                        f"(`lifeline backup now {policy}`)")
    if selector.strategy == "Latest":
        return usable[-1]
    window = timedelta(seconds=parse_duration(selector.window)) if selector.window else None
    inside = [p for p in usable if window is None or now - parse_time(p["spec"]["completionTime"]) <= window]
    if not inside:
        raise PlanError("Ready", "NoRecoveryPoint",
                        f"policy {policy} has no recovery point from the last {selector.window}; "
                        "widen point.window or run a backup")
    return rng.choice(inside)
