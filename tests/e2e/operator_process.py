"""The real operator in its own process, so a test can kill it the hard way (SIGKILL: no shutdown
handlers, no final writes), with a clock the test moves through a file.

Run as a program (``python -m tests.e2e.operator_process KUBECONFIG CLOCK_FILE HEALTH_PORT [NS...]``)
it starts :func:`lifeline.runtime.run` exactly as ``lifeline operator`` does, except that its clock
reads the time from ``CLOCK_FILE``. :class:`SharedClock` is the test's side: a FrozenClock that
writes every move to that file, so the test and the operator process agree on the time.

:func:`operator_for` starts it as the chart's operator would run: logged in as the chart's
ServiceAccount (a TokenRequest kubeconfig: exactly the chart's RBAC), serving the chart's admission
webhooks on the release's port with the chart's serving certificate, watching the test's namespace.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from lifeline.api import KINDS
from lifeline.clock import FrozenClock
from lifeline.devstack import install
from lifeline.devstack.children import free_port

ROOT = Path(__file__).resolve().parents[2]
KIND_PLURALS = {k.plural for k in KINDS}


class FileClock:
    """Time as the file says (ISO 8601), re-read only when the file changes."""

    def __init__(self, path: Path):
        self.path, self._stamp, self._now = Path(path), None, None

    def now(self) -> datetime:
        stamp = self.path.stat().st_mtime_ns
        if stamp != self._stamp:
            self._now, self._stamp = datetime.fromisoformat(self.path.read_text().strip()), stamp
        return self._now


class SharedClock(FrozenClock):
    """The test's clock; every advance is written where the operator process reads it."""

    def __init__(self, start: datetime, path: Path):
        self.path = Path(path)
        super().__init__(start)
        self._publish()

    @classmethod
    def at_real_now(cls, path: Path) -> "SharedClock":
        """Frozen at real now: Pods run on real time, so the clock starts where they do."""
        return cls(datetime.now(timezone.utc).replace(microsecond=0), path)

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._publish()

    def _publish(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(self.now().isoformat())
        os.replace(tmp, self.path)


class OperatorProcess:
    """``lifeline operator`` with a file clock, as a child process of the test; killable."""

    def __init__(self, kubeconfig: Path, clock: SharedClock, log: Path, namespaces: list[str] = (),
                 env: dict | None = None):
        self.port = free_port()
        self.log = log
        self._log_file = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.operator_process", str(kubeconfig), str(clock.path), str(self.port),
             *namespaces],
            cwd=ROOT, stdout=self._log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)]), **(env or {})})

    async def metrics(self) -> str:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/metrics") as r:
                return await r.text()
        except aiohttp.ClientError:
            return ""

    async def metric(self, sample: str, /, **labels) -> float:
        want = {f'{k}="{v}"' for k, v in labels.items()}
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if line.startswith(sample + "{") and want <= set(line[len(sample) + 1:line.index("}")].split(",")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def ready(self, watched: Callable[[], set[str]], kinds: set[str] = KIND_PLURALS,
                    timeout: float = 60) -> "OperatorProcess":
        """Wait until it answers /readyz and ``watched()`` (what the API server saw it watch since it
        started) covers ``kinds``: kopf says ready before its first list."""
        async def check():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited {self.proc.returncode}; see {self.log}")
            try:
                async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.port}/readyz") as r:
                    up = r.status == 200
            except aiohttp.ClientError:
                up = False
            return up and (await asyncio.to_thread(watched)) >= kinds

        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)  # polling a process that reports nothing through the API
        return self

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to finish anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log_file.close()

    async def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` (waited for in a thread: the loop stays free)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


async def operator_for(kube, clock: SharedClock, log: Path) -> OperatorProcess:
    """The operator as the chart runs it (its ServiceAccount, its webhooks), watching the test's
    namespace (``kube``: :class:`tests.live_kube.LiveKube`), once it watches every Lifeline kind."""
    cluster, release = kube.cluster, kube.release
    workdir = kube.workdir
    config = install.operator_kubeconfig(cluster.request, release, cluster.url, cluster.ca,
                                         workdir / "operator-sa.kubeconfig")
    certs = install.webhook_certificates(cluster.request, release, workdir / "webhook-tls")
    mark = cluster.audit_position()

    def watched() -> set[str]:
        return {e["objectRef"]["resource"] for e in cluster.watches(release.service_account, since=mark)
                if (e.get("objectRef") or {}).get("namespace") == kube.namespace}

    env = {"LIFELINE_WEBHOOK_PORT": str(release.webhook_port), "LIFELINE_WEBHOOK_CERT_DIR": str(certs),
           "LIFELINE_WEBHOOK_HOST": "127.0.0.1", "LIFELINE_WEBHOOK_ADDR": "127.0.0.1"}
    if client_ca := install.webhook_client_ca_file(release, workdir):
        env["LIFELINE_WEBHOOK_CLIENT_CA"] = str(client_ca)
    process = OperatorProcess(config, clock, log, [kube.namespace], env=env)
    try:
        return await process.ready(watched)
    except BaseException:
        await process.stop()
        raise


def main(argv: list[str]) -> None:
    import kopf

    from lifeline.runtime import Options, make_context, run

    kopf.configure(log_format=kopf.LogFormat.PLAIN)  # as `lifeline operator` logs, into the test's log file
    kubeconfig, clock_file, port, *namespaces = argv
    options = Options(health_host="127.0.0.1", health_port=int(port), kubeconfig=kubeconfig, namespaces=namespaces,
                      metrics_auth="none")
    ctx = make_context(options, clock=FileClock(Path(clock_file)))
    asyncio.run(run(ctx))


if __name__ == "__main__":
    main(sys.argv[1:])
