"""Sending notices (:mod:`lifeline.planning.notices`): in the background, retried, never in the way.

A failover must not wait for a chat robot. :meth:`Notifier.send` starts one task per target and
returns at once; each task posts the rendered notice, and tries again after a pause when the
target does not answer 2xx (up to ``RETRY_DELAYS``), then gives up with a log line and a count in
``lifeline_notifications_total{target, outcome}``. A target named by an object but not defined by
the admin is reported the same way (outcome ``unknown-target``) and nothing is sent.

A DingTalk target with a signing secret gets each attempt's URL signed afresh, at the notifier's clock
(DingTalk refuses a timestamp more than an hour off). The robots answer a refusal (a bad signature,
say) with HTTP 200 and a non-zero ``errcode``: that is a failed attempt too. Neither the secret nor a
signed URL is ever logged.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re

import aiohttp

from lifeline.clock import Clock, SystemClock
from lifeline.planning import notices
from lifeline.planning.notices import Notice, Target, dingtalk_signed_url, render

log = logging.getLogger(__name__)

RETRY_DELAYS = (1.0, 5.0, 30.0)  # pauses before the second, third and fourth attempt
TIMEOUT = 10.0  # seconds per attempt


class Notifier:
    def __init__(self, targets: dict[str, Target], metrics=None, *, delays: tuple[float, ...] = RETRY_DELAYS,
                 timeout: float = TIMEOUT, clock: Clock | None = None):
        self.targets, self.metrics = targets, metrics
        self.clock = clock or SystemClock()  # signs DingTalk requests (the operator's clock)
        self.delays, self.timeout = delays, timeout
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None  # one connection pool, made in the operator's loop

    def tell(self, body: dict, event: str, message: str, time: str) -> None:
        """Tell the targets ``body`` names (``spec.notify``) about its ``event``, when people hear of that
        kind of event (:data:`lifeline.planning.notices.NOTICES`)."""
        targets = (body.get("spec") or {}).get("notify") or []
        meta = body.get("metadata") or {}
        found = targets and notices.notice(body.get("kind") or "", event, meta.get("namespace", ""),
                                           meta.get("name", ""), message, time)
        if found:
            self.send(targets, found)

    def send(self, names: list[str], notice: Notice) -> None:
        """Post ``notice`` to each named target, in the background (call from the event loop)."""
        for name in dict.fromkeys(names):
            target = self.targets.get(name)
            if target is None:
                log.warning("notice %s of %s %s/%s: no notification target %r (the chart's notifications.targets "
                            "defines them)", notice.event, notice.kind, notice.namespace, notice.name, name)
                self._count(name, "unknown-target")
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(target, notice))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the notices in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, grace: float) -> None:
        """On shutdown: wait up to ``grace`` seconds for the notices in flight, then drop the rest (logged)."""
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("%d notice(s) still being retried were dropped at shutdown", len(pending))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, target: Target, notice: Notice) -> bool:
        body = render(target, notice)
        problem = ""
        for attempt, pause in enumerate((0.0, *self.delays)):
            if pause:
                await asyncio.sleep(pause)
            try:
                if self._session is None:
                    self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
                async with self._session.post(self._url(target), data=body,
                                              headers={"Content-Type": "application/json"}) as resp:
                    problem = "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
                    if target.format != "generic":  # the robots say why in errcode, on a 200 too
                        problem = ", ".join(filter(None, (problem, _refusal(await resp.read()))))
                    if not problem:
                        self._count(target.name, "sent")
                        return True
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                problem = type(exc).__name__ + (f": {_unsigned(str(exc))}" if str(exc) else "")
            log.info("notice %s to %s: attempt %d failed (%s)", notice.event, target.name, attempt + 1, problem)
        log.warning("notice %s of %s %s/%s not delivered to %s after %d attempts: %s", notice.event, notice.kind,
                    notice.namespace, notice.name, target.name, len(self.delays) + 1, problem)
        self._count(target.name, "failed")
        return False

    def _url(self, target: Target) -> str:
        """Where this attempt goes: a signing DingTalk target's URL signed now."""
        if not target.secret:
            return target.url
        return dingtalk_signed_url(target.url, target.secret, int(self.clock.now().timestamp() * 1000))

    def _count(self, target: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(target, outcome).inc()


def _unsigned(text: str) -> str:
    """``text`` with any URL's signature left out (some client errors quote the URL they were sent to)."""
    return re.sub(r"([?&]sign=)[^&\s'\"]*", r"\1…", text)


def _refusal(answer: bytes) -> str:
    """What a robot's 2xx answer refuses (``errcode`` not 0, e.g. 310000 "sign not match"), or ""."""
    try:
        said = json.loads(answer)
    except ValueError:
        return ""
    code = said.get("errcode", 0) if isinstance(said, dict) else 0
    return f"errcode {code}: {_unsigned(str(said.get('errmsg', '')))[:200]}" if code not in (0, "0") else ""
