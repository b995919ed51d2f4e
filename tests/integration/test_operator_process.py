"""`lifeline operator` as a process: probes come up, SIGTERM stops it cleanly."""
from __future__ import annotations

import asyncio
import json
import signal
import sys

import aiohttp

from lifeline.api import KINDS
from lifeline.devstack import install
from tests.realparts.ports import free_port


async def test_the_operator_process_serves_probes_and_stops_cleanly_on_sigterm(kube):
    """As the chart's ServiceAccount, against the real API server, watching the test's namespace."""
    port = free_port()
    since = kube.cluster.audit_position()
    config = install.operator_kubeconfig(kube.request, kube.release, kube.cluster.url, kube.cluster.ca,
                                         kube.workdir / "operator.kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifeline.cli", "operator", "--kubeconfig", str(config), "-n", kube.namespace,
        "--health-host", "127.0.0.1", "--health-port", str(port), "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession() as http:
            async def ready():
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            async with asyncio.timeout(30):
                while not await ready():
                    assert proc.returncode is None, (await proc.stdout.read()).decode()
                    await asyncio.sleep(0.05)
        await kube.wait_for(lambda: kube.watched(since) >= {k.plural for k in KINDS}, timeout=30)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            output = (await proc.stdout.read()).decode()
            code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, output
    assert "Traceback" not in output
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert records, "the operator logged nothing"
    assert all({"message", "timestamp", "severity"} <= set(r) for r in records), records[:3]
    assert any("SIGTERM" in r["message"] for r in records)
