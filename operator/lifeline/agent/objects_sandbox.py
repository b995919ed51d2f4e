"""An objects restore into a drill's sandbox: what must not come back there, and what must not reach out.

A RestoreDrill of a resources policy (an application drill) puts the policy's objects back into a
throwaway sandbox namespace, next to the application that still runs in production. Before the tree
is put back (:mod:`.objects_put_back`), :func:`fence` rewrites it in place:

- the kinds the plan names in ``leaveOut`` (``Kind`` or ``Kind.group``) are taken out of the tree:
  the operator always names NetworkPolicies (one restored there would add to what the sandbox's
  deny-all lets out: policies are allowed lists, and they add up), Ingresses, Gateway API Gateways
  and routes and external-dns DNSEndpoints (a copy of a host name or a route would take part of
  production's traffic, or its DNS records), plus what the drill's ``spec.restore.leaveOut`` names;
- with ``sandbox``, every Service is made to answer inside the cluster only: ``type`` NodePort and
  LoadBalancer become ClusterIP, without node ports, external IPs or a load balancer's settings (a
  copy would otherwise take a node port or a load balancer of its own, and the sandbox's quota allows
  neither); ExternalName Services are left as they are. CronJobs are suspended: a rehearsal does not
  run the application's batch work.

What was left out is listed in the Job's log and counted in the summary (``left out``).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Iterable

from .jobs import log
from .objects_restore import group_kind

EXTERNAL = ("NodePort", "LoadBalancer")
# what a Service facing outside the cluster holds that one of type ClusterIP may not
OUTSIDE_FIELDS = ("externalIPs", "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass",
                  "allocateLoadBalancerNodePorts", "externalTrafficPolicy", "healthCheckNodePort")


def kind_name(body: dict) -> str:
    """``Kind.group`` (``Ingress.networking.k8s.io``), or ``Kind`` for the core group."""
    group, kind = group_kind(body)
    return f"{kind}.{group}" if group else kind


def fenced(body: dict, leave_out: Iterable[str], sandbox: bool) -> dict | None:
    """``body`` as it goes into a sandbox, or None when it is left out. Pure."""
    if kind_name(body) in set(leave_out):
        return None
    if not sandbox:
        return body
    gk = group_kind(body)
    if gk == ("", "Service"):
        spec = (body.get("spec") or {})
        if spec.get("type") not in EXTERNAL and not any(f in spec for f in OUTSIDE_FIELDS):
            return body
        out = copy.deepcopy(body)
        spec = out["spec"]
        if spec.get("type") in EXTERNAL:
            spec["type"] = "ClusterIP"
        for key in OUTSIDE_FIELDS:
            spec.pop(key, None)
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.pop("nodePort", None)
        return out
    if gk == ("batch", "CronJob") and not (body.get("spec") or {}).get("suspend"):
        out = copy.deepcopy(body)
        out.setdefault("spec", {})["suspend"] = True
        return out
    return body


def fence(root: Path, leave_out: Iterable[str], sandbox: bool) -> list[str]:
    """Rewrite the tree under ``root`` for a sandbox (:func:`fenced`); the files left out, relative to it.

    A file that is not an object is left as it is (putting the tree back reports it)."""
    leave_out, gone = tuple(leave_out), []
    for path in sorted(Path(root).rglob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if not isinstance(body, dict):
            continue
        out = fenced(body, leave_out, sandbox)
        if out is None:
            path.unlink()
            gone.append(str(path.relative_to(root)))
        elif out is not body:
            path.write_text(json.dumps(out), encoding="utf-8")
    if gone:
        log(f"left out of the sandbox ({len(gone)}): " + ", ".join(gone[:50]) + (" ..." if len(gone) > 50 else ""))
    return gone


__all__ = ["fence", "fenced", "kind_name"]
