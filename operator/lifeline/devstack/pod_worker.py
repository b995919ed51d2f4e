"""One Pod's life on the process kubelet: volumes, init containers, containers, probes, status.

A container is a local process in its own process group (a new session), started from the image
table (:mod:`lifeline.devstack.images`) with the Pod's environment and volumes made local
(:mod:`lifeline.devstack.pod_volumes`). The worker reports to the API server as a kubelet does:
a strategic-merge patch of the Pod's status with the phase, the conditions, each container's
waiting/running/terminated state (exit code, reason, the termination message), restart counts and
readiness. ``restartPolicy`` is honoured with a growing back-off; deleting the Pod sends SIGTERM
to every container's group, then SIGKILL after the grace period.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from lifeline.clock import rfc3339

from . import images
from .kube_http import ApiError, KubeHTTP, STRATEGIC
from .pod_volumes import SA_PATH, MountError, PodFiles, expand, rewriter
from .probes import run_probe

log = logging.getLogger("lifeline.kubelet")
MAX_MESSAGE = 4096
BACKOFF_START, BACKOFF_CAP = 1.0, 30.0  # upstream: 10 s doubling to 300 s; shorter for tests and demos
TOKEN_REFRESH = 45 * 60.0


def sa_mounted(argv: list[str], sa_dir: Path | None) -> list[str]:
    """Run ``argv`` with the ServiceAccount volume at its well-known path, where root can arrange it.

    Programs read the token from ``/var/run/secrets/kubernetes.io/serviceaccount`` by a fixed path
    that no rewriting of arguments reaches (Vault's Kubernetes login, client libraries). As root,
    the container gets a private mount namespace with the pod's token directory bound there,
    read-only; elsewhere the path stays absent and only ``KUBECONFIG`` carries the identity.
    """
    if sa_dir is None or os.geteuid() != 0 or not shutil.which("unshare"):
        return argv
    Path(SA_PATH).mkdir(parents=True, exist_ok=True)  # under /run: a tmpfs, gone at reboot
    script = 'mount --bind "$0" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script,
            str(sa_dir), SA_PATH, *argv]


def now() -> str:
    return rfc3339(datetime.now(timezone.utc))


def killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Container:
    """One container's process and the status a kubelet reports for it."""

    def __init__(self, spec: dict, init: bool):
        self.spec = spec
        self.name = spec["name"]
        self.init = init
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.ready = False
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last: dict | None = None  # lastState.terminated
        self.env: dict[str, str] = {}
        self.rewrite = lambda text: text
        self.log_path: Path | None = None
        self.sa_dir: Path | None = None

    def status(self) -> dict:
        out = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "", "containerID":
               f"process://{self.proc.pid}" if self.proc else "", "ready": self.ready,
               "restartCount": self.restarts, "started": "running" in self.state, "state": self.state}
        if self.last:
            out["lastState"] = {"terminated": self.last}
        return out


