"""pods/exec for the API emulator: the v4 channel websocket protocol, with a registered callback.

The real API server upgrades ``GET /api/v1/namespaces/{ns}/pods/{pod}/exec?command=...`` to a
websocket (subprotocol ``v4.channel.k8s.io``) and relays the container's streams as binary
messages whose first byte is the channel: 1 stdout, 2 stderr, 3 the closing Status
(``Success``, or ``Failure``/``NonZeroExitCode`` with the exit code in
``details.causes[0].message``). This module serves exactly that, so the operator's exec call
(``lifeline.kube.exec_in_pod``, the kubernetes client's ``stream``) runs unchanged against it.

What runs is no container: the emulator's :attr:`ExecHandler` callback (``emulator.exec_handler``)
gets the request and returns ``(exit_code, stdout, stderr)``; tests register one to record what
ran and when. Like the real server, it answers 404 for a missing pod, 400 for a container the
pod does not have or a pod that is not Running, and refuses a request that is not a websocket.
"""
from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import aiohttp.web

PROTOCOLS = ("v4.channel.k8s.io",)
EXEC_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/exec$")
STDOUT, STDERR, ERROR = 1, 2, 3


@dataclass(frozen=True)
class ExecRequest:
    namespace: str
    pod: str
    container: str
    command: list[str]
    pod_object: dict


ExecHandler = Callable[[ExecRequest], "tuple[int, str | bytes, str | bytes] | Awaitable[tuple]"]


def status_of(exit_code: int) -> dict:
    """The closing Status on the error channel, as the kubelet's exec stream sends it."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: "
            f"error executing command, exit status {exit_code}", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return aiohttp.web.json_response(body, status=code)


def _bytes(data) -> bytes:
    return data if isinstance(data, bytes) else str(data or "").encode()


async def serve_exec(request: aiohttp.web.BaseRequest, match: re.Match, find_pod: Callable[[str, str], dict | None],
                     handler: ExecHandler | None) -> aiohttp.web.StreamResponse:
    """Answer one exec request (``find_pod(namespace, name)`` reads the stored pod)."""
    namespace, name = match["ns"], match["pod"]
    pod = find_pod(namespace, name)
    if pod is None:
        return _status(404, "NotFound", f'pods "{name}" not found')
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    container = request.query.get("container") or (containers[0] if len(containers) == 1 else None)
    if container is None:
        return _status(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                                          f"[{' '.join(containers)}]")
    if container not in containers:
        return _status(400, "BadRequest", f"container {container} is not valid for pod {name}")
    if (pod.get("status") or {}).get("phase") != "Running":
        return _status(400, "BadRequest", "cannot exec into a container in a completed pod; current phase is "
                                          f"{(pod.get('status') or {}).get('phase') or 'Pending'}")
    command = request.query.getall("command", [])
    if not command:
        return _status(400, "BadRequest", "you must specify at least 1 command")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return _status(400, "BadRequest", "Upgrade request required")
    ws = aiohttp.web.WebSocketResponse(protocols=PROTOCOLS)
    await ws.prepare(request)
    if handler is None:
        code, out, err = 126, b"", b"the emulator has no exec handler registered (emulator.exec_handler)\n"
    else:
        try:
            result = handler(ExecRequest(namespace, name, container, list(command), pod))
            if inspect.isawaitable(result):
                result = await result
            code, out, err = result
        except Exception as exc:  # noqa: BLE001 - the handler is the "container": it failing is exit 1
            code, out, err = 1, b"", f"{type(exc).__name__}: {exc}\n".encode()
    for channel, data in ((STDOUT, _bytes(out)), (STDERR, _bytes(err))):
        if data:
            await ws.send_bytes(bytes([channel]) + data)
    await ws.send_bytes(bytes([ERROR]) + json.dumps(status_of(int(code))).encode())
    await asyncio.sleep(0)
    await ws.close()
    return ws
