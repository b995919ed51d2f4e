"""An emulator served over HTTP on a port that stays fixed while a test takes it down and brings it back.

What an API server restart (a new server over the same store, as etcd outlives the apiserver) or a
site going dark looks like to a client: connections refused, then the same URL answering again.
"""
from __future__ import annotations

import contextlib

from lifeline.devstack.emulator import serve


class Served:
    """``up()`` serves the emulator (on a free port the first time, the same port after); ``down()`` stops it."""

    def __init__(self, emulator):
        self.emulator, self.port, self.url = emulator, 0, ""
        self._stack: contextlib.AsyncExitStack | None = None

    async def up(self) -> str:
        self._stack = contextlib.AsyncExitStack()
        self.url = await self._stack.enter_async_context(serve(self.emulator, port=self.port))
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    async def down(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