class PodWorker:
    """Runs one Pod to its end (or until deleted); ``api`` speaks as the node."""

    def __init__(self, api: KubeHTTP, pod: dict, root: Path, *, api_url: str):
        self.api = api
        self.pod = pod
        self.ns, self.name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.root = root
        self.api_url = api_url
        spec = pod["spec"]
        self.policy = spec.get("restartPolicy", "Always")
        self.init = [Container(c, True) for c in spec.get("initContainers") or []]
        self.main = [Container(c, False) for c in spec["containers"]]
        self.files = PodFiles(api, pod, root)
        self.local: dict[str, Path] = {}
        self.phase = "Pending"
        self.reason = self.message = ""
        self.started_at = now()
        self.initialized = not self.init
        self.terminating = False
        self.done = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._last_sent: dict | None = None
        self._reporting = asyncio.Lock()
        self._sa_dirs: set[Path] = set()

    # ---- status ------------------------------------------------------------------------------

    def _conditions(self) -> list[dict]:
        t = now()
        ready = self.phase == "Running" and all(c.ready for c in self.main)
        def cond(kind: str, ok: bool) -> dict:
            return {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                    "lastTransitionTime": t}
        return [cond("PodReadyToStartContainers", bool(self.local) or not self.pod["spec"].get("volumes")),
                cond("Initialized", self.initialized), cond("ContainersReady", ready), cond("Ready", ready)]

    async def report(self) -> None:
        """Write the Pod's status if it changed. One write at a time, each built once its turn came:
        two in flight could land out of order and leave an older status for good."""
        async with self._reporting:
            await self._report()

    async def _report(self) -> None:
        status = {"phase": self.phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                  "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "startTime": self.started_at,
                  "containerStatuses": [c.status() for c in self.main]}
        if self.init:
            status["initContainerStatuses"] = [c.status() for c in self.init]
        if self.reason:
            status["reason"], status["message"] = self.reason, self.message
        comparable = {**status, "conditions": [(c["type"], c["status"]) for c in self._conditions()]}
        if comparable == self._last_sent:
            return
        status["conditions"] = self._conditions()
        # The transition times above are "now" only when a condition changes; keep the old ones otherwise.
        old = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        for c in status["conditions"]:
            if c["type"] in old and old[c["type"]].get("status") == c["status"]:
                c["lastTransitionTime"] = old[c["type"]].get("lastTransitionTime")
        try:
            self.pod = await self.api.request("PATCH", f"/api/v1/namespaces/{self.ns}/pods/{self.name}/status",
                                              {"status": status}, content_type=STRATEGIC)
            self._last_sent = comparable
        except ApiError as exc:
            if exc.status != 404:
                log.warning("pod %s/%s: status not written: %s", self.ns, self.name, exc)

    async def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{self.name}.", "namespace": self.ns},
                "involvedObject": {"kind": "Pod", "namespace": self.ns, "name": self.name, "uid": self.uid,
                                   "apiVersion": "v1"},
                "reason": reason, "message": message, "type": type_, "firstTimestamp": now(),
                "lastTimestamp": now(), "count": 1, "source": {"component": "kubelet",
                                                               "host": self.pod["spec"].get("nodeName", "")}}
        with contextlib.suppress(ApiError):
            await self.api.request("POST", f"/api/v1/namespaces/{self.ns}/events", body)

    # ---- the life of the pod -----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a kubelet bug must not take the node down: the pod fails, loudly
            log.exception("pod %s/%s failed in the kubelet", self.ns, self.name)
            self.phase, self.reason, self.message = "Failed", "KubeletError", str(exc)[:MAX_MESSAGE]
            await self.report()
        finally:
            self.done.set()

    async def _run(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for c in [*self.init, *self.main]:
                images.resolve(c.spec.get("image", ""))
        except images.ImageNotMapped as exc:
            await self._fail("ImageNotMapped", str(exc))
            return
        await self._mount()
        if self.terminating:
            return
        self._tasks.append(asyncio.create_task(self._refresh_tokens()))
        for c in self.init:
            while not self.terminating:
                code = await self._run_once(c)
                if code == 0:
                    break
                if self.policy == "Never":
                    await self._fail("Failed", f"init container {c.name} exited with code {code}")
                    return
                await self._backoff(c)
            if self.terminating:
                return
        self.initialized = True
        self.phase = "Running"
        await asyncio.gather(*(self._keep(c) for c in self.main))
        if self.phase == "Running":  # every container has ended and none will restart
            self.phase = self._outcome()
        await self.report()

    def _outcome(self) -> str:
        codes = [c.state.get("terminated", {}).get("exitCode", 1) for c in self.main]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"

    async def _fail(self, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = "Failed", reason, message[:MAX_MESSAGE]
        for c in [*self.init, *self.main]:
            if "waiting" in c.state:
                c.state = {"waiting": {"reason": reason, "message": message[:MAX_MESSAGE]}}
        await self.event(reason, message, "Warning")
        await self.report()

    async def _mount(self) -> None:
        delay = 0.5
        warned = ""
        while not self.terminating:
            try:
                try:
                    self.local = await self.files.make()
                    return
                except ApiError as exc:
                    # The Node authorizer learns of a Pod's binding a moment after the kubelet does
                    # (403 "no relationship found"); a kubelet's volume manager retries until it may.
                    raise MountError(f"reading the pod's volumes: {exc}", retry=True) from None
            except MountError as exc:
                if not exc.retry:
                    await self._fail("FailedMount", str(exc))
                    self.terminating = True
                    return
                if str(exc) != warned:
                    warned = str(exc)
                    await self.event("FailedMount", str(exc), "Warning")
                await self.report()
                await asyncio.sleep(delay)  # retry until the claim binds or the secret appears
                delay = min(delay * 2, 5.0)

    async def _keep(self, c: Container) -> None:
        """Run a main container; restart it as restartPolicy says, until the pod ends."""
        while not self.terminating:
            code = await self._run_once(c)
            if self.terminating or self.policy == "Never" or (self.policy == "OnFailure" and code == 0):
                return
            await self._backoff(c)

    async def _backoff(self, c: Container) -> None:
        delay = min(BACKOFF_START * 2 ** c.restarts, BACKOFF_CAP)
        c.last = c.state.get("terminated")
        c.state = {"waiting": {"reason": "CrashLoopBackOff",
                               "message": f"back-off {delay:g}s restarting failed container={c.name} pod={self.name}"}}
        c.restarts += 1
        await self.report()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping(), delay)

    async def _stopping(self) -> None:
        while not self.terminating:
            await asyncio.sleep(0.2)

    async def _prepare(self, c: Container) -> list[str]:
        spec = c.spec
        mounts = [(m["mountPath"], self.local[m["name"]] / m.get("subPath", "")) for m in spec.get("volumeMounts") or []]
        term_path = spec.get("terminationMessagePath", "/dev/termination-log")
        term_local = self.root / f"{c.name}.termination-log"
        c.rewrite = rewriter([*mounts, (term_path, term_local)])
        row = images.resolve(spec.get("image", ""))
        env = {"PATH": os.pathsep.join([*row.path, os.environ.get("PATH", "/usr/bin:/bin")]),
               "HOSTNAME": self.name, "HOME": os.environ.get("HOME", "/root"),
               "KUBERNETES_SERVICE_HOST": "127.0.0.1",
               "KUBERNETES_SERVICE_PORT": self.api_url.rsplit(":", 1)[-1],
               "LIFELINE_TERMINATION_LOG": str(term_local)}
        for key in ("LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TZ"):
            if key in os.environ:
                env[key] = os.environ[key]
        sa_dir = next((local for mount, local in mounts if mount.rstrip("/") == SA_PATH), None)
        if sa_dir is not None:  # the in-cluster login, pointed at where the token really is
            env["KUBECONFIG"] = str(self._sa_kubeconfig(sa_dir))
        c.sa_dir = sa_dir
        env.update(await self.files.env(spec, c.rewrite))
        c.env = env
        command = [c.rewrite(expand(a, env)) for a in spec.get("command") or []]
        args = [c.rewrite(expand(a, env)) for a in spec.get("args") or []]
        return sa_mounted(images.argv(spec.get("image", ""), command, args), c.sa_dir)

    def _sa_kubeconfig(self, sa_dir: Path) -> Path:
        """The pod's in-cluster identity as a kubeconfig: its ServiceAccount token and the cluster CA.

        The token is written inline (kopf reads no ``tokenFile``) and rewritten when the kubelet
        renews it, so a client that logs in again on a 401 gets the fresh one.
        """
        path = self.root / "serviceaccount.kubeconfig"
        ca = sa_dir / "ca.crt"
        self._sa_dirs.add(sa_dir)
        config = {"apiVersion": "v1", "kind": "Config",
                  "clusters": [{"name": "in-cluster", "cluster": {"server": self.api_url,
                                                                  "certificate-authority": str(ca)}}],
                  "users": [{"name": "sa", "user": {"token": (sa_dir / "token").read_text().strip()}}],
                  "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "sa",
                                                                  "namespace": self.ns}}],
                  "current-context": "in-cluster"}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        tmp.chmod(0o600)
        os.replace(tmp, path)
        return path

    async def _run_once(self, c: Container) -> int:
        """Start the container, wait for it to end, record how; its whole process group dies with it."""
        while True:  # a kubelet retries a container's configuration until it can be made
            try:
                try:
                    argv = await self._prepare(c)
                except ApiError as exc:  # as for volumes: the authorizer may not know the binding yet
                    raise MountError(f"reading the container's environment: {exc}", retry=True) from None
                break
            except (MountError, images.ImageNotMapped) as exc:
                c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
                await self.report()
                if not (isinstance(exc, MountError) and exc.retry):
                    await self._fail("CreateContainerConfigError", str(exc))
                    self.terminating = True
                    return 1
                if self.terminating:
                    return 1
                await asyncio.sleep(1.0)
        c.log_path = self.root / f"{c.name}.log"
        term = self.root / f"{c.name}.termination-log"
        term.unlink(missing_ok=True)
        started = now()
        cwd = c.rewrite(c.spec.get("workingDir") or "") or str(self.root)
        if not Path(cwd).is_dir():
            cwd = str(self.root)
        with open(c.log_path, "ab") as out:
            try:
                c.proc = await asyncio.create_subprocess_exec(
                    *argv, env=c.env, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, cwd=cwd,
                    start_new_session=True)
            except OSError as exc:
                c.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(exc),
                                          "startedAt": started, "finishedAt": now()}}
                await self.event("Failed", f"Error: failed to start container {c.name}: {exc}", "Warning")
                await self.report()
                return 128
        c.state = {"running": {"startedAt": started}}
        await self.event("Started", f"Started container {c.name}")
        probe = None if c.init else asyncio.create_task(self._probes(c))
        await self.report()
        try:
            code = await c.proc.wait()
        finally:
            killpg(c.proc.pid, signal.SIGKILL)  # nothing of a container outlives it
            if probe:
                probe.cancel()
        c.ready = False
        message = term.read_text(errors="replace")[:MAX_MESSAGE] if term.exists() else ""
        if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = c.log_path.read_text(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        if code < 0:  # killed by a signal: the shell's convention, as container runtimes report it
            code = 128 + (-code)
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": started, "finishedAt": now()}
        if message:
            terminated["message"] = message
        c.state = {"terminated": terminated}
        await self.report()
        return code

    async def _probes(self, c: Container) -> None:
        """Startup first; then readiness sets ``ready`` and liveness kills a container that stops answering."""
        spec = c.spec
        if "startupProbe" in spec and not await self._passes(c, spec["startupProbe"]):
            await self.event("Unhealthy", f"Startup probe failed for container {c.name}", "Warning")
            killpg(c.proc.pid, signal.SIGKILL)
            return
        loops = [self._liveness(c, spec["livenessProbe"])] if "livenessProbe" in spec else []
        if "readinessProbe" in spec:
            loops.append(self._readiness(c, spec["readinessProbe"]))
        else:
            c.ready = True
            await self.report()
        await asyncio.gather(*loops)

    async def _passes(self, c: Container, spec: dict) -> bool:
        """Probe until it succeeds (True) or fails ``failureThreshold`` times in a row (False)."""
        await asyncio.sleep(spec.get("initialDelaySeconds", 0))
        failures = 0
        while not await run_probe(spec, c):
            failures += 1
            if failures >= spec.get("failureThreshold", 3):
                return False
            await asyncio.sleep(spec.get("periodSeconds", 10))
        return True

    async def _liveness(self, c: Container, spec: dict) -> None:
        while await self._passes(c, spec):
            await asyncio.sleep(spec.get("periodSeconds", 10))
        await self.event("Unhealthy", f"Liveness probe failed for container {c.name}: restarting it", "Warning")
        killpg(c.proc.pid, signal.SIGKILL)

    async def _readiness(self, c: Container, spec: dict) -> None:
        await asyncio.sleep(spec.get("initialDelaySeconds", 0))
        ok_run = bad_run = 0
        while True:
            ok = await run_probe(spec, c)
            ok_run, bad_run = (ok_run + 1, 0) if ok else (0, bad_run + 1)
            if ok and ok_run >= spec.get("successThreshold", 1) and not c.ready:
                c.ready = True
                await self.report()
            elif not ok and bad_run >= spec.get("failureThreshold", 3) and c.ready:
                c.ready = False
                await self.report()
            await asyncio.sleep(spec.get("periodSeconds", 10))

    async def _refresh_tokens(self) -> None:
        while not self.terminating:
            await asyncio.sleep(TOKEN_REFRESH)
            with contextlib.suppress(ApiError, MountError, OSError):
                await self.files.refresh_tokens()
                for sa_dir in self._sa_dirs:
                    self._sa_kubeconfig(sa_dir)

    async def terminate(self, grace: float) -> None:
        """SIGTERM every running container's group, SIGKILL after ``grace`` seconds, wait for the end."""
        self.terminating = True
        running = [c for c in [*self.init, *self.main] if c.proc and c.proc.returncode is None]
        for c in running:
            killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in running:
            left = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(c.proc.wait()), left)
            except asyncio.TimeoutError:
                killpg(c.proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.done.wait(), 5)
        for task in self._tasks:
            task.cancel()

    def kill_now(self) -> None:
        """SIGKILL everything at once (the kubelet itself is going away)."""
        self.terminating = True
        for c in [*self.init, *self.main]:
            if c.proc and c.proc.returncode is None:
                killpg(c.proc.pid, signal.SIGKILL)

    def container(self, name: str | None) -> Container | None:
        for c in [*self.main, *self.init]:
            if name in (None, "", c.name):
                return c
        return None


__all__ = ["Container", "PodWorker"]
