"""The demo's stand-in for the wards' screens and the on-call chat: an HTTP server on loopback that
keeps every notice the operator posts (one JSON line each in ``notices.jsonl``), so `lifeline dev
up` can show that a failover told people, in the generic and the DingTalk formats.

Given a path's signing secret, it checks each request to that path as a DingTalk robot created with
signing (加签) does: ``timestamp`` (ms) within an hour of now and ``sign`` = base64(HMAC-SHA256(secret,
"<timestamp>\\n<secret>")); otherwise it refuses with errcode 310000 (DingTalk answers such a refusal
with HTTP 200; this one answers 403, which a sender that checks only the status sees too)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

from aiohttp import web

# The chart's notifications.targets for the demo: (name, format, path on the receiver)
TARGETS = (("ward-screens", "generic", "ward-screens"), ("oncall-dingtalk", "dingtalk", "dingtalk"))


class NoticeReceiver:
    def __init__(self, log: Path, secrets: dict[str, str] | None = None, now=time.time):
        self.log = log
        self.secrets = secrets or {}  # path -> the DingTalk signing secret its requests must be signed with
        self.now = now  # seconds since the epoch, for the timestamp's hour
        self.received: list[tuple[str, dict]] = []
        self.refused: list[tuple[str, str, str]] = []  # (path, why, timestamp) of each request refused
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
        if target in self.secrets:
            why = self._unsigned(self.secrets[target], request.query.get("timestamp", ""),
                                 request.query.get("sign", ""))
            if why:
                self.refused.append((target, why, request.query.get("timestamp", "")))
                return web.json_response({"errcode": 310000, "errmsg": why}, status=403)
        self.received.append((target, body))
        with self.log.open("a") as out:
            out.write(json.dumps({"target": target, "body": body}, ensure_ascii=False) + "\n")
        return web.Response(text="ok")

    def _unsigned(self, secret: str, timestamp: str, sign: str) -> str:
        """Why a request with ``timestamp`` and ``sign`` (the query's, decoded) is not signed with
        ``secret``, as DingTalk says it; "" when it is."""
        if not (timestamp.isdigit() and sign):
            return "sign not match"
        if abs(int(timestamp) - self.now() * 1000) > 3600 * 1000:
            return "invalid timestamp"
        mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
        return "" if hmac.compare_digest(base64.b64encode(mac), sign.encode()) else "sign not match"

    def titles(self, target: str) -> list[str]:
        """What each notice to ``target`` said first (the generic event, or the robot message's title)."""
        return [b.get("event") or (b.get("markdown") or {}).get("title", "?") for t, b in self.received if t == target]
