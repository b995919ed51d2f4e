"""The demo's stand-in for the wards' screens and the on-call chat: an HTTP server on loopback that
keeps every notice the operator posts (one JSON line each in ``notices.jsonl``), so `lifeline dev
up` can show that a failover told people, in the generic and the DingTalk formats."""
from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

# The chart's notifications.targets for the demo: (name, format, path on the receiver)
TARGETS = (("ward-screens", "generic", "ward-screens"), ("oncall-dingtalk", "dingtalk", "dingtalk"))


class NoticeReceiver:
    def __init__(self, log: Path):
        self.log = log
        self.received: list[tuple[str, dict]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def targets(self) -> list[dict]:
        return [{"name": name, "url": f"{self.url}/{path}", "format": fmt} for name, fmt, path in TARGETS]

    async def start(self) -> "NoticeReceiver":
        app = web.Application()
        app.router.add_post("/{target}", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _take(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="not JSON")
        target = request.match_info["target"]
        self.received.append((target, body))
        with self.log.open("a") as out:
            out.write(json.dumps({"target": target, "body": body}, ensure_ascii=False) + "\n")
        return web.Response(text="ok")

    def titles(self, target: str) -> list[str]:
        """What each notice to ``target`` said first (the generic event, or the robot message's title)."""
        return [b.get("event") or (b.get("markdown") or {}).get("title", "?") for t, b in self.received if t == target]
