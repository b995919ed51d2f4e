"""Continuous policies: the shipping Deployment kept as planned, and what the shipper last shipped.

The Deployment comes from :func:`lifeline.planning.continuous.plan` and is applied the way the
CronJobs are: created when missing (so one deleted by hand comes back), replaced when its spec hash
or replica count differs (an edit by hand is put right), deleted when the policy stops being
continuous, and left alone otherwise: a resync writes nothing.

Where the RPO comes from: the shipper writes its state to ``<state>/status.json`` on every change
(newest shipped segment and its close time per destination). The operator reads that file through
``pods/exec`` (``cat``) in the shipper's own container, at most every ``LIFELINE_SHIP_STATUS_INTERVAL``
seconds per policy. Why this path: the shipper needs no Kubernetes credentials and no write access
to anything (no ConfigMap or Pod annotation it could be tricked into faking for others), the
operator needs no permission it does not hold already for backup hooks (pods list, pods/exec), and
what is read is the shipper's own account of what every destination acknowledged. Only a pod that a
ReplicaSet of the policy's Deployment owns is asked.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from lifeline.controllers.common import delete_owned, write_owned
from lifeline.kube import DEPLOYMENTS, PODS, KubeError
from lifeline.labels import LABEL_APP_COMPONENT, LABEL_APP_INSTANCE
from lifeline.planning import backup, continuous

log = logging.getLogger(__name__)

STATUS_COMMAND = ["cat", f"{continuous.STATE_DIR}/status.json"]


def read_interval() -> float:
    return float(os.environ.get("LIFELINE_SHIP_STATUS_INTERVAL") or 5.0)


def deployment_fact(body) -> dict:
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    return {"name": meta.get("name"), "resourceVersion": meta.get("resourceVersion"),
            "hash": (meta.get("annotations") or {}).get(backup.ANN_HASH),
            "owners": [r.get("uid") for r in meta.get("ownerReferences") or []],
            "replicas": spec.get("replicas")}


@dataclass(frozen=True)
class Shipped:
    """The shipper's newest shipped segment (across destinations), or why it is not known."""

    segment: str | None = None
    closed_at: datetime | None = None
    error: str | None = None
    destinations: tuple = ()  # (repository, up, backlog, newest) per destination


def parse_status(text: str) -> Shipped:
    """The shipper's status.json -> :class:`Shipped` (the newest segment any destination holds)."""
    try:
        data = json.loads(text)
        dests = data["destinations"]
    except (ValueError, KeyError, TypeError) as exc:
        return Shipped(error=f"the shipper's status is not readable: {exc}")
    best = None
    for d in dests:
        at = d.get("newest_closed_at")
        if d.get("newest_shipped") and isinstance(at, (int, float)) and (best is None or at > best[1]):
            best = (d["newest_shipped"], float(at))
    summary = tuple((str(d.get("repository")), bool(d.get("up")), int(d.get("backlog") or 0),
                     d.get("newest_shipped")) for d in dests)
    if best is None:
        return Shipped(error="the shipper has not shipped a segment yet", destinations=summary)
    return Shipped(best[0], datetime.fromtimestamp(best[1], timezone.utc), destinations=summary)


class ShippingDeployments:
    def __init__(self, controller):
        self.ctl = controller
        self.kube = controller.kube
        self._pending: dict[tuple, tuple[str, str | None]] = {}  # (ns, name) -> (hash, rv replaced from)
        self._read: dict[tuple, tuple[float, Shipped]] = {}  # (ns, policy) -> (monotonic, what was read)

    def forget(self, namespace: str, policy: str) -> None:
        self._read.pop((namespace, policy), None)

    async def apply(self, body: dict, desired: list[dict]) -> str | None:
        """Make the policy's shipping Deployment ``desired`` (zero or one manifest); the error text."""
        meta = body["metadata"]
        namespace, uid = meta.get("namespace", ""), meta.get("uid")
        existing = {f["name"]: f for f in self.ctl.stores.of_policy("backup_deployments", (namespace, meta["name"]))}
        errors = []
        for manifest in desired:
            name = manifest["metadata"]["name"]
            digest = manifest["metadata"]["annotations"][backup.ANN_HASH]
            current = existing.pop(name, None)
            pending = self._pending.get((namespace, name))
            if current is not None and pending and current["hash"] == pending[0] and \
                    current["resourceVersion"] != pending[1]:
                self._pending.pop((namespace, name), None)  # the watch brought our write back
                pending = None
            if pending and pending[0] == digest and (current is None or current["resourceVersion"] == pending[1]):
                continue  # written a moment ago; the watch has not brought it back yet
            if current is not None and current["hash"] == digest and \
                    current["replicas"] == manifest["spec"]["replicas"]:
                continue
            written, replaced = await write_owned(self.kube, DEPLOYMENTS, namespace, manifest, current, uid, errors)
            if written:
                self._pending[(namespace, name)] = (digest, replaced)
        # what is left: the policy is no longer continuous
        await delete_owned(self.kube, DEPLOYMENTS, namespace, existing, uid, errors)
        return "; ".join(errors) or None

    # ---- what was shipped ------------------------------------------------------------------------

    async def shipped(self, body: dict) -> Shipped:
        """What the shipper says it shipped (read again when older than :func:`read_interval`)."""
        meta = body["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        seen = self._read.get(key)
        if seen is not None and time.monotonic() - seen[0] < read_interval():
            return seen[1]
        try:
            found = await self._ask(key[0], meta["name"])
        except KubeError as exc:
            found = Shipped(error=f"could not read the shipper's status: {exc}")
        if found.closed_at is None and seen is not None and seen[1].closed_at is not None:
            # a restarting shipper forgets nothing that was shipped: keep the last known point
            found = Shipped(seen[1].segment, seen[1].closed_at, found.error, seen[1].destinations)
        self._read[key] = (time.monotonic(), found)
        return found

    async def _ask(self, namespace: str, policy: str) -> Shipped:
        deployment = continuous.deployment_name(policy)
        selector = f"{LABEL_APP_INSTANCE}={backup.label_value(policy)},{LABEL_APP_COMPONENT}={continuous.COMPONENT}"
        pods = [p for p in await self.kube.list(PODS, namespace, selector)
                if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
                and any(r.get("kind") == "ReplicaSet" and str(r.get("name", "")).startswith(deployment + "-")
                        for r in p["metadata"].get("ownerReferences") or [])]
        if not pods:
            return Shipped(error=f"no running pod of Deployment {deployment}")
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        result = await self.kube.exec(namespace, pod["metadata"]["name"], continuous.CONTAINER, STATUS_COMMAND,
                                      timeout=20.0)
        if result.exit_code != 0:
            return Shipped(error=f"reading the status in pod {pod['metadata']['name']} failed "
                                 f"(exit {result.exit_code}): {(result.stderr or '')[:200]}")
        return parse_status(result.stdout)
