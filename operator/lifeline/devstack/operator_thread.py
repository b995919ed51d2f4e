"""Run the real operator in its own thread and event loop, beside the test or scene that drives it.

Its own loop, as in a pod: kopf treats every task born in its loop after start-up as its own and
waits for them at shutdown, so the caller's tasks (a stand-in CSI driver's watches, say) would hold
every stop for kopf's five-second grace period. Used by the tests, with a frozen clock they move.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from lifeline.api import KINDS
from lifeline.clock import Clock
from lifeline.runtime import Context, Options, make_context, run


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll ``predicate`` for outcomes that cause no API write to wake on; return its value."""
    async with asyncio.timeout(timeout):
        while not (value := predicate()):
            await asyncio.sleep(0.02)
    return value


@contextlib.asynccontextmanager
async def running_operator(kubeconfig: Path, watched: Callable[[], set[str]], *, clock: Clock | None = None,
                           namespaces: list[str] | None = None, peering: str | None = None,
                           priority: int = 0, **options) -> AsyncIterator[Context]:
    """Start the operator, wait until it watches every kind, stop it cleanly on exit.

    ``watched()`` answers which Lifeline plurals the API has seen the operator watch; ``options``
    are further :class:`~lifeline.runtime.Options` (the webhook's port and certificates, say).
    """
    options.setdefault("metrics_auth", "none")  # on loopback; tests/security/test_metrics_auth turns it on
    options = Options(health_host="127.0.0.1", health_port=0, kubeconfig=str(kubeconfig),
                      namespaces=namespaces or [], peering=peering, priority=priority, **options)
    ctx = make_context(options, clock=clock)
    stop, ready = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run(ctx, stop=stop, ready=ready))
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=main, name="lifeline-operator", daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 30)
    if failure:
        raise RuntimeError("operator failed to start") from failure[0]
    if not ready.is_set():
        raise TimeoutError("operator did not become ready in 30s")
    # kopf says ready before its first list; the first write must not race the watches.
    await until(lambda: watched() >= {k.plural for k in KINDS}, timeout=30)
    try:
        yield ctx
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        if thread.is_alive():
            raise TimeoutError("operator did not stop within 30s of its stop flag")
        if failure:
            raise RuntimeError("operator failed") from failure[0]
