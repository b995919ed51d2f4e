"""What a backup or prune Job runs: ``python -m lifeline.agent.jobs backup|prune|prepare``.

The operator renders the whole task into the ``LIFELINE_JOB_PLAN`` environment
variable (see :mod:`lifeline.planning.backup`). This module is the glue between that
plan and the agent's own command line: for every destination (each its own
repository, fanned out in parallel) it runs ``lifeline agent init`` when the
repository does not exist yet and then ``lifeline agent backup ... --json`` (or
``prune``), collects the JSON summaries, and writes one compact combined summary
(at most 4 KiB) to the container's termination message, which the operator reads
to record the RecoveryPoint. A failure at one destination does not hide success
at another: the Job succeeds when at least one destination took the backup, and
the summary lists each failure with its reason.

Dump sources: the dump container writes the command's stdout into a FIFO and its
exit status into a file (``/dump/exit-code``). Here the FIFO is read once and
teed into one ``agent backup --stdin`` per destination; when the stream ends, the
exit status decides: anything but 0 kills the agents before they publish, so a
failed dump never becomes a recovery point.

Fingerprint (``spec.fingerprint``): its container writes the command's output and status into
``/fingerprint``; after a successful backup the agent waits for the status and puts the trimmed
output (at most 256 characters, else an error: a fingerprint is a count or checksum, not data) into
the summary as ``fp``, which the operator records as the point's ``verifyOutput`` tag. A failed
fingerprint does not fail the backup; the summary says why (``fp.error``).

Exit codes: 0 at least one destination succeeded (or prune ran everywhere it could),
1 every destination failed, 2 the plan is unusable.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_MESSAGE = 4096  # the kubelet keeps at most 4 KiB of a termination message
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
EXIT_CODE_WAIT = 60.0  # seconds to wait for the dump's exit status after its stream ended
FINGERPRINT_WAIT = 300.0  # seconds to wait for the fingerprint command after the backup finished
FINGERPRINT_MAX = 256  # characters of a fingerprint kept: a count or a checksum, never data
BLOCK = 1 << 20


# ---- plumbing ------------------------------------------------------------------------------


def _agent_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "lifeline.agent", *args]  # the data plane only: starts fast


def _log(message: str) -> None:
    print(f"lifeline job: {message}", file=sys.stderr, flush=True)


def _tail(text: str, limit: int = 300) -> str:
    """The useful end of an agent's stderr: its last error line(s), trimmed."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    out = " ".join(errors[-2:])
    prefix = "lifeline agent "
    out = out.replace(prefix + "backup: error: ", "").replace(prefix + "prune: error: ", "")
    out = out.replace(prefix + "init: error: ", "")
    return out if len(out) <= limit else out[: limit - 1] + "…"


@dataclass
class Destination:
    name: str
    repository: str
    off_site: bool = False
    endpoint: str | None = None
    region: str | None = None
    credentials_env: str | None = None

    @classmethod
    def from_plan(cls, d: dict) -> "Destination":
        return cls(d["name"], d["repository"], bool(d.get("offSite")), d.get("endpoint"), d.get("region"),
                   d.get("credentialsEnv"))

    def env(self, base: dict) -> dict:
        """The environment of this destination's agent: only its own S3 credentials."""
        env = {k: v for k, v in base.items() if not k.startswith("LIFELINE_S3_") and k != "LIFELINE_JOB_PLAN"}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        if self.credentials_env:
            env["AWS_ACCESS_KEY_ID"] = base.get(self.credentials_env + "ACCESS_KEY_ID", "")
            env["AWS_SECRET_ACCESS_KEY"] = base.get(self.credentials_env + "SECRET_ACCESS_KEY", "")
        if self.endpoint:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        if self.region:
            env["AWS_REGION"] = self.region
        return env


@dataclass
class Outcome:
    destination: Destination
    rc: int | None = None
    summary: dict | None = None
    error: str = ""
    stderr: str = ""
    skipped: bool = False  # prune: nothing to do here (no repository yet)

    @property
    def ok(self) -> bool:
        # 7: published, but some files could not be read (listed in the summary)
        return self.rc in (0, 7) and self.summary is not None


@dataclass
class Task:
    plan: dict
    key_ref: str  # what the agent is given (a local file for secret:// keys)
    env: dict = field(default_factory=dict)

    @property
    def destinations(self) -> list[Destination]:
        return [Destination.from_plan(d) for d in self.plan.get("destinations") or []]


def _load_plan(text: str | None) -> dict:
    if not text:
        raise SystemExit(_usage("no plan: set LIFELINE_JOB_PLAN or pass --plan (the operator renders it)"))
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        plan = json.loads(text)
    except ValueError as exc:
        raise SystemExit(_usage(f"the plan is not JSON: {exc}")) from None
    if not isinstance(plan, dict) or plan.get("v") != 1 or not plan.get("destinations"):
        raise SystemExit(_usage("the plan is not a version 1 plan with destinations"))
    return plan


