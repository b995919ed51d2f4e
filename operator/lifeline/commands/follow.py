"""A Job's progress where the person looks: ``backup now --wait``, ``drill run``, ``restore status --wait``.

The agent in a backup or restore Job writes a structured line to its log every 2 s and at the end
(:mod:`lifeline.agent.progress`). :class:`JobLog` finds the Job's Pod once it runs and follows the
agent container's log (:meth:`lifeline.kube.Kube.follow_pod_log`); :class:`Display` draws what it
reads: a one-line bar rewritten in place (``\\r``) on a terminal, as wide as the terminal, and a plain
line every :data:`PLAIN_EVERY` seconds (and the last one) when the output is a file or a pipe.

Reading a Pod's log takes ``list`` on ``pods`` and ``get`` on ``pods/log`` in the Job's namespace. A
person without them is told so once, and the command goes on waiting on the object's status alone.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time

from lifeline.agent.progress import bar_text, fraction, parse_line, plain_text
from lifeline.kube import PODS, Kube, KubeError
from lifeline.labels import LABEL_JOB_NAME
from lifeline.sources.base import AGENT

PLAIN_EVERY = 10.0  # seconds between plain progress lines when the output is not a terminal
TAIL = 200  # log lines read back when a Pod is joined late: the latest progress line is among them
_MISSING = object()


class Display:
    """One line of status or progress: rewritten in place on a terminal, printed as it changes otherwise."""

    def __init__(self, out=None, *, plain_every: float = PLAIN_EVERY, clock=time.monotonic):
        self.out = out or sys.stdout
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self.plain_every, self.clock = plain_every, clock
        self.records: dict = {}  # the latest record of each destination
        self.key = _MISSING
        self.showing: str | None = None  # "status" or "bar": what the line shows now
        self.drawn = 0  # characters on the terminal's line now
        self.printed_at: float | None = None

    def status(self, text: str, key=None) -> None:
        """A status line. With the same ``key`` as before it only refreshes a status line (elapsed time),
        never a progress bar; a new key takes the line over."""
        changed = key != self.key
        self.key = key
        if not changed and self.showing == "bar":
            return
        self.showing = "status"
        if self.tty:
            self._draw(text)
        elif changed:
            self._print(text)

    def update(self, record: dict) -> None:
        """A progress record (:func:`lifeline.agent.progress.parse_line`)."""
        self.records[record.get("destination")] = record
        self.showing = "bar"
        if self.tty:
            self._draw(bar_text(self.current(), self._width()))
            return
        now = self.clock()
        if record.get("done") or self.printed_at is None or now - self.printed_at >= self.plain_every:
            self._print(plain_text(record))
            self.printed_at = now

    def current(self) -> dict | None:
        """The record to draw: the destination furthest behind."""
        if not self.records:
            return None
        return min(self.records.values(), key=lambda r: (r.get("done"), fraction(r) or 0.0, r["bytes"]))

    def note(self, text: str) -> None:
        """A message on stderr, below the line."""
        self.end()
        print(text, file=sys.stderr, flush=True)

    def end(self) -> None:
        """Leave the line as it is: what is printed next starts below it."""
        if self.drawn:
            self._write("\n")
            self.drawn = 0

    def _width(self) -> int:
        try:
            columns = os.get_terminal_size(self.out.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        return columns or shutil.get_terminal_size((80, 24)).columns

    def _draw(self, text: str) -> None:
        self._write("\r" + text + " " * max(0, self.drawn - len(text)))
        self.drawn = max(1, len(text))

    def _print(self, text: str) -> None:
        self.end()
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass


class JobLog:
    """Follows the agent's log in the Pods of one or more Jobs and feeds a :class:`Display`.

    :meth:`follow` says where (a namespace, the Jobs' names, tried together: a snapshot's trigger and
    its data mover); a background task lists their Pods, follows the newest one not read to its end,
    and gives up for good, saying why once, when the person may not read them."""

    def __init__(self, kube: Kube, display: Display, who: str, *, container: str = AGENT, poll: float = 2.0):
        self.kube, self.display, self.who = kube, display, who
        self.container, self.poll = container, poll
        self.target: tuple[str, tuple[str, ...]] | None = None
        self.refused: str | None = None
        self.finishing = False
        self._task: asyncio.Task | None = None

    def follow(self, namespace: str, jobs) -> None:
        target = (namespace, tuple(jobs))
        if target != self.target:
            self.target = target
        if self._task is None and self.refused is None:
            self._task = asyncio.create_task(self._run())

    async def finish(self, timeout: float = 5.0) -> None:
        """The Job has ended: read what its Pod wrote to the end (a Pod not joined yet: once), then stop."""
        self.finishing = True
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - progress is a courtesy: never fail the command
            pass
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._task = None

    def _refuse(self, namespace: str, exc: KubeError) -> None:
        self.refused = str(exc)
        self.display.note(
            f"{self.who}: cannot show the Job's progress: {exc}. Reading a Job's log takes `list` on pods and "
            f"`get` on pods/log in namespace {namespace} (a hospital's operator role usually has them); "
            "waiting on the status alone")

    async def _run(self) -> None:
        done: dict[str, str] = {}  # Pods read to their end: uid -> creationTimestamp
        while True:
            namespace, jobs = self.target
            pod = None
            try:
                pods = await self.kube.list(PODS, namespace, label_selector=f"{LABEL_JOB_NAME} in ({','.join(jobs)})")
                pod = self._pick(pods, done)
            except KubeError as exc:
                if exc.status in (401, 403):
                    return self._refuse(namespace, exc)
            if pod is not None:
                meta = pod["metadata"]
                try:
                    async for line in self.kube.follow_pod_log(namespace, meta["name"], self.container,
                                                               tail_lines=TAIL):
                        record = parse_line(line)
                        if record is not None:
                            self.display.update(record)
                    if await self._ended(namespace, meta["name"]):
                        done[meta["uid"]] = meta.get("creationTimestamp") or ""
                        continue  # the next Pod (a retry, the data mover) or, finishing, the end
                except KubeError as exc:
                    if exc.status in (401, 403):
                        return self._refuse(namespace, exc)
                    # 400: the container is not started yet; 404: the Pod is gone; no answer: try again
            elif self.finishing:
                return
            await asyncio.sleep(self.poll)

    def _pick(self, pods: list[dict], done: dict[str, str]) -> dict | None:
        """The newest Pod whose agent container has started and was not read to its end, and no older
        than one that was (an earlier attempt's figures never come back over a later one's)."""
        def started(pod: dict) -> bool:
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            state = next((s.get("state") or {} for s in statuses if s.get("name") == self.container), {})
            return "running" in state or "terminated" in state
        since = max(done.values(), default="")
        left = [p for p in pods if p["metadata"]["uid"] not in done and started(p)
                and (p["metadata"].get("creationTimestamp") or "") >= since]
        return max(left, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)

    async def _ended(self, namespace: str, pod: str) -> bool:
        """Whether the agent container has ended (a log stream can also end because a connection did)."""
        body = await self.kube.get(PODS, namespace, pod, missing_ok=True)
        if body is None:
            return True
        statuses = (body.get("status") or {}).get("containerStatuses") or []
        state = next((s.get("state") or {} for s in statuses if s.get("name") == self.container), {})
        return "running" not in state
