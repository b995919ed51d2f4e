"""What the storage test servers (Azurite, fake-gcs-server, MinIO) share: a child process on a loopback
port and a scratch directory of its own, both gone when the server's ``with`` block ends."""
from __future__ import annotations

import tempfile
from pathlib import Path

from lifeline.devstack.children import ChildServer


class ScratchServer:
    prefix = "server-"  # the scratch directory's name starts so (its server's name)
    stop_timeout = 10.0  # seconds a stopping server has before SIGKILL

    def __init__(self) -> None:
        self.port = 0
        self._child: ChildServer | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def where(self) -> Path:
        assert self._dir is not None, f"{type(self).__name__} is not started"
        return Path(self._dir.name)

    def _scratch(self) -> Path:
        self._dir = tempfile.TemporaryDirectory(prefix=self.prefix)
        return self.where

    def __exit__(self, *exc) -> None:
        if self._child is not None:
            self._child.stop(self.stop_timeout)
        if self._dir is not None:
            self._dir.cleanup()
