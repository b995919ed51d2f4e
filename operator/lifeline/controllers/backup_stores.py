"""What the BackupPolicy controller knows without asking the API: the watch caches and looked-up references.

A reconcile reads these instead of the API server, so one that changes nothing makes no request:

- :class:`BackupStores`: what the watches said about policies, their CronJobs, Jobs, RecoveryPoints
  and shipping Deployments (one :class:`Store` each, grouped by policy), filled by one LIST per kind
  at start-up and kept current by the watch events;
- :class:`RefCache`: the PVCs, Secrets and VolumeSnapshotClasses a policy names, looked up with GET
  and trusted for ``facts_ttl`` seconds (only a Secret's key names are kept, never its values).
"""
from __future__ import annotations

import asyncio
import copy
import fnmatch
import time

from lifeline.api import BY_KIND
from lifeline.controllers.backup_continuous import deployment_fact
from lifeline.controllers.backup_schedule import cronjob_fact
from lifeline.kube import CRONJOBS, DEPLOYMENTS, JOBS, PERSISTENTVOLUMECLAIMS, VOLUMESNAPSHOTCLASSES, KubeError
from lifeline.labels import ANN_LAST_APPLIED
from lifeline.planning import backup, backup_points
from lifeline.sources import Ref


def kept_policy(body) -> dict:
    """What the store keeps of a policy: the object as served, less the bookkeeping nothing here reads
    (``metadata.managedFields`` and kubectl's last-applied copy of the spec), which is a third of a
    policy's memory."""
    obj = dict(body)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if ANN_LAST_APPLIED in (meta.get("annotations") or {}):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != ANN_LAST_APPLIED}
    obj["metadata"] = meta
    return copy.deepcopy(obj)


def policy_of(body) -> str | None:
    """The policy a CronJob, Job or Deployment belongs to (its annotation, else its label)."""
    meta = body.get("metadata") or {}
    return (meta.get("annotations") or {}).get(backup.ANN_POLICY) or (meta.get("labels") or {}).get(backup.LABEL_POLICY)