def _usage(message: str) -> int:
    _log(f"error: {message}")
    return 2


def _key_ref(plan: dict, workdir: Path) -> str:
    """The key reference for the agent; a mounted Secret file is copied to a 0600 file first."""
    key = plan.get("key") or {}
    source = key.get("file")
    if not source:
        return key.get("ref") or ""
    target = workdir / "key"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    return f"file://{target}"


def _run(argv: list[str], env: dict, stdin=None) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen, outcome: Outcome) -> Outcome:
    out, err = proc.communicate()
    outcome.rc = proc.returncode
    outcome.stderr = err.decode(errors="replace")
    if outcome.stderr:
        sys.stderr.write("".join(f"[{outcome.destination.name}] {ln}\n" for ln in outcome.stderr.splitlines()))
    try:
        outcome.summary = json.loads(out) if out.strip() else None
    except ValueError:
        outcome.summary = None
    if not outcome.ok and not outcome.error:
        outcome.error = _tail(outcome.stderr) or f"agent exited with status {outcome.rc}"
    return outcome


def s3_options(env: dict):
    """S3 settings of one destination's agent environment (see :meth:`Destination.env`)."""
    from lifeline.repository.backend import S3Options

    return S3Options(endpoint=env.get("AWS_ENDPOINT_URL"), region=env.get("AWS_REGION"),
                     access_key_id=env.get("AWS_ACCESS_KEY_ID"), secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))


def _repository_exists(dest: Destination, env: dict) -> bool:
    from lifeline.repository.backend import open_backend
    from lifeline.repository.layout import CONFIG

    try:
        return open_backend(dest.repository, s3_options(env)).exists(CONFIG)
    except Exception:  # noqa: BLE001 - unreachable or missing: let `init` say what is wrong
        return False


def _ensure_repository(task: Task, outcome: Outcome, env: dict) -> bool:
    """Create the destination's repository on first use; False (and the outcome says why) when that fails."""
    dest = outcome.destination
    if _repository_exists(dest, env):
        return True
    proc = subprocess.run(_agent_argv("init", "--repo", dest.repository, "--key", task.key_ref, "--json"),
                          env=env, capture_output=True, text=True)
    if proc.returncode == 0 or "already exists" in proc.stderr:
        return True
    outcome.rc = proc.returncode
    outcome.error = _tail(proc.stderr) or f"agent init exited with status {proc.returncode}"
    return False


# ---- backup ----------------------------------------------------------------------------------


def _backup_args(task: Task, dest: Destination, source_args: list[str]) -> list[str]:
    plan = task.plan
    args = ["backup", *source_args, "--type", plan.get("type") or "incremental", "--repo", dest.repository,
            "--key", task.key_ref, "--json", "--no-progress", "--source-name", plan["source"]["name"]]
    for tag in plan.get("tags") or []:
        args += ["--tag", tag]
    if os.environ.get("LIFELINE_BACKUP_TIME"):  # the devstack's job runner pins times to its clock
        args += ["--time", os.environ["LIFELINE_BACKUP_TIME"]]
    return _agent_argv(*args)


