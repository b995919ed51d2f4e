"""A local Job runner for the API emulator: the CronJob controller, Job controller and kubelet
that the emulator does not have, just enough to run backup Jobs for real on this machine.

- :meth:`JobRunner.create_job` makes a Job from a CronJob as ``kubectl create job --from=cronjob/X``
  does (the CronJob controller's naming, labels and owner reference); :meth:`JobRunner.tick` does it
  the way the CronJob controller would at a scheduled time (it honours ``suspend`` and
  ``concurrencyPolicy: Forbid``);
- :meth:`JobRunner.run` runs a Job's pod as local processes: init containers in order, then the
  containers side by side, and reports back through the API like a kubelet and the Job controller:
  a Pod with each container's terminated state and termination message, and the Job's status
  (``succeeded``/``failed`` and a ``Complete``/``Failed`` condition).

Containers do not run in their images. The agent image's containers run the same ``lifeline``
code with this Python (``python`` is this interpreter; no command means the image's entry point
``lifeline``); any other image's command runs as a local program (``/bin/sh``, ``pg_dump`` from
``$PATH`` or ``extra_path``). Volumes are local directories: a PVC is the directory given for its
claim in ``volumes`` (the PVC object must also exist in the API, as the scheduler insists), an
emptyDir a fresh directory, a Secret volume its keys written as files. Mount paths in a
container's command, args and environment are rewritten to those directories (``/source`` becomes
``<dir>/...``), which is how one machine stands in for many pods. The termination message is the
file ``$LIFELINE_TERMINATION_LOG`` names (``FallbackToLogsOnError`` honoured). Retries
(``backoffLimit``) are not simulated: a failed pod fails its Job. With a ``clock``, object times
and the backup's recorded time (``LIFELINE_BACKUP_TIME``) come from it.

Each container is its own process group (a new session), and the whole group is killed when the
container ends: when its main process exits, when it outlives the Job's ``activeDeadlineSeconds``
(or the runner's ``timeout``), when :meth:`JobRunner.run` is cancelled, and at :meth:`JobRunner.cleanup`.
In Kubernetes nothing of a container survives it; a child left running here would go on writing
(a manifest, say) after its pod was reported dead.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

from lifeline.clock import Clock, SystemClock, rfc3339
from lifeline.devstack.pod_volumes import rewriter

AGENT_IMAGE_HINT = "lifeline"  # images whose name contains this run the lifeline code
MAX_MESSAGE = 4096
JSON = "application/json"
MERGE = "application/merge-patch+json"


class RunnerError(RuntimeError):
    pass


def kill_group(pgid: int) -> None:
    """SIGKILL every process of a container's group (gone already: nothing to do)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class ContainerResult:
    name: str
    exit_code: int
    message: str
    log: Path
    started: str
    finished: str


@dataclass
class RunResult:
    job: str
    pod: str
    phase: str  # Succeeded | Failed
    containers: dict[str, ContainerResult] = field(default_factory=dict)

    @property
    def message(self) -> str:
        agent = self.containers.get("agent")
        return agent.message if agent else ""


