"""Readiness probes as a kubelet runs them: exec in the container, HTTP GET, TCP connect.

Pods share this machine's network, so a probe's host is 127.0.0.1 unless it names another.
"""
from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from . import images
from .pod_volumes import expand


async def run_probe(spec: dict, container) -> bool:
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "exec" in spec:
            argv = images.argv(container.spec.get("image", ""),
                               [container.rewrite(expand(a, container.env)) for a in spec["exec"]["command"]], [])
            proc = await asyncio.create_subprocess_exec(*argv, env=container.env, stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            try:
                return await asyncio.wait_for(proc.wait(), timeout) == 0
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                return False
        if "httpGet" in spec:
            get = spec["httpGet"]
            port = _port(get["port"], container.spec)
            url = f"{get.get('scheme', 'HTTP').lower()}://{get.get('host') or '127.0.0.1'}:{port}{get.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            async with aiohttp.ClientSession() as session:
                async with session.get(url, headers=headers, ssl=False,
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    return 200 <= resp.status < 400
        if "tcpSocket" in spec:
            sock = spec["tcpSocket"]
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(sock.get("host") or "127.0.0.1", _port(sock["port"], container.spec)), timeout)
            writer.close()
            return True
    except (OSError, asyncio.TimeoutError, aiohttp.ClientError, images.ImageNotMapped):
        return False
    return False


def _port(port, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise OSError(f"no container port named {port!r}")


__all__ = ["run_probe"]