def _backup_directory(task: Task) -> list[Outcome]:
    source = task.plan["source"]["path"]
    outcomes = [Outcome(d) for d in task.destinations]

    def one(outcome: Outcome) -> None:
        env = outcome.destination.env(task.env)
        if not _ensure_repository(task, outcome, env):
            return
        _finish(_run(_backup_args(task, outcome.destination, [source]), env), outcome)

    threads = [threading.Thread(target=one, args=(o,)) for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _read_exit_code(path: str, wait: float) -> int | None:
    deadline = time.monotonic() + wait
    while True:
        try:
            text = Path(path).read_text().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _backup_stream(task: Task) -> tuple[list[Outcome], str | None]:
    """Tee the dump's FIFO into one agent per destination; publish only if the dump exited 0."""
    source = task.plan["source"]
    outcomes = [Outcome(d) for d in task.destinations]
    procs: dict[int, subprocess.Popen] = {}
    for i, outcome in enumerate(outcomes):
        env = outcome.destination.env(task.env)
        if not _ensure_repository(task, outcome, env):
            continue
        args = ["--stdin", "--stdin-name", source.get("streamName") or "dump.out"]
        procs[i] = _run(_backup_args(task, outcome.destination, args), env, stdin=subprocess.PIPE)
    total = 0
    # Opening a FIFO for reading waits for the dump container to open it for writing.
    with open(source["path"], "rb", buffering=0) as stream:
        while True:
            block = stream.read(BLOCK)
            if not block:
                break
            total += len(block)
            for i, proc in list(procs.items()):
                try:
                    proc.stdin.write(block)
                except (BrokenPipeError, OSError):  # this destination's agent died: the others go on
                    proc.stdin = None
                    _finish(proc, outcomes[i])
                    del procs[i]
    status = _read_exit_code(source["exitCode"], EXIT_CODE_WAIT)
    if status != 0:
        why = ("the dump command exited with status %d" % status if status is not None
               else "the dump command's exit status never appeared (did the dump container start?)")
        for i, proc in procs.items():
            proc.kill()  # before its stdin closes: an agent that sees no EOF publishes nothing
            proc.communicate()
            outcomes[i].rc, outcomes[i].error = 1, f"{why}; nothing was published"
        return outcomes, why
    for i, proc in procs.items():
        proc.stdin.close()
        proc.stdin = None
        _finish(proc, outcomes[i])
    _log(f"read {total} bytes from the dump")
    return outcomes, None


def backup_summary(plan: dict, outcomes: list[Outcome], source_error: str | None = None) -> dict:
    """The compact combined summary the operator turns into a RecoveryPoint."""
    ok = [o for o in outcomes if o.ok]
    out: dict = {"v": 1, "op": "backup", "type": plan.get("type"), "keyRef": (plan.get("key") or {}).get("ref")}
    if ok:
        first = ok[0].summary
        out.update(start=min(o.summary["start_time"] for o in ok), end=max(o.summary["completion_time"] for o in ok),
                   size=first.get("size_bytes", 0), files=first.get("files", 0))
    out["ok"] = [{
        "d": o.destination.name, "id": o.summary["point_id"], "t": o.summary["type"], "p": o.summary.get("parent_id"),
        "repo": o.summary.get("repository") or o.destination.repository, "stored": o.summary.get("stored_bytes", 0),
        "chunks": [o.summary.get("chunks_total", 0), o.summary.get("chunks_new", 0)],
        "sum": o.summary.get("manifest_checksum"), "s": o.summary["start_time"], "e": o.summary["completion_time"],
        "dur": o.summary.get("duration_seconds"), "skipped": len(o.summary.get("skipped") or []),
    } for o in ok]
    out["failed"] = [{"d": o.destination.name, "rc": o.rc, "error": o.error} for o in outcomes if not o.ok]
    if source_error:
        out["error"] = source_error
    return out


def compact(summary: dict, limit: int = MAX_MESSAGE) -> str:
    """JSON of at most ``limit`` bytes: error texts are shortened first, then lists are cut."""
    text = json.dumps(summary, separators=(",", ":"), sort_keys=True)
    for width in (200, 80, 30, 0):
        if len(text.encode()) <= limit:
            return text
        for f in summary.get("failed") or []:
            f["error"] = f.get("error", "")[:width]
        if "error" in summary:
            summary["error"] = summary["error"][: max(width, 40)]
        text = json.dumps(summary, separators=(",", ":"), sort_keys=True)
    for key in ("forgot", "ok", "failed"):
        while len(text.encode()) > limit and summary.get(key):
            value = summary[key]
            if isinstance(value, dict):
                biggest = max(value, key=lambda k: len(value[k]) if isinstance(value[k], list) else 0)
                if isinstance(value[biggest], list) and value[biggest]:
                    value[biggest] = value[biggest][:-1]
                else:
                    value.pop(biggest)
            else:
                value.pop()
            summary["truncated"] = True
            text = json.dumps(summary, separators=(",", ":"), sort_keys=True)
    return text


def _write_termination(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:  # not in a pod, or no such path: the summary still goes to stdout
        _log(f"could not write the termination message to {path}: {exc.strerror or exc}")


def read_fingerprint(spec: dict, wait: float = FINGERPRINT_WAIT) -> dict:
    """``{"out": value}`` or ``{"error": why}`` from the fingerprint container's files."""
    status = _read_exit_code(spec["exitCode"], wait)
    if status is None:
        return {"error": "the fingerprint command's exit status never appeared (did its container start?)"}
    if status != 0:
        return {"error": f"the fingerprint command exited with status {status}"}
    try:
        with open(spec["output"], "rb") as f:
            raw = f.read(FINGERPRINT_MAX * 4 + 1)
    except OSError as exc:
        return {"error": f"the fingerprint output could not be read: {exc.strerror or exc}"}
    text = raw.decode("utf-8", "replace").strip()
    if len(text) > FINGERPRINT_MAX:
        return {"error": f"the fingerprint command printed more than {FINGERPRINT_MAX} characters; "
                         "print a count or a checksum, not data"}
    if not text:
        return {"error": "the fingerprint command printed nothing"}
    return {"out": text}


def run_backup(task: Task) -> tuple[int, dict]:
    source = task.plan.get("source") or {}
    if source.get("kind") == "dir":
        outcomes, source_error = _backup_directory(task), None
    elif source.get("kind") == "fifo":
        outcomes, source_error = _backup_stream(task)
    else:
        raise SystemExit(_usage(f"unknown source kind {source.get('kind')!r} in the plan"))
    summary = backup_summary(task.plan, outcomes, source_error)
    if task.plan.get("fingerprint") and summary["ok"]:
        summary["fp"] = read_fingerprint(task.plan["fingerprint"])
        if "error" in summary["fp"]:
            _log(f"fingerprint: {summary['fp']['error']}")
    for o in outcomes:
        if o.ok:
            s = o.summary
            _log(f"{o.destination.name}: point {s['point_id']} ({s['type']}) in {o.destination.repository}: "
                 f"{s.get('size_bytes')} bytes read, {s.get('stored_bytes')} stored")
        else:
            _log(f"{o.destination.name}: FAILED: {o.error}")
    return (0 if summary["ok"] else 1), summary


# ---- prune -----------------------------------------------------------------------------------


def run_prune(task: Task) -> tuple[int, dict]:
    keep = task.plan.get("retention") or {}
    outcomes = [Outcome(d) for d in task.destinations]

    def one(outcome: Outcome) -> None:
        env = outcome.destination.env(task.env)
        if not _repository_exists(outcome.destination, env):
            outcome.rc, outcome.skipped, outcome.summary = 0, True, {"forget": [], "keep": []}
            return
        args = ["prune", "--repo", outcome.destination.repository, "--key", task.key_ref, "--json",
                "--lock-wait", "600"]
        for rule in ("last", "daily", "weekly", "monthly", "yearly"):
            args += [f"--keep-{rule}", str(int(keep.get(rule, 0)))]
        _finish(_run(_agent_argv(*args), env), outcome)

    threads = [threading.Thread(target=one, args=(o,)) for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = {
        "v": 1, "op": "prune",
        # Point ids are 128-bit hex; the first 16 digits name a point well enough to match it.
        "forgot": {o.destination.name: [f["point_id"][:16] for f in o.summary.get("forget") or []]
                   for o in outcomes if o.ok},
        "kept": {o.destination.name: len(o.summary.get("keep") or []) for o in outcomes if o.ok},
        "failed": [{"d": o.destination.name, "rc": o.rc, "error": o.error} for o in outcomes if not o.ok],
    }
    for o in outcomes:
        _log(f"{o.destination.name}: " + ("no repository yet" if o.skipped else
                                          f"forgot {len(summary['forgot'].get(o.destination.name, []))} points"
                                          if o.ok else f"FAILED: {o.error}"))
    return (0 if summary["forgot"] or not summary["failed"] else 1), summary


# ---- entry point ------------------------------------------------------------------------------


def _prepare(args) -> int:
    """The init container: a FIFO the dump writes into and the agent reads from."""
    old = os.umask(0)
    try:
        if os.path.lexists(args.fifo):
            os.unlink(args.fifo)
        os.mkfifo(args.fifo, 0o666)  # the dump image may run as another user
    finally:
        os.umask(old)
    _log(f"created FIFO {args.fifo}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifeline.agent.jobs",
                                     description="Run one backup or prune Job's plan (rendered by the operator).")
    sub = parser.add_subparsers(dest="operation", required=True)
    for op in ("backup", "prune"):
        p = sub.add_parser(op)
        p.add_argument("--plan", default=os.environ.get("LIFELINE_JOB_PLAN"),
                       help="the plan as JSON, or @file (default: $LIFELINE_JOB_PLAN)")
        p.add_argument("--termination-log",
                       default=os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG)
    p = sub.add_parser("prepare")
    p.add_argument("--fifo", required=True)
    args = parser.parse_args(argv)
    if args.operation == "prepare":
        return _prepare(args)
    plan = _load_plan(args.plan)
    if plan.get("operation") != args.operation:
        return _usage(f"this plan is for {plan.get('operation')!r}, not {args.operation!r}")
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-job-"))
    try:
        task = Task(plan, _key_ref(plan, workdir), dict(os.environ))
        rc, summary = run_backup(task) if args.operation == "backup" else run_prune(task)
    except OSError as exc:
        rc, summary = 1, {"v": 1, "op": args.operation, "ok": [], "failed": [],
                          "error": f"{exc.strerror or exc}{' ' + exc.filename if exc.filename else ''}"}
        _log(f"error: {summary['error']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = compact(summary)
    _write_termination(args.termination_log, text)
    print(text, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
