"""A fake CSI snapshotter for the API emulator: the snapshot-controller, CSI driver and provisioner.

Nothing in the emulator acts on ``snapshot.storage.k8s.io`` objects; this is that missing part,
talking to the API over HTTP as the real controllers do. PVCs are local directories (the same
``volumes`` mapping :class:`~lifeline.devstack.job_runner.JobRunner` mounts from: pass it the
runner's ``volumes`` so both see the same disks):

- a new **VolumeSnapshot** of a PVC is cut by copying that PVC's directory (what a
  crash-consistent snapshot is: the bytes at one moment), bound to a cluster-scoped
  VolumeSnapshotContent, and marked ``readyToUse`` with ``creationTime`` and ``restoreSize``;
- it fails honestly, with ``status.error`` as the real controller sets it, when the PVC object does
  not exist, when its VolumeSnapshotClass (or a default one) does not, or when the PVC has no
  local directory;
- a new **PVC whose dataSource is a VolumeSnapshot** gets a fresh copy of that snapshot as its
  directory and is marked Bound; it stays Pending while the snapshot is not ready;
- deleting a snapshot or such a PVC removes its copy (and the snapshot's content object).

:meth:`hold` keeps new snapshots cut but not ready (to test readiness timeouts); :meth:`fail_next`
makes the next snapshot fail with a driver error.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from pathlib import Path

import aiohttp

from lifeline.clock import Clock, SystemClock, rfc3339

log = logging.getLogger(__name__)

SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1"
ANN_DEFAULT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"
MERGE = {"Content-Type": "application/merge-patch+json"}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


class FakeSnapshotter:
    """Cuts, restores and removes snapshots of local-directory PVCs in an emulator."""

    def __init__(self, url: str, *, volumes: dict[str, Path], workdir: Path, clock: Clock | None = None):
        self.url = url.rstrip("/")
        self.volumes = volumes  # claim name -> directory; shared with the job runner
        self.workdir = Path(workdir)
        self.clock = clock or SystemClock()
        self.held = False
        self._fail_next: str | None = None
        self._made: dict[tuple[str, str], Path] = {}  # PVCs made from snapshots -> their copies
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._lock = asyncio.Lock()
        self.cut: list[tuple[str, str]] = []  # (namespace, name) of every snapshot taken, in order

    def hold(self) -> None:
        """New snapshots are cut but never become ready (until :meth:`release`)."""
        self.held = True

    async def release(self) -> None:
        """Held snapshots become ready (and PVCs waiting for them are provisioned)."""
        self.held = False
        found = (await self._get(f"{SNAPSHOTS}/volumesnapshots")) or {}
        async with self._lock:
            for snap in found.get("items") or []:
                await self._on_snapshot("MODIFIED", snap)

    def fail_next(self, message: str) -> None:
        """The next snapshot fails as a CSI driver error with ``message``."""
        self._fail_next = message

    async def __aenter__(self) -> "FakeSnapshotter":
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._watch(f"{SNAPSHOTS}/volumesnapshots", self._on_snapshot)),
                       asyncio.create_task(self._watch("/api/v1/persistentvolumeclaims", self._on_claim))]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._session.close()

    # ---- the API

    async def _get(self, path: str) -> dict | None:
        async with self._session.get(self.url + path) as r:
            return await r.json(content_type=None) if r.status == 200 else None

    async def _send(self, method: str, path: str, body: dict, headers: dict | None = None) -> None:
        async with self._session.request(method, self.url + path, data=json.dumps(body),
                                         headers=headers or {"Content-Type": "application/json"}) as r:
            if r.status >= 400:
                log.debug("snapshotter: %s %s answered %s", method, path, r.status)

    async def _watch(self, path: str, react) -> None:
        while True:
            try:
                async with self._session.get(self.url + path, params={"watch": "true"},
                                             timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                    async for line in resp.content:
                        if line.strip():
                            event = json.loads(line)
                            async with self._lock:
                                await react(event.get("type"), event.get("object") or {})
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("snapshotter watch of %s: %s", path, exc)
                await asyncio.sleep(0.1)

    # ---- snapshots

    def _copy_of(self, namespace: str, name: str) -> Path:
        return self.workdir / "snapshots" / namespace / name

    async def _on_snapshot(self, type_: str, snap: dict) -> None:
        meta, status = snap.get("metadata") or {}, snap.get("status") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if type_ == "DELETED":
            shutil.rmtree(self._copy_of(namespace, name), ignore_errors=True)
            content = status.get("boundVolumeSnapshotContentName")
            if content:
                async with self._session.delete(f"{self.url}{SNAPSHOTS}/volumesnapshotcontents/{content}"):
                    pass
            return
        if status.get("readyToUse") or status.get("error") or meta.get("deletionTimestamp"):
            return
        if status.get("creationTime"):  # cut while held: ready once released
            if not self.held:
                await self._patch_snapshot(namespace, name, {"readyToUse": True})
                await self._claims_waiting_for(namespace, name)
            return
        error = await self._cut(snap)
        now = rfc3339(self.clock.now())
        if error:
            await self._patch_snapshot(namespace, name, {"readyToUse": False, "error": {"message": error, "time": now}})
            return
        copy = self._copy_of(namespace, name)
        content = f"snapcontent-{meta.get('uid')}"
        await self._send("POST", f"{SNAPSHOTS}/volumesnapshotcontents", {
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": content},
            "spec": {"deletionPolicy": "Delete", "driver": "lifeline.devstack.csi",
                     "source": {"snapshotHandle": str(copy)},
                     "volumeSnapshotRef": {"kind": "VolumeSnapshot", "namespace": namespace, "name": name,
                                           "uid": meta.get("uid")}}})
        self.cut.append((namespace, name))
        await self._patch_snapshot(namespace, name, {
            "boundVolumeSnapshotContentName": content, "creationTime": now, "readyToUse": not self.held,
            "restoreSize": str(max(_size(copy), 1))})
        if not self.held:
            await self._claims_waiting_for(namespace, name)

    async def _cut(self, snap: dict) -> str | None:
        """Copy the source PVC's directory; the error text when the snapshot cannot be taken."""
        meta, spec = snap["metadata"], snap.get("spec") or {}
        namespace = meta["namespace"]
        claim = (spec.get("source") or {}).get("persistentVolumeClaimName")
        if not claim:
            return "only snapshots of a persistentVolumeClaimName are supported here"
        if await self._get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}") is None:
            return (f'failed to get input parameters to create snapshot {meta["name"]}: '
                    f'"failed to retrieve PVC {claim} from the lister: persistentvolumeclaim \\"{claim}\\" not found"')
        cls = spec.get("volumeSnapshotClassName")
        if cls:
            if await self._get(f"{SNAPSHOTS}/volumesnapshotclasses/{cls}") is None:
                return f'failed to get snapshot class with error volumesnapshotclass.snapshot.storage.k8s.io "{cls}" not found'
        else:
            classes = ((await self._get(f"{SNAPSHOTS}/volumesnapshotclasses")) or {}).get("items") or []
            if not any((c["metadata"].get("annotations") or {}).get(ANN_DEFAULT_CLASS) == "true" for c in classes):
                return "cannot find default snapshot class"
        if self._fail_next is not None:
            message, self._fail_next = self._fail_next, None
            return message
        source = self.volumes.get(claim)
        if source is None or not Path(source).is_dir():
            return f"the CSI driver has no volume for PVC {claim} (no local directory)"
        copy = self._copy_of(namespace, meta["name"])
        shutil.rmtree(copy, ignore_errors=True)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, copy, symlinks=True)
        return None

    async def _patch_snapshot(self, namespace: str, name: str, status: dict) -> None:
        await self._send("PATCH", f"{SNAPSHOTS}/namespaces/{namespace}/volumesnapshots/{name}/status",
                         {"status": status}, MERGE)

    # ---- PVCs made from snapshots

    async def _claims_waiting_for(self, namespace: str, snapshot: str) -> None:
        claims = (await self._get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims")) or {}
        for claim in claims.get("items") or []:
            if ((claim.get("spec") or {}).get("dataSource") or {}).get("name") == snapshot:
                await self._on_claim("MODIFIED", claim)

    async def _on_claim(self, type_: str, claim: dict) -> None:
        meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        source = spec.get("dataSource") or {}
        if type_ == "DELETED":
            made = self._made.pop((namespace, name), None)
            if made is not None:
                self.volumes.pop(name, None)
                shutil.rmtree(made, ignore_errors=True)
            return
        if source.get("kind") != "VolumeSnapshot" or (namespace, name) in self._made \
                or (claim.get("status") or {}).get("phase") == "Bound":
            return
        snap = await self._get(f"{SNAPSHOTS}/namespaces/{namespace}/volumesnapshots/{source.get('name')}")
        if not ((snap or {}).get("status") or {}).get("readyToUse"):
            return  # Pending, as a provisioner waits for the snapshot
        target = self.workdir / "claims" / namespace / name
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self._copy_of(namespace, source["name"]), target, symlinks=True)
        self._made[(namespace, name)] = target
        self.volumes[name] = target
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        await self._send("PATCH", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}/status",
                         {"status": {"phase": "Bound", "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                                     "capacity": {"storage": size}}}, MERGE)
