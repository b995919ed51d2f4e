"""``source.command``: the byte stream a dump command (``pg_dump -Fc``) writes to its stdout.

The dump tool runs in its own image and needs only ``/bin/sh``: an init container makes a FIFO in
a shared emptyDir (``/dump/stream``), the ``dump`` container writes the command's stdout into it and
its exit status to ``/dump/exit-code``, and the agent reads the FIFO and publishes the point only
when the dump exited 0. Its points come back piped into a load command (``pg_restore``)."""
from __future__ import annotations

import posixpath

from lifeline.messages import SourcePlan, StreamPlan

from .base import (JOB_COMMAND, SMALL_RESOURCES, Availability, BackupPod, Seen, SourceRoom, container_security,
                   env_secret_problem, env_secrets, env_var)

DUMP_MOUNT = "/dump"
FIFO = f"{DUMP_MOUNT}/stream"
EXIT_CODE = f"{DUMP_MOUNT}/exit-code"
# The dump container's whole program: run the command into the FIFO, publish its status.
DUMP_SCRIPT = (
    f'"$@" > {FIFO}; rc=$?; echo "$rc" > {EXIT_CODE}.tmp && mv {EXIT_CODE}.tmp {EXIT_CODE}; exit "$rc"'
)


class CommandRoom(SourceRoom):
    kind = "command"
    attribute = "command"
    restores_into = "command"

    def job_source(self, namespace, policy, spec, served=()) -> SourcePlan:
        program = posixpath.basename(self.settings(spec).command[0]) or "dump"
        return SourcePlan(kind=self.kind, name=f"{namespace}/{policy}", path=FIFO,
                          stream=StreamPlan(exit_code=EXIT_CODE, name=f"{program}.out"))

    def shape_backup_pod(self, draft: BackupPod, spec) -> None:
        cmd = self.settings(spec)
        draft.pod["volumes"].append({"name": "dump", "emptyDir": {}})
        draft.agent["volumeMounts"].append({"name": "dump", "mountPath": DUMP_MOUNT})
        draft.pod["initContainers"] = [{
            "name": "prepare", "image": draft.image, "imagePullPolicy": "IfNotPresent",
            "command": list(JOB_COMMAND), "args": ["prepare", "--fifo", FIFO],
            "resources": SMALL_RESOURCES, "securityContext": container_security(),
            "volumeMounts": [{"name": "dump", "mountPath": DUMP_MOUNT}],
        }]
        draft.pod["containers"].insert(0, {
            "name": "dump", "image": cmd.image,
            "command": ["/bin/sh", "-c", DUMP_SCRIPT, "lifeline-dump", *cmd.command],
            "env": [env_var(e) for e in cmd.env] + [{"name": "HOME", "value": "/tmp"}],
            "resources": draft.resources, "securityContext": container_security(),
            "volumeMounts": [{"name": "dump", "mountPath": DUMP_MOUNT}, {"name": "tmp", "mountPath": "/tmp"}],
        })

    def container_env(self, spec):
        return list(self.settings(spec).env)

    def references(self, spec) -> list[str]:
        return env_secrets(self.settings(spec).env)

    def availability(self, spec, seen: Seen) -> Availability:
        cmd = self.settings(spec)
        problem = env_secret_problem(cmd.env, seen, "the dump command")
        if problem:
            return Availability(False, *problem)
        return Availability(True, "DumpCommand",
                            f"the dump runs {' '.join(cmd.command)!r} in image {cmd.image} (it needs /bin/sh; "
                            "its stdout is streamed to the agent through a FIFO)")


ROOM = CommandRoom()
