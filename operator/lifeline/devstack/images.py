"""Which local program stands for which container image: the process kubelet's one table.

No container engine runs on the project's machines, so the process kubelet runs each container
as a local process. This table is the whole of that mapping and nothing else guesses: an image
that matches no row fails its Pod with reason ``ImageNotMapped`` and a message naming the image,
never a silent success. A row gives the image's entry point (used when a container gives no
``command``) and the directories to put first on ``PATH`` (where the image's tools live here).
"""
from __future__ import annotations

import fnmatch
import glob
import os
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LocalImage:
    pattern: str                      # fnmatch pattern on the image reference
    entrypoint: tuple[str, ...] = ()  # the image's ENTRYPOINT here; empty: the container must give a command
    path: tuple[str, ...] = ()        # directories first on PATH
    python: bool = False              # `python`/`python3` in a command means this interpreter


def _postgres_bin() -> tuple[str, ...]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return (found[-1],) if found else ()


def table() -> list[LocalImage]:
    """The rows, first match wins. The agent image is this checkout's ``lifeline`` on this Python."""
    here = os.path.dirname(sys.executable)
    return [
        LocalImage("*lifeline*", entrypoint=(sys.executable, "-m", "lifeline.cli"), path=(here,), python=True),
        LocalImage("postgres:*", entrypoint=("postgres",), path=_postgres_bin()),
        LocalImage("docker.io/library/postgres:*", entrypoint=("postgres",), path=_postgres_bin()),
        LocalImage("prom/prometheus:*", entrypoint=("prometheus",)),
        LocalImage("*/prometheus/prometheus:*", entrypoint=("prometheus",)),
        LocalImage("python:*", entrypoint=(sys.executable,), python=True),  # a test's application: this Python
        LocalImage("docker.io/library/python:*", entrypoint=(sys.executable,), python=True),
        LocalImage("busybox*", entrypoint=("sh",)),
        LocalImage("docker.io/library/busybox*", entrypoint=("sh",)),
        LocalImage("alpine*", entrypoint=("sh",)),
        LocalImage("debian*", entrypoint=("bash",)),
        LocalImage("registry.k8s.io/pause*", entrypoint=("sleep", "infinity")),
    ]


class ImageNotMapped(LookupError):
    """No row of the table runs this image here."""


def resolve(image: str) -> LocalImage:
    for row in table():
        if fnmatch.fnmatchcase(image, row.pattern):
            return row
    raise ImageNotMapped(f"image {image!r} has no local program in the process kubelet's table "
                         "(lifeline.devstack.images); add a row for it")


def argv(image: str, command: list[str], args: list[str]) -> list[str]:
    """The local argv for a container, as Kubernetes combines command, args and the entry point."""
    row = resolve(image)
    if command:
        if row.python and command[0] in ("python", "python3"):
            return [sys.executable, *command[1:], *args]
        return [*command, *args]
    if not row.entrypoint:
        raise ImageNotMapped(f"image {image!r}: its entry point is unknown here; give a command")
    return [*row.entrypoint, *args]


__all__ = ["ImageNotMapped", "LocalImage", "argv", "resolve", "table"]
