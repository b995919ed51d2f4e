"""The process kubelet: a Kubernetes node whose Pods are local processes.

No container engine runs on the project's machines, so this stands where the kubelet and the
container runtime would, and talks to the real API server the way a kubelet does, as
``system:node:<name>`` (the Node authorizer and NodeRestriction judge it):

- registers its Node (Ready, capacity, addresses, the port it serves on) and renews its Lease in
  ``kube-node-lease`` every 10 seconds, so the node-lifecycle controller keeps it Ready and takes
  the not-ready taint off;
- watches the Pods the scheduler binds to it and runs each with a
  :class:`~lifeline.devstack.pod_worker.PodWorker`; a Pod being deleted gets SIGTERM, its grace
  period, SIGKILL, and is then removed as a kubelet removes it (grace period 0, uid precondition);
- serves, over TLS and only to the API server's kubelet client certificate, ``containerLogs``
  (``kubectl logs``) and ``exec`` over SPDY/3.1 streams, which is what the API server speaks to a
  kubelet whatever its own client spoke (``kubectl exec``, the Python client's websocket).

Run as ``python -m lifeline.devstack.process_kubelet --kubeconfig ... --node ...``;
:class:`lifeline.devstack.cluster.Cluster` starts it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import re
import signal
import ssl
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from . import images, spdy
from .cluster_version import KUBE_VERSION
from .kube_http import ApiError, KubeHTTP, MERGE, STRATEGIC
from .pod_volumes import expand
from .pod_worker import PodWorker, killpg, now

log = logging.getLogger("lifeline.kubelet")
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
STATUS_EVERY = 60.0
APISERVER_CLIENT = "kube-apiserver-kubelet-client"


def micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ProcessKubelet:
    def __init__(self, kubeconfig: Path, node: str, port: int, root: Path, ca: Path):
        self.api = KubeHTTP(kubeconfig)
        self.node = node
        self.port = port
        self.root = root
        self.ca = ca
        self.workers: dict[str, PodWorker] = {}  # pod uid -> worker
        self.tasks: dict[str, asyncio.Task] = {}
        self.deleting: set[str] = set()

    # ---- the node ----------------------------------------------------------------------------

    def _node_status(self) -> dict:
        t = now()
        def cond(kind: str, status: str, reason: str, message: str) -> dict:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": t, "lastTransitionTime": self._since}
        resources = {"cpu": "16", "memory": "64Gi", "pods": "250", "ephemeral-storage": "100Gi"}
        return {"capacity": resources, "allocatable": resources,
                "conditions": [cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                               cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                               cond("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                               cond("Ready", "True", "KubeletReady", "process kubelet is posting ready status")],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.node}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                             "osImage": "process kubelet (lifeline devstack)", "containerRuntimeVersion":
                             "process://lifeline", "kubeletVersion": KUBE_VERSION, "kubeProxyVersion": "",
                             "operatingSystem": "linux", "architecture": "amd64"}}

    async def register(self) -> None:
        self._since = now()
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {
                    "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "process"}},
                "spec": {}}
        with contextlib.suppress(ApiError):
            await self.api.request("POST", "/api/v1/nodes", body)
        await self.api.request("PATCH", f"/api/v1/nodes/{self.node}/status", {"status": self._node_status()},
                               content_type=STRATEGIC)

    async def heartbeat(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        last_status = asyncio.get_running_loop().time()
        while True:
            spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_now()}
            try:
                lease = await self.api.request("GET", path, missing_ok=True)
                if lease is None:
                    node = await self.api.request("GET", f"/api/v1/nodes/{self.node}")
                    await self.api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.node, "namespace": "kube-node-lease",
                                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node,
                                                          "uid": node["metadata"]["uid"]}]},
                        "spec": spec})
                else:
                    await self.api.request("PATCH", path, {"spec": spec}, content_type=MERGE)
                if asyncio.get_running_loop().time() - last_status > STATUS_EVERY:
                    await self.api.request("PATCH", f"/api/v1/nodes/{self.node}/status",
                                           {"status": self._node_status()}, content_type=STRATEGIC)
                    last_status = asyncio.get_running_loop().time()
            except (ApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("heartbeat: %s", exc)
            await asyncio.sleep(RENEW_EVERY)

    # ---- pods ------------------------------------------------------------------------------------

    async def watch_pods(self) -> None:
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.node}"}
        while True:
            try:
                listed = await self.api.request("GET", path, params=selector)
                seen = set()
                for pod in listed.get("items") or []:
                    seen.add(pod["metadata"]["uid"])
                    await self.on_pod(pod)
                for uid in set(self.workers) - seen:
                    self.forget(uid)
                rv = listed["metadata"]["resourceVersion"]
                while True:
                    async for event in self.api.watch(path, {**selector, "resourceVersion": rv,
                                                             "timeoutSeconds": "300"}):
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            raise ApiError(obj.get("code", 500), obj.get("message", "watch error"))
                        rv = obj["metadata"]["resourceVersion"]
                        if kind == "DELETED":
                            self.forget(obj["metadata"]["uid"])
                        elif kind in ("ADDED", "MODIFIED"):
                            await self.on_pod(obj)
            except (ApiError, aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                log.info("pod watch restarts: %s", exc)
                await asyncio.sleep(0.5)

    async def on_pod(self, pod: dict) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        phase = (pod.get("status") or {}).get("phase")
        if meta.get("deletionTimestamp"):
            if uid not in self.deleting:
                self.deleting.add(uid)
                asyncio.create_task(self.remove(pod))
            return
        if uid in self.workers:
            self.workers[uid].pod["metadata"] = meta  # labels and annotations for the downward API
            return
        if phase in ("Succeeded", "Failed"):
            return  # finished before this kubelet started: nothing to run
        root = self.root / "pods" / uid
        worker = PodWorker(self.api, pod, root, api_url=self.api.url)
        self.workers[uid] = worker
        self.tasks[uid] = asyncio.create_task(worker.run(), name=f"pod-{meta['namespace']}/{meta['name']}")

    async def remove(self, pod: dict) -> None:
        """Terminate a Pod being deleted, then delete it for good, as a kubelet finishes a deletion."""
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if worker is not None:
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            await worker.terminate(float(grace))
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}
        with contextlib.suppress(ApiError):
            await self.api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        self.forget(uid)

    def forget(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        task = self.tasks.pop(uid, None)
        if worker is not None:
            worker.kill_now()
        if task is not None:
            task.cancel()

    def find(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            if worker.ns == namespace and worker.name == name:
                return worker
        return None

    def stop_all(self) -> None:
        for uid in list(self.workers):
            self.forget(uid)

    # ---- what the API server proxies here: logs and exec ------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.1 request on a TLS connection from the API server, then the connection closes."""
        try:
            request = await read_request(reader)
            if request is None:
                return
            method, path, query, headers = request
            cert = writer.get_extra_info("peercert") or {}
            subject = dict(x[0] for x in cert.get("subject", ()))
            if path == "/healthz":
                await respond(writer, 200, b"ok")
            elif subject.get("commonName") != APISERVER_CLIENT:
                await respond(writer, 403, b"only the API server may call the kubelet")
            elif (m := LOGS.fullmatch(path)) and method == "GET":
                await self.container_logs(writer, *m.groups(), query)
            elif (m := EXEC.fullmatch(path)) and method in ("GET", "POST"):
                ns, pod, container = m.group(1), m.group(2), m.group(4) or m.group(3)
                await self.exec(reader, writer, ns, pod, container, query, headers)
            else:
                await respond(writer, 404, b"not found")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:  # noqa: BLE001 - one bad request must not end the server
            log.exception("kubelet request failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    def _running(self, ns: str, pod: str, container: str):
        worker = self.find(ns, pod)
        return worker.container(container) if worker else None

    async def container_logs(self, writer, ns: str, pod: str, container: str, query: dict) -> None:
        c = self._running(ns, pod, container)
        if c is None or c.log_path is None or not c.log_path.exists():
            await respond(writer, 404, f"container {container} of {ns}/{pod} not found or not started".encode())
            return
        data = c.log_path.read_bytes()
        if "tailLines" in query:
            tail = int(query["tailLines"][0])
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if "limitBytes" in query:
            data = data[:int(query["limitBytes"][0])]
        if query.get("follow", [""])[0] not in ("true", "1"):
            await respond(writer, 200, data)
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + data)
        await writer.drain()
        offset = c.log_path.stat().st_size
        while True:
            alive = c.proc is not None and c.proc.returncode is None
            size = c.log_path.stat().st_size
            if size > offset:
                with open(c.log_path, "rb") as f:
                    f.seek(offset)
                    writer.write(f.read(size - offset))
                await writer.drain()
                offset = size
            if not alive:
                return
            await asyncio.sleep(0.2)

    async def exec(self, reader, writer, ns: str, pod: str, container: str, query: dict, headers: dict) -> None:
        """``exec`` as a kubelet serves it: SPDY streams (error, stdin, stdout, stderr), v4 status on error."""
        c = self._running(ns, pod, container)
        if c is None or c.proc is None or c.proc.returncode is not None:
            await respond(writer, 404, f"container {container} of {ns}/{pod} not found or not running".encode())
            return
        command = query.get("command", [])
        if "spdy/3.1" not in headers.get("upgrade", "").lower():
            await respond(writer, 400, b"exec needs an Upgrade: SPDY/3.1 connection")
            return
        offered = [v.strip() for v in headers.get("x-stream-protocol-version", "").split(",") if v.strip()]
        protocol = next((p for p in PROTOCOLS if p in offered), None)
        if protocol is None:
            await respond(writer, 403, f"no stream protocol in common (offered {offered})".encode())
            return
        # The kubelet's own names (input, output, error) as the API server sends them; the API's as well.
        aliases = {"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"}
        flag = lambda name: any(query.get(k, [""])[0] in ("1", "true") for k in (name, aliases[name]))  # noqa: E731
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      f"X-Stream-Protocol-Version: {protocol}\r\n\r\n").encode())
        await writer.drain()
        session = spdy.Session(reader, writer)
        serving = asyncio.create_task(session.serve())
        wanted = {"error"} | {n for n in ("stdin", "stdout", "stderr") if flag(n)} | ({"resize"} if flag("tty") else set())
        streams: dict[str, spdy.Stream] = {}
        try:
            async with asyncio.timeout(30):
                while not wanted <= set(streams):
                    stream = await session.streams.get()
                    if stream is None:
                        return
                    streams[stream.type] = stream
        except TimeoutError:
            return
        status: dict = {"metadata": {}, "status": "Success"}
        try:
            argv = images.argv(c.spec.get("image", ""), [c.rewrite(expand(a, c.env)) for a in command], [])
            proc = await asyncio.create_subprocess_exec(
                *argv, env=c.env, stdin=asyncio.subprocess.PIPE if "stdin" in streams else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except (OSError, images.ImageNotMapped, ValueError) as exc:
            status = {"metadata": {}, "status": "Failure", "reason": "InternalError",
                      "message": f"exec failed: {exc}"}
        else:
            async def pump(source, name: str) -> None:
                while chunk := await source.read(32 * 1024):
                    if name in streams:
                        await streams[name].write(chunk)

            async def feed() -> None:
                while (chunk := await streams["stdin"].incoming.get()) is not None:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
                proc.stdin.close()

            feeder = asyncio.create_task(feed()) if "stdin" in streams else None
            await asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))
            code = await proc.wait()
            killpg(proc.pid, signal.SIGKILL)
            if feeder:
                feeder.cancel()
            if code != 0:
                status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                          "message": f"command terminated with non-zero exit code: exit status {code}",
                          "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        for name in ("stdout", "stderr"):
            if name in streams:
                await streams[name].close()
        if protocol == "v4.channel.k8s.io":
            await streams["error"].write(json.dumps(status).encode())
        elif status["status"] != "Success":
            await streams["error"].write(status["message"].encode())
        await streams["error"].close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):  # the peer closes once it has read everything
                await serving
        serving.cancel()


PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
LOGS = re.compile(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)")
EXEC = re.compile(r"/exec/([^/]+)/([^/]+)/([^/]+)(?:/([^/]+))?")
REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}


async def read_request(reader: asyncio.StreamReader):
    """(method, path, query, headers) of one HTTP/1.1 request, or None if the peer said nothing."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            name = name.strip().lower()
            headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    length = int(headers.get("content-length") or 0)
    if length:
        await reader.readexactly(length)
    url = urllib.parse.urlsplit(target)
    return method, urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query), headers


async def respond(writer: asyncio.StreamWriter, code: int, body: bytes) -> None:
    writer.write(f"HTTP/1.1 {code} {REASONS.get(code, '')}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await writer.drain()


async def serve(args) -> None:
    kubelet = ProcessKubelet(args.kubeconfig, args.node, args.port, args.root, args.client_ca)
    args.root.mkdir(parents=True, exist_ok=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(args.client_ca))
    ctx.load_cert_chain(str(args.tls_cert), str(args.tls_key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    server = await asyncio.start_server(kubelet.handle, "127.0.0.1", args.port, ssl=ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await kubelet.register()
    tasks = [asyncio.create_task(kubelet.heartbeat()), asyncio.create_task(kubelet.watch_pods())]
    log.info("node %s registered; serving on 127.0.0.1:%d", args.node, args.port)
    await stop.wait()
    kubelet.stop_all()  # the node goes away and its containers with it
    for task in tasks:
        task.cancel()
    server.close()
    await kubelet.api.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="process_kubelet", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--tls-cert", type=Path, required=True)
    p.add_argument("--tls-key", type=Path, required=True)
    p.add_argument("--client-ca", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
