"""``source.volumeSnapshot``: a CSI VolumeSnapshot of a PVC, moved off the cluster by a data mover.

The policy's CronJobs stay the schedule, but their pod is only a trigger that says "now"; the
operator cuts the snapshot (with the policy's hooks around the cut), makes a PVC from it and starts
the data-mover Job, an ordinary backup Job whose ``/source`` is that PVC (the pipeline:
:mod:`lifeline.planning.snapshot`)."""
from __future__ import annotations

from lifeline.messages import SourcePlan

from .base import (RUN_AS, SOURCE_MOUNT, Availability, BackupPod, Seen, SourceRoom, claim_availability,
                   container_security, inside, mount_source)

TRIGGER_SCRIPT = "print('lifeline: snapshot requested; the operator takes it and starts the data mover')"


class VolumeSnapshotRoom(SourceRoom):
    kind = "volumeSnapshot"
    attribute = "volume_snapshot"
    runs_by_trigger = True
    runs_hooks = True

    def job_source(self, namespace, policy, spec, served=()) -> SourcePlan:
        return SourcePlan(kind=self.kind, name=f"{namespace}/{policy}",
                          path=inside(SOURCE_MOUNT, self.settings(spec).path, f"source.{self.kind}.path"))

    def shape_backup_pod(self, draft: BackupPod, spec) -> None:
        if draft.source_claim:  # the data mover: the PVC made from the snapshot
            mount_source(draft.pod, draft.agent, draft.source_claim)

    def trigger_pod(self, spec, image: str) -> dict:
        """The trigger's pod: prints one line and exits; it mounts nothing and needs no token."""
        pod: dict = {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "trigger", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", TRIGGER_SCRIPT],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                "securityContext": container_security(),
            }],
        }
        if spec.pod.priority_class_name:
            pod["priorityClassName"] = spec.pod.priority_class_name
        return pod

    def references(self, spec) -> list[str]:
        vs = self.settings(spec)
        return [f"pvc/{vs.claim_name}"] + ([f"vsclass/{vs.volume_snapshot_class_name}"]
                                           if vs.volume_snapshot_class_name else [])

    def availability(self, spec, seen: Seen) -> Availability:
        vs = self.settings(spec)
        hooks = (f"; {len(spec.hooks.pre)} pre- and {len(spec.hooks.post)} post-hook(s) run around the cut"
                 if spec.hooks.pre or spec.hooks.post else "; crash-consistent (no hooks)")
        cls = vs.volume_snapshot_class_name
        found = claim_availability(seen, vs.claim_name, f"spec.source.{self.kind}.claimName",
                                   f"each backup takes a VolumeSnapshot of it (class {cls or 'the default'}) and a "
                                   f"data-mover Job reads a PVC made from that snapshot{hooks}")
        if found.status is False:
            return found
        looked = seen.refs.get(f"vsclass/{cls}") if cls else None
        if looked is not None and looked.exists is False:
            return Availability(False, "VolumeSnapshotClassNotFound",
                                f"VolumeSnapshotClass {cls} does not exist: create it for the PVC's CSI driver "
                                "(kubectl get volumesnapshotclasses), or fix "
                                f"spec.source.{self.kind}.volumeSnapshotClassName")
        if seen.pipeline_failure is not None:
            return Availability(False, *seen.pipeline_failure)
        return found


ROOM = VolumeSnapshotRoom()
