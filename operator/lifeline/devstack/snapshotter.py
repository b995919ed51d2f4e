"""The CSI side of volume snapshots, as a stand-in: a host-path CSI driver with its csi-snapshotter
sidecar and external-provisioner, acting on the real API.

The cluster runs the real snapshot-controller (kubernetes-csi/external-snapshotter, built from its Go
module) on the real VolumeSnapshot CRDs: it turns a VolumeSnapshot into a VolumeSnapshotContent,
binds the two and copies the content's status back. What it leaves to a CSI driver is done here, the
way the upstream sidecars do it (no container runtime can run them and the upstream host-path driver
is not served by the module proxy):

- **snapshots** (the csi-snapshotter sidecar and the driver's CreateSnapshot): a content of our
  :data:`DRIVER` with a ``source.volumeHandle`` and no status is cut by copying the volume's
  directory (the volume handle is the directory: a crash-consistent copy of the bytes at one
  moment); its status gets ``snapshotHandle``, ``creationTime`` (nanoseconds), ``restoreSize`` and
  ``readyToUse``. A driver error is written as ``status.error`` and retried every second while the
  content has no snapshot, as the sidecar retries. When the snapshot-controller marks a content
  being deleted, the copy is removed (``deletionPolicy: Delete``) and the sidecar's finalizer lifted.
- **volumes** (the external-provisioner and the driver's CreateVolume): a PVC that the PV controller
  hands to :data:`DRIVER` (its StorageClass's provisioner) gets a PersistentVolume whose directory is
  a fresh copy of the snapshot in its ``dataSource`` (Pending until the snapshot is ready) or an
  empty directory; a released volume of ours with ``reclaimPolicy: Delete`` is removed with its
  directory. The process kubelet mounts a volume of this driver at its handle.

:meth:`hold` keeps new snapshots cut but not ready (readiness timeouts); :meth:`fail` makes the
driver refuse every snapshot with a message until :meth:`heal`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from .kube_http import MERGE, ApiError, KubeHTTP

log = logging.getLogger(__name__)

DRIVER = "hostpath.csi.lifeline.dev"
STORAGE_CLASS = "csi-hostpath"
SNAPSHOTS = "/apis/snapshot.storage.k8s.io/v1"
ANN_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_BEING_DELETED = "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted"
ANN_BEING_CREATED = "snapshot.storage.kubernetes.io/volumesnapshot-being-created"
CONTENT_FINALIZER = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection"
RESYNC_SECONDS = 1.0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _copy(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, symlinks=True)


class HostPathCSI:
    """Cuts, provisions from and removes snapshots of this driver's directory volumes."""

    def __init__(self, kubeconfig: Path, workdir: Path):
        self.api = KubeHTTP(kubeconfig)
        self.workdir = Path(workdir)
        self.held = False
        self._failure: str | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self.cut: list[str] = []  # volume handles snapshotted, in order
        self._made: set[str] = set()  # contents cut here: an event older than our status patch cuts no more

    # ---- test controls

    def hold(self) -> None:
        """New snapshots are cut but do not become ready until :meth:`release`."""
        self.held = True

    def release(self) -> None:
        self.held = False

    def fail(self, message: str) -> None:
        """Every CreateSnapshot fails with ``message`` (as a driver error) until :meth:`heal`."""
        self._failure = message

    def heal(self) -> None:
        self._failure = None

    # ---- life

    async def __aenter__(self) -> "HostPathCSI":
        self._tasks = [asyncio.create_task(self._follow(f"{SNAPSHOTS}/volumesnapshotcontents", self._on_content)),
                       asyncio.create_task(self._follow("/api/v1/persistentvolumeclaims", self._on_claim)),
                       asyncio.create_task(self._follow("/api/v1/persistentvolumes", self._on_volume)),
                       asyncio.create_task(self._resync())]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.api.close()

    async def _react(self, react: Callable[[str, dict], Awaitable[None]], type_: str, obj: dict) -> None:
        async with self._lock:
            try:
                await react(type_, obj)
            except (ApiError, OSError) as exc:  # the next event or resync tries again
                log.info("csi: %s %s: %s", type_, (obj.get("metadata") or {}).get("name"), exc)

    async def _follow(self, path: str, react: Callable[[str, dict], Awaitable[None]]) -> None:
        """List, then watch from the list's version; list again whenever the watch ends."""
        while True:
            try:
                listed = await self.api.request("GET", path)
                for obj in listed.get("items") or []:
                    await self._react(react, "ADDED", obj)
                version = listed["metadata"]["resourceVersion"]
                async for event in self.api.watch(path, {"resourceVersion": version}):
                    if event.get("type") == "ERROR":
                        break
                    if event.get("type") != "BOOKMARK":
                        await self._react(react, event["type"], event.get("object") or {})
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("csi: watch of %s: %s", path, exc)
                await asyncio.sleep(0.2)

    async def _resync(self) -> None:
        """Retry what waits on time: failed or held snapshots, claims waiting for a snapshot."""
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, ValueError):
                for path, react in ((f"{SNAPSHOTS}/volumesnapshotcontents", self._on_content),
                                    ("/api/v1/persistentvolumeclaims", self._on_claim)):
                    for obj in (await self.api.request("GET", path)).get("items") or []:
                        await self._react(react, "MODIFIED", obj)

    # ---- snapshots: the csi-snapshotter sidecar and CreateSnapshot/DeleteSnapshot

    def _snapshot_dir(self, content: str) -> Path:
        return self.workdir / "snapshots" / content

    async def _on_content(self, type_: str, content: dict) -> None:
        meta, spec = content.get("metadata") or {}, content.get("spec") or {}
        status = content.get("status")
        if type_ == "DELETED" or spec.get("driver") != DRIVER:
            return
        annotations = meta.get("annotations") or {}
        if meta.get("deletionTimestamp") and ANN_BEING_DELETED in annotations:
            handle = (status or {}).get("snapshotHandle")
            if spec.get("deletionPolicy") == "Delete" and handle:
                shutil.rmtree(handle, ignore_errors=True)
            await self._lift_finalizer(meta)
            return
        volume = (spec.get("source") or {}).get("volumeHandle")
        if not volume or meta.get("deletionTimestamp"):
            return
        if not (status or {}).get("snapshotHandle"):
            if meta["name"] not in self._made:
                await self._create_snapshot(meta["name"], Path(volume), (status or {}).get("error") or {})
        elif not status.get("readyToUse") and not self.held:
            await self._content_status(meta["name"], {"readyToUse": True, "error": None})

    async def _create_snapshot(self, name: str, volume: Path, last_error: dict) -> None:
        error = self._failure
        if error is None and not volume.is_dir():
            error = f"volume {volume} does not exist"
        if error is not None:
            message = f'failed to take snapshot of the volume {volume}: "rpc error: code = Internal desc = {error}"'
            if last_error.get("message") == message:
                return  # the same error is already set (as the sidecar says): no write, no new event
            await self._content_status(name, {"readyToUse": False, "error": {
                "message": message, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}})
            return
        target = self._snapshot_dir(name)
        _copy(volume, target)
        self._made.add(name)
        self.cut.append(str(volume))
        await self._content_status(name, {"snapshotHandle": str(target), "creationTime": time.time_ns(),
                                          "restoreSize": max(_size(target), 1), "readyToUse": not self.held,
                                          "error": None})

    async def _content_status(self, name: str, status: dict) -> None:
        await self.api.request("PATCH", f"{SNAPSHOTS}/volumesnapshotcontents/{name}/status",
                               {"status": status}, content_type=MERGE)

    async def _lift_finalizer(self, meta: dict) -> None:
        finalizers = meta.get("finalizers") or []
        if CONTENT_FINALIZER in finalizers:
            await self.api.request(
                "PATCH", f"{SNAPSHOTS}/volumesnapshotcontents/{meta['name']}",
                {"metadata": {"resourceVersion": meta["resourceVersion"],
                              "finalizers": [f for f in finalizers if f != CONTENT_FINALIZER]}},
                content_type=MERGE)

    # ---- volumes: the external-provisioner and CreateVolume/DeleteVolume

    async def _on_claim(self, type_: str, claim: dict) -> None:
        meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
        if type_ == "DELETED" or (meta.get("annotations") or {}).get(ANN_PROVISIONER) != DRIVER \
                or spec.get("volumeName") or meta.get("deletionTimestamp"):
            return
        volume_name = f"pvc-{meta['uid']}"
        target = self.workdir / "volumes" / volume_name
        source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
        if source.get("kind") == "VolumeSnapshot":
            snapshot = await self.api.request(
                "GET", f"{SNAPSHOTS}/namespaces/{meta['namespace']}/volumesnapshots/{source['name']}",
                missing_ok=True)
            snap_status = (snapshot or {}).get("status") or {}
            if not snap_status.get("readyToUse"):
                return  # Pending, as the provisioner waits for the snapshot
            content = await self.api.request(
                "GET", f"{SNAPSHOTS}/volumesnapshotcontents/{snap_status['boundVolumeSnapshotContentName']}")
            _copy(Path(content["status"]["snapshotHandle"]), target)
        elif source:
            return  # a clone or a populator: not this driver's business
        else:
            target.mkdir(parents=True, exist_ok=True)
        sc = await self.api.request("GET", f"/apis/storage.k8s.io/v1/storageclasses/{spec.get('storageClassName')}",
                                    missing_ok=True) or {}
        body = {"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": volume_name, "annotations": {ANN_PROVISIONED_BY: DRIVER}},
                "spec": {"capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {})
                                      .get("storage", "1Gi")},
                         "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                         "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                         "storageClassName": spec.get("storageClassName") or "",
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "uid": meta["uid"],
                                      "namespace": meta["namespace"], "name": meta["name"]},
                         "csi": {"driver": DRIVER, "volumeHandle": str(target)}}}
        try:
            await self.api.request("POST", "/api/v1/persistentvolumes", body)
        except ApiError as exc:
            if exc.status != 409:
                raise

    async def _on_volume(self, type_: str, volume: dict) -> None:
        meta, spec = volume.get("metadata") or {}, volume.get("spec") or {}
        if type_ == "DELETED" or (meta.get("annotations") or {}).get(ANN_PROVISIONED_BY) != DRIVER:
            return
        if (volume.get("status") or {}).get("phase") == "Released" \
                and spec.get("persistentVolumeReclaimPolicy") == "Delete":
            handle = Path((spec.get("csi") or {}).get("volumeHandle", ""))
            if handle.is_relative_to(self.workdir):
                shutil.rmtree(handle, ignore_errors=True)
            await self.api.request("DELETE", f"/api/v1/persistentvolumes/{meta['name']}", missing_ok=True)


__all__ = ["DRIVER", "HostPathCSI", "STORAGE_CLASS"]
