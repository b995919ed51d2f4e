"""``source.continuous``: a directory of closed, append-only log segments (PostgreSQL's WAL archive).

A shipper Deployment sends each closed segment to every destination as it appears
(:mod:`lifeline.planning.continuous`); the policy's schedules take full copies to replay from:
the segment directory itself, or with ``postgres`` a base backup made by ``pg_basebackup``, which
runs in the database's own image as the backup pod's init container (the agent image has no
PostgreSQL client) and leaves a plain copy in an emptyDir that lives only as long as the Job."""
from __future__ import annotations

from lifeline.messages import SourcePlan

from .base import (SOURCE_MOUNT, Availability, BackupPod, Seen, SourceRoom, claim_availability,
                   container_security, env_secret_problem, env_secrets, env_var, inside, mount_source)

BASEBACKUP_MOUNT = "/basebackup"
BASEBACKUP_DATA = f"{BASEBACKUP_MOUNT}/data"
# The agent stores the copy tagged as a base backup (lifeline.agent.base_backup_job).
BASEBACKUP_COMMAND = ("python", "-m", "lifeline.agent.base_backup_job")


class ContinuousRoom(SourceRoom):
    kind = "continuous"
    attribute = "continuous"
    ships_segments = True

    def job_source(self, namespace, policy, spec, served=()) -> SourcePlan:
        src = self.settings(spec)
        if src.postgres is not None:
            return SourcePlan(kind=self.kind, name=f"{namespace}/{policy}", path=BASEBACKUP_DATA, base_backup=True)
        return SourcePlan(kind=self.kind, name=f"{namespace}/{policy}",
                          path=inside(SOURCE_MOUNT, src.path, f"source.{self.kind}.path"))

    def shape_backup_pod(self, draft: BackupPod, spec) -> None:
        src = self.settings(spec)
        pg = src.postgres
        if pg is None:
            mount_source(draft.pod, draft.agent, src.claim_name)
            return
        # the copy comes from the server, not from the segment directory
        draft.pod["volumes"].append({"name": "basebackup", "emptyDir": {}})
        draft.agent["command"] = list(BASEBACKUP_COMMAND)
        draft.agent["volumeMounts"].append({"name": "basebackup", "mountPath": BASEBACKUP_MOUNT, "readOnly": True})
        draft.pod["initContainers"] = [{
            "name": "pg-basebackup", "image": pg.image, "imagePullPolicy": "IfNotPresent",
            "command": ["pg_basebackup", "-D", BASEBACKUP_DATA, "-Fp", "-X", "fetch", "--checkpoint=fast",
                        "--no-sync", "--no-password", *pg.args],
            "env": [env_var(e) for e in pg.env] + [{"name": "HOME", "value": "/tmp"}],
            "resources": draft.resources, "securityContext": container_security(),
            "volumeMounts": [{"name": "basebackup", "mountPath": BASEBACKUP_MOUNT},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }]

    def references(self, spec) -> list[str]:
        src = self.settings(spec)
        return [f"pvc/{src.claim_name}"] + (env_secrets(src.postgres.env) if src.postgres is not None else [])

    def availability(self, spec, seen: Seen) -> Availability:
        src = self.settings(spec)
        pg = src.postgres
        works = "backups mount it read-only; the shipper Deployment (<policy>-ship) ships each closed segment from it"
        if pg is not None:
            works += f"; base backups run pg_basebackup from image {pg.image}"
        found = claim_availability(seen, src.claim_name, f"spec.source.{self.kind}.claimName", works)
        problem = env_secret_problem(pg.env, seen, "pg_basebackup") if pg is not None and found.status else None
        return Availability(False, *problem) if problem else found


ROOM = ContinuousRoom()