def resource_version(obj: dict | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque on some servers: treat as unknown
        return 0


def namespace_of(body) -> str:
    return (body.get("metadata") or {}).get("namespace", "")


def name_of(body) -> str:
    return (body.get("metadata") or {}).get("name", "")


def uid_of(body) -> str:
    return (body.get("metadata") or {}).get("uid", "")


class RefCache:
    """PVC and Secret lookups, trusted for ``ttl`` seconds (monotonic time: this is about staleness)."""

    def __init__(self, kube, ttl: float):
        self.kube, self.ttl = kube, ttl
        self._seen: dict[tuple[str, str], tuple[float, Ref]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}

    async def _lookup(self, namespace: str, ref: str) -> Ref:
        kind, name = ref.split("/", 1)
        try:
            if kind == "pvc":
                found = await self.kube.get(PERSISTENTVOLUMECLAIMS, namespace, name, missing_ok=True)
                return Ref(found is not None)
            if kind == "vsclass":  # cluster-scoped
                found = await self.kube.get(VOLUMESNAPSHOTCLASSES, None, name, missing_ok=True)
                return Ref(found is not None)
            keys = await self.kube.secret_keys(namespace, name)
            return Ref(keys is not None, frozenset(keys or ()))
        except KubeError as exc:
            return Ref(None, error=str(exc))

    async def _fetch(self, namespace: str, ref: str, started: float) -> Ref:
        key = (namespace, ref)
        task = self._inflight.get(key)
        if task is None:  # many policies naming the same Secret share one lookup
            task = self._inflight[key] = asyncio.ensure_future(self._lookup(namespace, ref))
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        found = await asyncio.shield(task)
        seen = self._seen.get(key)
        if seen is None or seen[0] <= started:
            self._seen[key] = (started, found)
        return found

    async def get(self, namespace: str, refs: list[str], newer_than: float = 0.0) -> dict[str, Ref]:
        """The refs' facts, looked up again when older than ``ttl`` or than ``newer_than`` (monotonic)."""
        now = time.monotonic()
        out, todo = {}, []
        for ref in refs:
            seen = self._seen.get((namespace, ref))
            if seen and seen[0] >= newer_than and now - seen[0] < self.ttl and seen[1].exists is not None:
                out[ref] = seen[1]
            else:
                todo.append(ref)
        for ref, found in zip(todo, await asyncio.gather(*(self._fetch(namespace, r, now) for r in todo))):
            out[ref] = found
        return out


class Store:
    """What the watches said about one kind, grouped by policy: ``(namespace, policy) -> {id: fact}``.

    Filled by one LIST when the operator starts and kept current by the watch events, so a
    reconcile reads it instead of the API. (kopf's own indices would do the same, but their
    start-up barrier costs O(objects^2): minutes at a few thousand CronJobs.)
    """

    def __init__(self, group_of, id_of, fact_of):
        self.group_of, self.id_of, self.fact_of = group_of, id_of, fact_of
        self._groups: dict[tuple, dict] = {}

    def put(self, body) -> None:
        group = self.group_of(body)
        if group[1] is None:
            return
        self._groups.setdefault(group, {})[self.id_of(body)] = self.fact_of(body)

    def remove(self, body) -> None:
        group = self._groups.get(self.group_of(body))
        if group is not None:
            group.pop(self.id_of(body), None)
            if not group:
                self._groups.pop(self.group_of(body), None)

    def clear(self) -> None:
        self._groups.clear()

    def values(self, group: tuple) -> list:
        return list((self._groups.get(group) or {}).values())

    def groups(self) -> list[tuple]:
        return list(self._groups)

    def __len__(self) -> int:
        return sum(len(g) for g in self._groups.values())


class BackupStores:
    """The stores the BackupPolicy controller reads, by name (``stores["backup_jobs"]``), and the LIST
    that fills them before any watch event is handled."""

    # what the stores are filled from: (store, kind, label selector)
    SOURCES = (
        ("backup_policies", BY_KIND["BackupPolicy"], None),
        ("backup_cronjobs", CRONJOBS, backup.LABEL_POLICY),
        ("backup_jobs", JOBS, backup.LABEL_POLICY),
        ("backup_points", BY_KIND["RecoveryPoint"], None),
        ("backup_deployments", DEPLOYMENTS, backup.LABEL_POLICY),
    )

    def __init__(self, kube, options):
        self.kube, self.options = kube, options
        self._stores = {
            "backup_policies": Store(lambda b: (namespace_of(b), name_of(b)), lambda b: 0, kept_policy),
            "backup_cronjobs": Store(lambda b: (namespace_of(b), policy_of(b)), name_of, cronjob_fact),
            "backup_jobs": Store(lambda b: (namespace_of(b), policy_of(b)), uid_of, backup_points.job_fact),
            "backup_points": Store(lambda b: (namespace_of(b), (b.get("spec") or {}).get("policyName")), name_of,
                                   backup_points.point_fact),
            "backup_deployments": Store(lambda b: (namespace_of(b), policy_of(b)), name_of, deployment_fact),
        }
        self.synced = asyncio.Event()  # set once every store is filled (the timer waits for it)

    def __getitem__(self, name: str) -> Store:
        return self._stores[name]

    def of_policy(self, store: str, key: tuple) -> list:
        """The facts ``store`` holds about one policy's objects (``key``: namespace, policy).

        Public because everything acting for the BackupPolicy controller (its schedule, the Job
        recorder, the snapshot pipelines, the shipping Deployments) reads them instead of the API.
        """
        return self._stores[store].values(key)

    async def prime(self) -> None:
        """One LIST per kind, before any watch event is handled (so a restart sees everything).

        Page by page, each object reduced to what its store keeps before the next page is read: the
        whole list of a kind (3,000 CronJobs: ~90 MiB parsed) is never held at once.
        """
        namespaces = self.options.namespaces or [None]
        exact = all(ns and not any(c in ns for c in "*?[!") for ns in namespaces)
        patterns = [] if exact else self.options.namespaces
        for store, res, selector in self.SOURCES:
            self._stores[store].clear()  # a retry starts over
            for ns in (namespaces if exact else [None]):
                async for page in self.kube.list_pages(res, ns, selector):
                    for item in page:
                        if not patterns or any(fnmatch.fnmatch(namespace_of(item), pat) for pat in patterns):
                            self._stores[store].put(item)
                    del page
        self.synced.set()
