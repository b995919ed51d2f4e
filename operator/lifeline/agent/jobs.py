"""What a backup, prune or maintenance Job runs: ``python -m lifeline.agent.jobs backup|prune|maintenance|prepare``.

The operator renders the whole task into the ``LIFELINE_JOB_PLAN`` environment
variable (see :mod:`lifeline.planning.backup`). This module is the glue between that
plan and the agent's own command line: for every destination (each its own
repository, fanned out in parallel) it runs ``lifeline agent init`` when the
repository does not exist yet and then ``lifeline agent backup ... --json`` (or
``prune``, or ``repack`` for maintenance), collects the JSON summaries, and writes one compact combined summary
(at most 4 KiB) to the container's termination message, which the operator reads
to record the RecoveryPoint. A failure at one destination does not hide success
at another: the Job succeeds when at least one destination took the backup, and
the summary lists each failure with its reason.

A destination's ``immutable`` (docs/immutability.md): ``init`` creates the repository so, and a
backup to an existing one that is less immutable than asked fails there, saying why
(:func:`immutability_problem`). Its ``bandwidth`` (docs/storage.md, "Bandwidth"): every agent
run for it gets ``--limit-upload`` / ``--limit-download``, and what this process opens itself
(:func:`open_destination`) is throttled the same way.

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

The plan and the summary are the typed messages of :mod:`lifeline.messages`.

Exit codes: 0 at least one destination succeeded (or prune ran everywhere it could),
1 every destination failed, 78 (:data:`~lifeline.messages.EXIT_BAD_PLAN`) the plan is unusable.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lifeline.errors import LifelineError
from lifeline.messages import (CATALOGUE_LINE, DEFAULT_TERMINATION_LOG, EXIT_BAD_PLAN, PLAN_ENV, BackupPlan,
                               BackupSummary, CataloguePlan, CatalogueSummary, CopyStored,
                               DestinationFailed, DestinationPlan, FingerprintPlan, FingerprintResult, JobPlan,
                               MaintenancePlan, MaintenanceSummary, PrunePlan, PruneReport, Repacked,
                               UnreadableMessage, read_plan, termination)
from lifeline.messages.destination import destination_env, stderr_tail
from lifeline.repository.backend import Limits, S3Options, open_backend
from lifeline.repository.layout import CONFIG
from lifeline.repository.repo import Repository

from . import objects
from .progress import PREFIX as PROGRESS_PREFIX, format_line

EXIT_CODE_WAIT = 60.0  # seconds to wait for the dump's exit status after its stream ended
FINGERPRINT_WAIT = 300.0  # seconds to wait for the fingerprint command after the backup finished
FINGERPRINT_MAX = 256  # characters of a fingerprint kept: a count or a checksum, never data
BLOCK = 1 << 20


# ---- plumbing ------------------------------------------------------------------------------


def _agent_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "lifeline.agent", *args]  # the data plane only: starts fast


def log(message: str) -> None:
    print(f"lifeline job: {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    destination: DestinationPlan
    rc: int | None = None
    summary: dict | None = None  # what `lifeline agent backup|prune --json` printed
    error: str = ""
    stderr: str = ""
    skipped: bool = False  # prune: nothing to do here (no repository yet)

    @property
    def ok(self) -> bool:
        # 7: published, but some files could not be read (listed in the summary)
        return self.rc in (0, 7) and self.summary is not None


@dataclass
class Task:
    plan: BackupPlan | PrunePlan | CataloguePlan | MaintenancePlan
    key_ref: str  # what the agent is given (a local file for secret:// keys)
    env: dict = field(default_factory=dict)
    run: str = field(default_factory=lambda: secrets.token_hex(8))  # this Job's run, tagged on every copy

    @property
    def destinations(self) -> list[DestinationPlan]:
        return list(self.plan.destinations)


def load_plan(text: str | None, kind):
    """The plan of ``kind`` from ``--plan`` (JSON, or ``@file``); UnreadableMessage saying why it is unusable."""
    if text and text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise UnreadableMessage(f"the job plan file {text[1:]} cannot be read: {exc.strerror or exc}") from None
    return read_plan(text, kind)


def refuse_plan(message: str) -> int:
    """Say why the plan is refused; the exit code that tells a bad plan from a failed backup."""
    log(f"error: {message}; nothing was done")
    return EXIT_BAD_PLAN


def key_ref_of(plan: JobPlan, workdir: Path) -> str:
    """The key reference for the agent; a mounted Secret file is copied to a 0600 file first."""
    source = plan.key.file
    if not source:
        return plan.key.ref
    target = workdir / "key"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out)
    return f"file://{target}"


_LOG_LOCK = threading.Lock()


class _Stderr(threading.Thread):
    """An agent's stderr, read as it is written: its progress lines go to this Job's log at once, named
    by destination (``lifeline backup now --wait`` draws its bar from them); the rest is kept for the
    summary and the log at the end. Read from the start, so a chatty agent never blocks on a full pipe."""

    def __init__(self, pipe, destination: str | None):
        super().__init__(daemon=True)
        self.pipe, self.destination, self.kept = pipe, destination, []
        self.start()

    def run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            text = raw.decode(errors="replace")
            if not text.startswith(PROGRESS_PREFIX):
                self.kept.append(text)
                continue
            try:
                record = json.loads(text[len(PROGRESS_PREFIX):])
            except ValueError:
                continue
            if isinstance(record, dict):
                line = format_line({**record, "destination": self.destination}) + "\n"
                with _LOG_LOCK:
                    sys.stderr.write(line)
                    sys.stderr.flush()


def _run(argv: list[str], env: dict, stdin=None, destination: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.relay = _Stderr(proc.stderr, destination)
    return proc


def _finish(proc: subprocess.Popen, outcome: Outcome) -> Outcome:
    out = proc.stdout.read()
    proc.wait()
    proc.relay.join()
    outcome.rc = proc.returncode
    outcome.stderr = "".join(proc.relay.kept)
    if outcome.stderr:
        with _LOG_LOCK:  # whole lines: another destination's progress lines go on meanwhile
            sys.stderr.write("".join(f"[{outcome.destination.name}] {ln}\n" for ln in outcome.stderr.splitlines()))
    try:
        outcome.summary = json.loads(out) if out.strip() else None
    except ValueError:
        outcome.summary = None
    if not outcome.ok and not outcome.error:
        outcome.error = stderr_tail(outcome.stderr) or f"agent exited with status {outcome.rc}"
    return outcome


def s3_options(env: dict):
    """S3 settings of one destination's agent environment (see :func:`destination_env`)."""
    return S3Options(endpoint=env.get("AWS_ENDPOINT_URL"), region=env.get("AWS_REGION"),
                     access_key_id=env.get("AWS_ACCESS_KEY_ID"), secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"))


# What the azure:// and gs:// backends read from the process environment when they are made.
_STORE_ENV = ("AZURE_", "GOOGLE_", "GCE_")
_ENV_LOCK = threading.Lock()


def limits_of(dest: DestinationPlan) -> Limits | None:
    """The destination's bandwidth limits (docs/storage.md, "Bandwidth"), None when it has none."""
    b = dest.bandwidth
    return Limits.parse(b.upload, b.download) if b is not None else None


def limit_args(dest: DestinationPlan) -> list[str]:
    """``--limit-upload`` / ``--limit-download`` for the destination's agent, when it has limits."""
    return dest.bandwidth.agent_args() if dest.bandwidth is not None else []


def open_destination(dest: DestinationPlan, env: dict, *, create: bool = False):
    """The destination's backend, made with its own agent environment (:func:`destination_env`) and under
    its bandwidth limits: S3 settings are passed as options; Azure and GCS read theirs from the process
    environment when the backend is made, so it holds the destination's own for that moment (one
    destination at a time)."""
    limits = limits_of(dest)
    if dest.scheme not in ("azure", "gs"):
        return open_backend(dest.repository, s3_options(env), create=create, limits=limits)
    with _ENV_LOCK:
        saved = {k: v for k, v in os.environ.items() if k.startswith(_STORE_ENV)}
        try:
            for k in saved:
                if k not in env:
                    del os.environ[k]
            os.environ.update({k: v for k, v in env.items() if k.startswith(_STORE_ENV)})
            return open_backend(dest.repository, create=create, limits=limits)
        finally:
            for k in [k for k in os.environ if k.startswith(_STORE_ENV)]:
                if k not in saved:
                    del os.environ[k]
            os.environ.update(saved)


def _repository_exists(dest: DestinationPlan, env: dict) -> bool:
    try:
        return open_destination(dest, env).exists(CONFIG)
    except Exception:  # noqa: BLE001 - unreachable or missing: let `init` say what is wrong
        return False


def immutability_problem(dest: DestinationPlan, env: dict) -> str | None:
    """Why the existing repository at ``dest`` is not as immutable as the plan asks (docs/immutability.md):
    mutable, locked for fewer days, or in governance mode where compliance is asked. None when it is,
    when nothing is asked, or when its config cannot be read here (the backup then says why)."""
    want = dest.immutable
    if want is None:
        return None
    try:
        have = Repository.open(open_destination(dest, env)).immutability
    except Exception:  # noqa: BLE001 - unreachable, missing, damaged: the agent's own words come from the backup
        return None
    asked = f"{want.mode} mode, {want.days} day{'s' if want.days != 1 else ''}"
    if have is None:
        why = "is mutable"
    elif have.days < want.days:
        why = f"is immutable for fewer days ({have.describe()})"
    elif want.mode == "compliance" and have.mode != "compliance":
        why = f"is immutable in {have.mode} mode ({have.describe()})"
    else:
        return None
    return (f"the repository {why}, and the policy asks for {asked}; nothing was backed up there. A repository "
            "keeps what it was created with: point the destination at a new prefix on a bucket with S3 Object Lock "
            "(docs/immutability.md)")


def _ensure_repository(task: Task, outcome: Outcome, env: dict) -> bool:
    """Create the destination's repository on first use (immutable when the plan says so); False (and the
    outcome says why) when that fails, or when an existing one is less immutable than the plan asks."""
    dest = outcome.destination
    if not _repository_exists(dest, env):
        cipher = getattr(task.plan, "key", None) and task.plan.key.cipher
        immutable = ["--immutable-days", str(dest.immutable.days), "--immutable-mode", dest.immutable.mode] \
            if dest.immutable is not None else []
        proc = subprocess.run(_agent_argv("init", "--repo", dest.repository, "--key", task.key_ref, "--json",
                                          *(["--cipher", cipher] if cipher else []), *immutable),
                              env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            return True
        if "already exists" not in proc.stderr:
            outcome.rc = proc.returncode
            outcome.error = stderr_tail(proc.stderr) or f"agent init exited with status {proc.returncode}"
            return False
    problem = immutability_problem(dest, env)
    if problem is not None:
        outcome.rc, outcome.error = 1, problem
        return False
    return True


# ---- backup ----------------------------------------------------------------------------------


def _backup_args(task: Task, dest: DestinationPlan, source_args: list[str]) -> list[str]:
    plan = task.plan
    args = ["backup", *source_args, "--type", plan.type, "--repo", dest.repository,
            "--key", task.key_ref, "--json", "--no-progress", "--progress-lines", "--source-name", plan.source.name,
            *limit_args(dest)]
    for tag in [*plan.tags, f"run={task.run}"]:  # run: one Job's copies, told apart from another's
        args += ["--tag", tag]
    if os.environ.get("LIFELINE_BACKUP_TIME"):  # the devstack's job runner pins times to its clock
        args += ["--time", os.environ["LIFELINE_BACKUP_TIME"]]
    return _agent_argv(*args)


def _write_objects(source) -> str | None:
    """A resources source: the namespace's objects written out under ``source.path``; why not, if not."""
    try:
        written = objects.write_objects(source.resources, Path(source.path))
    except LifelineError as exc:  # unreadable kinds, no credentials, the API server out of reach
        return str(exc)
    log(f"wrote {written.objects} objects of {len(written.kinds)} kinds from {source.resources.namespace} "
        f"({written.left_out} left out: the cluster makes them again)")
    return None


def _backup_directory(task: Task) -> list[Outcome]:
    source = task.plan.source.path
    outcomes = [Outcome(d) for d in task.destinations]

    def one(outcome: Outcome) -> None:
        env = destination_env(outcome.destination, task.env)
        if not _ensure_repository(task, outcome, env):
            return
        _finish(_run(_backup_args(task, outcome.destination, [source]), env, destination=outcome.destination.name),
                outcome)

    threads = [threading.Thread(target=one, args=(o,)) for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def read_exit_code(path: str, wait: float) -> int | None:
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
    source = task.plan.source
    outcomes = [Outcome(d) for d in task.destinations]
    procs: dict[int, subprocess.Popen] = {}
    for i, outcome in enumerate(outcomes):
        env = destination_env(outcome.destination, task.env)
        if not _ensure_repository(task, outcome, env):
            continue
        args = ["--stdin", "--stdin-name", source.stream.name]
        procs[i] = _run(_backup_args(task, outcome.destination, args), env, stdin=subprocess.PIPE,
                        destination=outcome.destination.name)
    total = 0
    # Opening a FIFO for reading waits for the dump container to open it for writing.
    with open(source.path, "rb", buffering=0) as stream:
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
    status = read_exit_code(source.stream.exit_code, EXIT_CODE_WAIT)
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
    log(f"read {total} bytes from the dump")
    return outcomes, None


def _failures(outcomes: list[Outcome]) -> list[DestinationFailed]:
    return [DestinationFailed(destination=o.destination.name, exit_code=o.rc, error=o.error)
            for o in outcomes if not o.ok]


def _copy_stored(o: Outcome) -> CopyStored:
    """One destination's copy, from what `lifeline agent backup --json` printed there."""
    s = o.summary
    return CopyStored(
        destination=o.destination.name, snapshot_id=s["point_id"], type=s["type"], parent_id=s.get("parent_id"),
        repository=s.get("repository") or o.destination.repository, stored_bytes=s.get("stored_bytes", 0),
        chunks=(s.get("chunks_total", 0), s.get("chunks_new", 0)), manifest_checksum=s["manifest_checksum"],
        start=s["start_time"], end=s["completion_time"], seconds=s.get("duration_seconds"),
        skipped_files=len(s.get("skipped") or []))


def backup_summary(plan: BackupPlan, outcomes: list[Outcome], source_error: str | None = None) -> BackupSummary:
    """The combined summary the operator turns into a RecoveryPoint."""
    ok = [o for o in outcomes if o.ok]
    out = BackupSummary(requested_type=plan.type, key_ref=plan.key.ref, copies=[_copy_stored(o) for o in ok],
                        failures=_failures(outcomes), error=source_error or None)
    if ok:
        first = ok[0].summary
        out.start = min(o.summary["start_time"] for o in ok)
        out.end = max(o.summary["completion_time"] for o in ok)
        out.size_bytes, out.files = first.get("size_bytes", 0), first.get("files", 0)
    return out


def read_fingerprint(spec: FingerprintPlan, wait: float = FINGERPRINT_WAIT) -> FingerprintResult:
    """The value, or why there is none, from the fingerprint container's files."""
    status = read_exit_code(spec.exit_code, wait)
    if status is None:
        return FingerprintResult(
            error="the fingerprint command's exit status never appeared (did its container start?)")
    if status != 0:
        return FingerprintResult(error=f"the fingerprint command exited with status {status}")
    try:
        with open(spec.output, "rb") as f:
            raw = f.read(FINGERPRINT_MAX * 4 + 1)
    except OSError as exc:
        return FingerprintResult(error=f"the fingerprint output could not be read: {exc.strerror or exc}")
    text = raw.decode("utf-8", "replace").strip()
    if len(text) > FINGERPRINT_MAX:
        return FingerprintResult(error=f"the fingerprint command printed more than {FINGERPRINT_MAX} characters; "
                                       "print a count or a checksum, not data")
    if not text:
        return FingerprintResult(error="the fingerprint command printed nothing")
    return FingerprintResult(output=text)


def run_backup(task: Task) -> tuple[int, BackupSummary]:
    source = task.plan.source
    if source.base_backup:  # lifeline.agent.base_backup_job stores the copy, tagged
        raise SystemExit(refuse_plan("a base backup's plan is run by python -m lifeline.agent.base_backup_job"))
    if source.stream is not None:
        outcomes, source_error = _backup_stream(task)
    elif source.resources is not None and (source_error := _write_objects(source)) is not None:
        outcomes = [Outcome(d, error=source_error) for d in task.destinations]  # nothing half-read is stored
    else:
        outcomes, source_error = _backup_directory(task), None
    summary = backup_summary(task.plan, outcomes, source_error)
    if task.plan.fingerprint is not None and summary.copies:
        summary.fingerprint = read_fingerprint(task.plan.fingerprint)
        if summary.fingerprint.error:
            log(f"fingerprint: {summary.fingerprint.error}")
    for o in outcomes:
        if o.ok:
            s = o.summary
            log(f"{o.destination.name}: point {s['point_id']} ({s['type']}) in {o.destination.repository}: "
                 f"{s.get('size_bytes')} bytes read, {s.get('stored_bytes')} stored")
        else:
            log(f"{o.destination.name}: FAILED: {o.error}")
    return (0 if summary.copies else 1), summary


# ---- prune -----------------------------------------------------------------------------------


def run_prune(task: Task) -> tuple[int, PruneReport]:
    keep = task.plan.retention
    outcomes = [Outcome(d) for d in task.destinations]

    def one(outcome: Outcome) -> None:
        env = destination_env(outcome.destination, task.env)
        if not _repository_exists(outcome.destination, env):
            outcome.rc, outcome.skipped, outcome.summary = 0, True, {"forget": [], "keep": []}
            return
        args = ["prune", "--repo", outcome.destination.repository, "--key", task.key_ref, "--json",
                "--lock-wait", "600", *limit_args(outcome.destination)]
        for rule in ("last", "daily", "weekly", "monthly", "yearly"):
            args += [f"--keep-{rule}", str(getattr(keep, rule))]
        _finish(_run(_agent_argv(*args), env), outcome)

    threads = [threading.Thread(target=one, args=(o,)) for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = PruneReport(
        # Point ids are 128-bit hex; the first 16 digits name a point well enough to match it.
        forgotten={o.destination.name: [f["point_id"][:16] for f in o.summary.get("forget") or []]
                   for o in outcomes if o.ok},
        kept={o.destination.name: len(o.summary.get("keep") or []) for o in outcomes if o.ok},
        failures=_failures(outcomes))
    for o in outcomes:
        log(f"{o.destination.name}: " + ("no repository yet" if o.skipped else
                                          f"forgot {len(report.forgotten.get(o.destination.name, []))} points"
                                          if o.ok else f"FAILED: {o.error}"))
    return (0 if report.forgotten or not report.failures else 1), report


# ---- maintenance ------------------------------------------------------------------------------


def _repacked(o: Outcome) -> Repacked:
    s = o.summary
    return Repacked(destination=o.destination.name, bytes_before=s.get("bytes_before", 0),
                    bytes_after=s.get("bytes_after", 0), packs_before=s.get("packs_before", 0),
                    packs_after=s.get("packs_after", 0), packs_rewritten=s.get("packs_rewritten", 0),
                    packs_deleted=s.get("packs_deleted_unused", 0) + s.get("packs_deleted_unindexed", 0),
                    bytes_copied=s.get("bytes_copied", 0), damaged=len(s.get("damaged") or []),
                    seconds=s.get("duration_seconds"))


def run_maintenance(task: Task) -> tuple[int, MaintenanceSummary]:
    """``lifeline agent repack`` at every destination (in parallel: each its own repository and lock).
    Damaged packs are left whole by repack (exit 3 with its summary): the destination is repacked and
    listed as failed too, naming them."""
    plan: MaintenancePlan = task.plan
    outcomes = [Outcome(d) for d in task.destinations]

    def one(outcome: Outcome) -> None:
        env = destination_env(outcome.destination, task.env)
        try:  # unlike prune's, a store out of reach is a failure here, not "no repository yet"
            exists = open_destination(outcome.destination, env).exists(CONFIG)
        except Exception as exc:  # noqa: BLE001 - the backend's own words (they never carry a secret)
            outcome.rc, outcome.error = 1, (str(exc).strip() or type(exc).__name__)[:300]
            return
        if not exists:
            outcome.rc, outcome.skipped, outcome.summary = 0, True, {}
            return
        _finish(_run(_agent_argv("repack", "--repo", outcome.destination.repository, "--key", task.key_ref,
                                 "--json", "--no-progress", "--max-unused", str(plan.max_unused),
                                 "--lock-wait", str(plan.lock_wait), *limit_args(outcome.destination)), env), outcome)
        if outcome.rc == 3 and outcome.summary is not None and outcome.summary.get("damaged"):
            outcome.rc = 0
            outcome.error = (f"{len(outcome.summary['damaged'])} damaged pack(s) left as they are; run "
                             "`lifeline agent check --read-data`")

    threads = [threading.Thread(target=one, args=(o,)) for o in outcomes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [o for o in outcomes if o.ok and not o.skipped]
    failures = _failures(outcomes) + [DestinationFailed(destination=o.destination.name, exit_code=3, error=o.error)
                                      for o in done if o.error]
    summary = MaintenanceSummary(repacked=[_repacked(o) for o in done], failures=failures)
    for o in outcomes:
        r = _repacked(o) if o in done else None
        log(f"{o.destination.name}: " + ("no repository yet" if o.skipped else
                                          f"repacked: {r.bytes_before} -> {r.bytes_after} bytes, {r.packs_rewritten} "
                                          f"packs rewritten, {r.packs_deleted} deleted" if r is not None
                                          else f"FAILED: {o.error}"))
    return (0 if summary.repacked or not _failures(outcomes) else 1), summary


# ---- catalogue --------------------------------------------------------------------------------


def run_catalogue(task: Task) -> tuple[int, CatalogueSummary]:
    """Every point of the policy in every destination, authenticated with the key, one log line each
    (``CATALOGUE_LINE`` + JSON): the operator adopts them as RecoveryPoints (a namespace rebuilt)."""
    plan: CataloguePlan = task.plan
    outcomes = [Outcome(d) for d in task.destinations]
    listed: dict[str, int] = {}
    for o in outcomes:  # one after another: each point's line is written whole
        env = destination_env(o.destination, task.env)
        if not _repository_exists(o.destination, env):
            o.rc, o.skipped, o.summary, listed[o.destination.name] = 0, True, {"points": []}, 0
            log(f"{o.destination.name}: no repository yet")
            continue
        _finish(_run(_agent_argv("points", "--repo", o.destination.repository, "--key", task.key_ref, "--json",
                                 "--authenticate", "--tag", plan.tag, *limit_args(o.destination)), env), o)
        rows = (o.summary or {}).get("points") or []
        if o.rc == 3 and o.summary is not None:  # some points unreadable: the readable ones still count
            bad = o.summary.get("unreadable") or {}
            o.rc, o.error = 0, f"{len(bad)} points unreadable: " + "; ".join(f"{k}: {v}" for k, v in list(bad.items())[:3])
            log(f"{o.destination.name}: {o.error}")
        for row in rows:
            print(CATALOGUE_LINE + json.dumps({"destination": o.destination.name, "repository": o.destination.repository,
                                               **row}, sort_keys=True, separators=(",", ":")), flush=True)
        listed[o.destination.name] = len(rows)
        log(f"{o.destination.name}: {len(rows)} points" if o.ok else f"{o.destination.name}: FAILED: {o.error}")
    failures = _failures(outcomes) + [DestinationFailed(destination=o.destination.name, exit_code=0, error=o.error)
                                      for o in outcomes if o.ok and o.error]
    summary = CatalogueSummary(listed={k: v for k, v in listed.items()
                                       if any(o.ok and o.destination.name == k for o in outcomes)},
                               failures=failures)
    return (0 if not _failures(outcomes) else 1), summary


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
    log(f"created FIFO {args.fifo}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lifeline.agent.jobs",
                                     description="Run one backup, prune or maintenance Job's plan (rendered by the "
                                                 "operator).")
    sub = parser.add_subparsers(dest="operation", required=True)
    for op in ("backup", "prune", "catalogue", "maintenance"):
        p = sub.add_parser(op)
        p.add_argument("--plan", default=os.environ.get(PLAN_ENV),
                       help=f"the plan as JSON, or @file (default: ${PLAN_ENV})")
        p.add_argument("--termination-log",
                       default=os.environ.get("LIFELINE_TERMINATION_LOG") or DEFAULT_TERMINATION_LOG)
    p = sub.add_parser("prepare")
    p.add_argument("--fifo", required=True)
    args = parser.parse_args(argv)
    if args.operation == "prepare":
        return _prepare(args)
    try:
        plan = load_plan(args.plan, {"backup": BackupPlan, "prune": PrunePlan, "catalogue": CataloguePlan,
                                     "maintenance": MaintenancePlan}[args.operation])
    except UnreadableMessage as exc:
        return refuse_plan(str(exc))
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-job-"))
    try:
        task = Task(plan, key_ref_of(plan, workdir), dict(os.environ))
        rc, summary = {"backup": run_backup, "prune": run_prune, "catalogue": run_catalogue,
                       "maintenance": run_maintenance}[args.operation](task)
    except OSError as exc:
        error = os_error(exc)
        rc = 1
        summary = BackupSummary(requested_type=plan.type, error=error) if args.operation == "backup" \
            else CatalogueSummary(error=error) if args.operation == "catalogue" \
            else MaintenanceSummary(error=error) if args.operation == "maintenance" else PruneReport(error=error)
        log(f"error: {error}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(termination.write(args.termination_log, summary), flush=True)
    return rc


def os_error(exc: OSError) -> str:
    return f"{exc.strerror or exc}{' ' + exc.filename if exc.filename else ''}"


if __name__ == "__main__":
    sys.exit(main())
