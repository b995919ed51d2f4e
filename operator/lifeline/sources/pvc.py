"""``source.pvc``: the files of a PersistentVolumeClaim, mounted read-only into the backup Job."""
from __future__ import annotations

from lifeline.messages import SourcePlan

from .base import SOURCE_MOUNT, Availability, BackupPod, Seen, SourceRoom, claim_availability, inside, mount_source


class PVCRoom(SourceRoom):
    kind = "pvc"
    attribute = "pvc"

    def job_source(self, namespace, policy, spec, served=()) -> SourcePlan:
        return SourcePlan(kind=self.kind, name=f"{namespace}/{policy}",
                          path=inside(SOURCE_MOUNT, self.settings(spec).path, f"source.{self.kind}.path"))

    def shape_backup_pod(self, draft: BackupPod, spec) -> None:
        mount_source(draft.pod, draft.agent, self.settings(spec).claim_name)

    def references(self, spec) -> list[str]:
        return [f"pvc/{self.settings(spec).claim_name}"]

    def availability(self, spec, seen: Seen) -> Availability:
        return claim_availability(seen, self.settings(spec).claim_name, f"spec.source.{self.kind}.claimName",
                                  "backups mount it read-only")


ROOM = PVCRoom()