def _path(api_version: str, plural: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    out = f"{base}/namespaces/{namespace}/{plural}"
    if name:
        out += f"/{name}"
    if sub:
        out += f"/{sub}"
    return out


_rewriter = rewriter  # one implementation: the process kubelet's


class JobRunner:
    """Runs the emulator's Jobs on this machine; ``url`` is the emulator's base URL."""

    def __init__(self, url: str, *, workdir: Path, volumes: dict[str, Path] | None = None,
                 clock: Clock | None = None, extra_path: list[str] | None = None, env: dict | None = None,
                 timeout: float | None = None):
        self.url = url.rstrip("/")
        self.workdir = Path(workdir)
        self.volumes = {k: Path(v) for k, v in (volumes or {}).items()}
        self.clock = clock or SystemClock()
        self.extra_path = list(extra_path or [])
        self.env = dict(env or {})
        self.timeout = timeout  # seconds a container may run when its Job sets no activeDeadlineSeconds
        self._groups: set[int] = set()  # process groups of the containers running now
        self._cleaned_up = False
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path, **kwargs) -> "JobRunner":
        config = yaml.safe_load(Path(kubeconfig).read_text())
        return cls(config["clusters"][0]["cluster"]["server"], **kwargs)

    async def __aenter__(self) -> "JobRunner":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- the API ---------------------------------------------------------------------------------

    async def _req(self, method: str, path: str, body=None, content_type: str = JSON, query: dict | None = None):
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(method, self.url + path, params=query,
                                         data=None if body is None else json.dumps(body),
                                         headers={"Content-Type": content_type, "Accept": JSON}) as r:
            data = await r.json(content_type=None)
            if r.status == 404 and method == "GET":
                return None
            if r.status >= 400:
                raise RunnerError(f"{method} {path}: {r.status} {(data or {}).get('message')}")
            return data

    def now(self) -> str:
        return rfc3339(self.clock.now())

    # ---- the CronJob controller ---------------------------------------------------------------------

    async def create_job(self, namespace: str, cronjob: str, *, manual: bool = True) -> str:
        """A Job from the CronJob's template, named as the CronJob controller names them."""
        cj = await self._req("GET", _path("batch/v1", "cronjobs", namespace, cronjob))
        if cj is None:
            raise RunnerError(f"no CronJob {namespace}/{cronjob}")
        template = cj["spec"]["jobTemplate"]
        scheduled = self.clock.now()
        base = f"{cronjob}-{int(scheduled.timestamp() // 60)}"
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] = rfc3339(scheduled)
        if manual:
            annotations["cronjob.kubernetes.io/instantiate"] = "manual"
        body = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": base, "namespace": namespace,
                         "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob,
                                              "uid": cj["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": template["spec"],
        }
        for n in range(2, 100):
            try:
                created = await self._req("POST", _path("batch/v1", "jobs", namespace), body)
                return created["metadata"]["name"]
            except RunnerError as exc:
                if " 409 " not in str(exc):
                    raise
                body["metadata"]["name"] = f"{base}-{n}"
        raise RunnerError(f"no free Job name for {cronjob}")

    async def tick(self, namespace: str, cronjob: str) -> RunResult | None:
        """What the CronJob controller does at a scheduled time: a Job, unless suspended or one runs."""
        cj = await self._req("GET", _path("batch/v1", "cronjobs", namespace, cronjob))
        if cj is None or cj["spec"].get("suspend"):
            return None
        if cj["spec"].get("concurrencyPolicy") == "Forbid":
            jobs = await self._req("GET", _path("batch/v1", "jobs", namespace))
            for job in jobs.get("items") or []:
                owners = [r.get("uid") for r in job["metadata"].get("ownerReferences") or []]
                done = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                           for c in (job.get("status") or {}).get("conditions") or [])
                if cj["metadata"]["uid"] in owners and not done:
                    return None
        return await self.run(namespace, await self.create_job(namespace, cronjob, manual=False))

    async def trigger(self, namespace: str, cronjob: str) -> RunResult:
        """``kubectl create job --from=cronjob/<cronjob>``, then run it."""
        return await self.run(namespace, await self.create_job(namespace, cronjob))

    async def run_pending(self, namespace: str, label_selector: str | None = None) -> list[RunResult]:
        """Run every Job that has not started yet (for example an operator's on-demand Job)."""
        query = {"labelSelector": label_selector} if label_selector else None
        jobs = await self._req("GET", _path("batch/v1", "jobs", namespace), query=query)
        results = []
        for job in jobs.get("items") or []:
            if not (job.get("status") or {}).get("startTime"):
                results.append(await self.run(namespace, job["metadata"]["name"]))
        return results

    # ---- the kubelet and the Job controller ------------------------------------------------------------

    async def _volumes(self, namespace: str, pod_spec: dict, root: Path) -> dict[str, Path]:
        local: dict[str, Path] = {}
        for vol in pod_spec.get("volumes") or []:
            name = vol["name"]
            if "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                pvc = await self._req("GET", _path("v1", "persistentvolumeclaims", namespace, claim))
                if pvc is None:
                    raise RunnerError(f'FailedMount: persistentvolumeclaim "{claim}" not found')
                sandbox = ((pvc.get("metadata") or {}).get("labels") or {}).get("dr.lifeline.io/sandbox") == "true"
                if claim not in self.volumes and sandbox:
                    # A drill's fresh PVC: an empty local directory of its own, as a provisioner would give.
                    local[name] = self.workdir / "claims" / namespace / claim
                    local[name].mkdir(parents=True, exist_ok=True)
                    continue
                if claim not in self.volumes:
                    raise RunnerError(f"FailedMount: no local directory for PVC {claim} (give it in volumes=)")
                local[name] = self.volumes[claim]
                local[name].mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in vol:
                local[name] = root / "volumes" / name
                local[name].mkdir(parents=True, exist_ok=True)
                local[name].chmod(0o777)
            elif "secret" in vol:
                spec = vol["secret"]
                secret = await self._req("GET", _path("v1", "secrets", namespace, spec["secretName"]))
                if secret is None:
                    raise RunnerError(f'FailedMount: secret "{spec["secretName"]}" not found')
                data = secret.get("data") or {}
                items = spec.get("items") or [{"key": k, "path": k} for k in data]
                local[name] = root / "volumes" / name
                local[name].mkdir(parents=True, exist_ok=True)
                for item in items:
                    if item["key"] not in data:
                        raise RunnerError(f'FailedMount: secret "{spec["secretName"]}" has no key {item["key"]}')
                    target = local[name] / item["path"]
                    target.write_bytes(base64.b64decode(data[item["key"]]))
                    target.chmod(item.get("mode", spec.get("defaultMode", 0o644)))
            else:
                raise RunnerError(f"volume {name}: only persistentVolumeClaim, emptyDir and secret are supported")
        return local

    async def _env(self, namespace: str, container: dict, rewrite) -> dict:
        env = {"PATH": os.pathsep.join([*self.extra_path, os.environ.get("PATH", "")])}
        for key in ("PYTHONPATH", "LANG", "LC_ALL", "VIRTUAL_ENV"):
            if key in os.environ:
                env[key] = os.environ[key]
        # The pod's Vault identity (Kubernetes auth in a cluster): this machine's token, as
        # `lifeline dev up` sets it. The address comes from the Job's own env (the operator's).
        for key in ("VAULT_TOKEN", "BAO_TOKEN"):
            if key in os.environ:
                env[key] = os.environ[key]
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = rewrite(e["value"])
            elif "secretKeyRef" in (e.get("valueFrom") or {}):
                ref = e["valueFrom"]["secretKeyRef"]
                secret = await self._req("GET", _path("v1", "secrets", namespace, ref["name"]))
                data = (secret or {}).get("data") or {}
                if ref["key"] not in data:
                    raise RunnerError(f"CreateContainerConfigError: secret {ref['name']!r} or its key "
                                      f"{ref['key']!r} not found")
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
        env.update(self.env)
        return env

    def _argv(self, container: dict, rewrite) -> list[str]:
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        agent = AGENT_IMAGE_HINT in container.get("image", "")
        # This machine's interpreter is not a path inside the pod: never map it through the mounts
        # (a checkout under /tmp would otherwise land inside the pod's /tmp emptyDir).
        if not command:
            if not agent:
                raise RunnerError(f"container {container['name']}: an image's entry point is unknown here; "
                                  "give a command")
            return [sys.executable, "-m", "lifeline.cli", *(rewrite(a) for a in args)]
        if agent and command[0] in ("python", "python3"):
            return [sys.executable, *(rewrite(a) for a in command[1:] + args)]
        return [rewrite(a) for a in command + args]

    async def _container(self, namespace: str, container: dict, local: dict[str, Path], root: Path,
                         extra_env: dict, deadline: float | None = None) -> ContainerResult:
        mounts = [(m["mountPath"], local[m["name"]]) for m in container.get("volumeMounts") or []]
        rewrite = _rewriter(mounts)
        env = await self._env(namespace, container, rewrite)
        term = root / f"{container['name']}.termination-log"
        env["LIFELINE_TERMINATION_LOG"] = str(term)
        env.update(extra_env)
        log_path = root / f"{container['name']}.log"
        started = self.now()
        with open(log_path, "wb") as log:
            spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
                *self._argv(container, rewrite), env=env, stdout=log, stderr=log,
                stdin=asyncio.subprocess.DEVNULL, cwd=str(root), start_new_session=True))
            try:
                proc = await asyncio.shield(spawn)
            except asyncio.CancelledError:  # cancelled while starting: it may be running already
                proc = await spawn
                kill_group(proc.pid)
                await proc.wait()
                raise
            self._groups.add(proc.pid)
            if self._cleaned_up:  # cleanup() ran while this container was starting: it dies too
                kill_group(proc.pid)
            code, timed_out = await self._wait(proc, deadline)
        message = term.read_text(errors="replace")[:MAX_MESSAGE] if term.exists() else ""
        if timed_out:
            message = (f"DeadlineExceeded: container {container['name']} ran longer than {deadline:g}s "
                       f"and was killed\n{message}")[:MAX_MESSAGE]
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = log_path.read_text(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        return ContainerResult(container["name"], code, message, log_path, started, self.now())

    async def _wait(self, proc: asyncio.subprocess.Process, deadline: float | None) -> tuple[int, bool]:
        """The exit code of a container's main process and whether it timed out; its whole group dies here."""
        pgid = proc.pid  # a new session: the group's id is the leader's pid
        self._groups.add(pgid)
        timed_out = False
        try:
            try:
                code = await asyncio.wait_for(proc.wait(), deadline)
            except TimeoutError:
                timed_out = True
                kill_group(pgid)
                code = await proc.wait()
        except BaseException:  # cancelled: the pod is going away, and so is everything it started
            kill_group(pgid)
            await asyncio.shield(proc.wait())
            raise
        finally:
            kill_group(pgid)  # what the main process left behind ends with the container
            self._groups.discard(pgid)
        return (137 if timed_out else code), timed_out

    @staticmethod
    def _state(result: ContainerResult) -> dict:
        terminated = {"exitCode": result.exit_code, "reason": "Completed" if result.exit_code == 0 else "Error",
                      "startedAt": result.started, "finishedAt": result.finished}
        if result.message:
            terminated["message"] = result.message
        return {"name": result.name, "ready": False, "restartCount": 0, "image": "", "imageID": "",
                "started": False, "state": {"terminated": terminated}}

    async def run(self, namespace: str, job_name: str) -> RunResult:
        """Run one pod of the Job to its end and report it; the Job ends Complete or Failed."""
        job = await self._req("GET", _path("batch/v1", "jobs", namespace, job_name))
        if job is None:
            raise RunnerError(f"no Job {namespace}/{job_name}")
        uid = job["metadata"]["uid"]
        template = job["spec"]["template"]
        pod_name = f"{job_name[:57]}-{''.join(secrets.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"
        labels = {**((template.get("metadata") or {}).get("labels") or {}),
                  "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": job_name,
                  "controller-uid": uid, "job-name": job_name}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pod_name, "namespace": namespace, "labels": labels,
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                                 "uid": uid, "controller": True, "blockOwnerDeletion": True}]},
               "spec": {**template["spec"], "nodeName": "lifeline-devstack"}}
        await self._req("POST", _path("v1", "pods", namespace), pod)
        started = self.now()
        await self._req("PATCH", _path("batch/v1", "jobs", namespace, job_name, "status"),
                        {"status": {"startTime": started, "active": 1}}, MERGE)
        await self._req("PATCH", _path("v1", "pods", namespace, pod_name, "status"),
                        {"status": {"phase": "Running", "startTime": started, "hostIP": "127.0.0.1"}}, MERGE)
        root = self.workdir / namespace / pod_name
        root.mkdir(parents=True, exist_ok=True)
        result = RunResult(job_name, pod_name, "Failed")
        extra = {"LIFELINE_BACKUP_TIME": started} if not isinstance(self.clock, SystemClock) else {}
        deadline = job["spec"].get("activeDeadlineSeconds") or self.timeout
        failure = None
        try:
            local = await self._volumes(namespace, template["spec"], root)
            for c in template["spec"].get("initContainers") or []:
                r = await self._container(namespace, c, local, root, extra, deadline)
                result.containers[r.name] = r
                if r.exit_code != 0:
                    failure = f"init container {r.name} exited {r.exit_code}"
                    break
            if failure is None:
                outcomes = await asyncio.gather(*(self._container(namespace, c, local, root, extra, deadline)
                                                  for c in template["spec"]["containers"]))
                for r in outcomes:
                    result.containers[r.name] = r
                if all(r.exit_code == 0 for r in outcomes):
                    result.phase = "Succeeded"
                elif any(r.message.startswith("DeadlineExceeded") for r in outcomes):
                    failure = "DeadlineExceeded: Job was active longer than specified deadline"
        except RunnerError as exc:
            failure = str(exc)
        init_names = {c["name"] for c in template["spec"].get("initContainers") or []}
        status = {"phase": result.phase,
                  "containerStatuses": [self._state(r) for n, r in result.containers.items() if n not in init_names],
                  "initContainerStatuses": [self._state(r) for n, r in result.containers.items() if n in init_names]}
        if failure:
            status.update(reason="Failed", message=failure)
        await self._req("PATCH", _path("v1", "pods", namespace, pod_name, "status"), {"status": status}, MERGE)
        finished = self.now()
        if result.phase == "Succeeded":
            job_status = {"active": None, "succeeded": 1, "completionTime": finished, "ready": 0,
                          "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": finished,
                                          "lastTransitionTime": finished}]}
        else:
            job_status = {"active": None, "failed": 1, "ready": 0,
                          "conditions": [{"type": "Failed", "status": "True", "lastProbeTime": finished,
                                          "lastTransitionTime": finished,
                                          "reason": "DeadlineExceeded" if (failure or "").startswith("DeadlineExceeded")
                                          else "BackoffLimitExceeded",
                                          "message": failure or "Job has reached the specified backoff limit"}]}
        await self._req("PATCH", _path("batch/v1", "jobs", namespace, job_name, "status"),
                        {"status": job_status}, MERGE)
        return result

    def cleanup(self) -> None:
        """Kill every container still running (its whole process group), then remove the pods' files."""
        self._cleaned_up = True
        for pgid in list(self._groups):
            kill_group(pgid)
        self._groups.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["ContainerResult", "JobRunner", "RunResult", "RunnerError"]
