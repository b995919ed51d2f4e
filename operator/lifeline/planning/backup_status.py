"""A BackupPolicy's whole status, from the policy and the facts around it. Pure.

One writer per status: this planner folds the spec-validity ``Ready`` of
:mod:`lifeline.planning.readiness` into the policy's own conditions:

- ``Ready`` — the spec is valid and its CronJobs are in place (reason ``SpecValid``,
  kept from the generic readiness contract), or why not (``InvalidSpec``,
  ``ApplyFailed``, a plan error such as ``InvalidKeyRef``);
- ``RPOAchievable`` — the longest gap between scheduled backups against the RPO,
  with the arithmetic in the message; ``False`` is accepted, but loud (a continuous
  source: the shipper's scan interval against the RPO, and the segment close
  interval that leaves);
- ``RPOMet`` — the age of the newest recovery point's data against the RPO,
  re-planned on a timer (the message names the moment it runs out, so it only
  changes when the status flips); for a continuous source, the close time of the
  newest shipped segment (what the shipper reports, ``Inputs.shipped``);
- ``SourceAvailable``, ``DestinationsReachable``, ``KeysAvailable`` — what the
  referenced PVCs and Secrets and the latest backups say; a Vault key is not
  checked by the operator yet (``Unknown`` until a backup used it);
- ``OffSiteCopy`` — whether the newest recovery point has a copy off site (naming the immutable
  ones; with ``spec.objectives.requireImmutableOffSite``, only a copy on an immutable off-site
  destination counts). ``status.destinations[].immutable`` says what each destination's
  ``immutable`` asks.

The planner returns the merge patch to write (``None`` when nothing changed) and
the Events that go with the changes: Warnings on every condition turning False,
Normal ones when it recovers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lifeline.api import BACKUP_POLICY as INFO
from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.common import format_duration
from lifeline.api.validation import problems_in_spec
from lifeline.clock import parse_time, rfc3339
from lifeline.objects import merge_patch

from . import conditions

from lifeline.sources import Ref, Seen, room_of
from lifeline.sources.base import pvc_problem, secret_problem

from .backup import PlanError, parse_key_ref, schedules
from .backup_schedule import describe, longest_gap
from .continuous import SHIP_SCAN_SECONDS
from .job_record import JobRecord
from .readiness import EventPlan
from .snapshot import SNAPSHOT_REASONS

READY = "Ready"
ORDER = ("Ready", "RPOAchievable", "RPOMet", "SourceAvailable", "DestinationsReachable", "KeysAvailable",
         "OffSiteCopy")
RECOVERED = {"RPOMet": "RPORecovered"}


@dataclass
class Inputs:
    now: datetime
    refs: dict[str, Ref] = field(default_factory=dict)  # "pvc/<name>" and "secret/<name>"
    jobs: list[dict] = field(default_factory=list)  # backup_points.job_fact() of this policy's Jobs
    points: list[dict] = field(default_factory=list)  # backup_points.point_fact() of its RecoveryPoints
    cron_jobs: list[tuple[str, str]] = field(default_factory=list)  # (name, schedule) in place
    apply_error: str | None = None
    plan_error: PlanError | None = None
    backup_now_handled: str | None = None
    # The parsed spec and its problems, when the caller has them already (they only change with
    # the generation; validating cron expressions is the expensive part of a plan).
    spec: BackupPolicySpec | None = None
    problems: list | None = None
    # (status, reason, message) of the key provider's own check (lifeline.keys.health), when asked
    key_check: tuple[str, str, str] | None = None
    # continuous sources: what the shipper last said it shipped (lifeline.controllers.backup_continuous.Shipped:
    # .segment, .closed_at, .error), None when it was not asked (not continuous, or suspended)
    shipped: object | None = None
    # resources sources: what the API server serves (lifeline.sources.resources.Served), from discovery
    served: tuple = ()


@dataclass
class StatusPlan:
    patch: dict | None
    events: list[EventPlan]
    valid: bool
    data_age_seconds: float | None = None
    rpo_target_seconds: float | None = None
    achievable: bool | None = None


def required_refs(spec: BackupPolicySpec) -> list[str]:
    """Every ``pvc/<name>`` and ``secret/<name>`` the policy's Jobs need."""
    refs = room_of(spec).references(spec)
    for d in spec.destinations:
        if d.credentials_secret is not None:  # s3, azure, gcs
            refs.append(f"secret/{d.credentials_secret}")
        else:
            refs.append(f"pvc/{d.filesystem.claim_name}")
    try:
        scheme, secret, _ = parse_key_ref(spec.encryption.key_ref)
    except PlanError:
        secret = None
    if secret:
        refs.append(f"secret/{secret}")
    return list(dict.fromkeys(refs))


# ---- the conditions ------------------------------------------------------------------


def _achievable(spec: BackupPolicySpec, rpo: float) -> tuple[dict, int]:
    gap = longest_gap(tuple(schedules(spec)))
    where = f"after the {gap.after} run '{gap.expression}'"
    if gap.seconds <= rpo:
        return (conditions.make("RPOAchievable", True, "ScheduleMeetsRPO",
                                f"the longest gap between scheduled backups is {describe(gap.seconds)}, {where}; "
                                f"within the RPO of {describe(rpo)}", None), gap.seconds)
    ratio = gap.seconds / rpo if rpo else float("inf")
    text = (f"the longest gap between scheduled backups is {describe(gap.seconds)}, {where}; the RPO is "
            f"{describe(rpo)}: up to {format_duration(gap.seconds)} of data could be lost, {ratio:.1f}x the "
            f"objective. Schedule a backup at least every {format_duration(rpo)}, or raise spec.objectives.rpo")
    if rpo < 60:
        text += ("; no cron schedule runs more than once a minute: only a continuous (log-shipping) source "
                 f"can meet an RPO of {format_duration(rpo)}")
    return conditions.make("RPOAchievable", False, "ScheduleTooSparse", text, None), gap.seconds


def _achievable_continuous(rpo: float) -> tuple[dict, int]:
    """A shipped log: the loss bound is the workload's segment close interval plus one scan and upload."""
    scan = SHIP_SCAN_SECONDS
    if rpo <= scan:
        return (conditions.make("RPOAchievable", False, "ShippingTooSlow",
                                f"the shipper looks for closed segments every {scan:g}s, which alone uses up the "
                                f"RPO of {describe(rpo)}: raise spec.objectives.rpo", None), int(scan))
    budget = rpo - scan
    return (conditions.make("RPOAchievable", True, "ContinuousShipping",
                            f"continuous source: a closed segment is shipped within about {scan:g}s plus its "
                            f"upload; data loss is at most the workload's segment close interval plus that, so the "
                            f"RPO of {describe(rpo)} holds while segments close at least every "
                            f"{format_duration(int(budget)) if budget >= 1 else f'{budget:.1f}s'} "
                            f"(PostgreSQL: archive_timeout <= {budget:g}s; see docs/continuous.md)", None),
            int(scan))


def _rpo_met_shipped(rpo: float, shipped, data_time: datetime | None, created: datetime | None,
                     now: datetime) -> dict:
    """RPOMet of a continuous policy: now minus the close time of the newest shipped segment."""
    if shipped is None or shipped.closed_at is None:
        cond = _rpo_met(rpo, data_time, created, now)
        why = (shipped.error if shipped is not None else None) or "not read yet"
        return dict(cond, message=f"{cond['message']}; the shipper's newest segment is not known ({why})")
    r, limit = describe(rpo), shipped.closed_at + timedelta(seconds=rpo)
    what = f"the newest shipped segment {shipped.segment} closed at {rfc3339(shipped.closed_at)}"
    if now <= limit:
        return conditions.make("RPOMet", True, "WithinRPO", f"{what}: within the RPO of {r} until {rfc3339(limit)}",
                               None)
    return conditions.make("RPOMet", False, "RPOBreached",
                           f"{what}: the RPO of {r} ran out at {rfc3339(limit)}. Is the workload still writing "
                           f"and closing segments, is the shipper running, and can it reach every destination? "
                           f"(its lifeline_wal_* metrics and logs; docs/runbooks.md)", None)


def _rpo_met(rpo: float, data_time: datetime | None, created: datetime | None, now: datetime) -> dict:
    r = describe(rpo)
    if data_time is None:
        since = created or now
        runs_out = rfc3339(since + timedelta(seconds=rpo))
        if (now - since).total_seconds() > rpo:
            return conditions.make("RPOMet", False, "NoSuccessfulBackup",
                                   f"no successful backup since the policy was created at {rfc3339(since)}; "
                                   f"the RPO of {r} ran out at {runs_out}", None)
        return conditions.make("RPOMet", None, "AwaitingFirstBackup",
                               f"no successful backup yet; the RPO of {r} runs out at {runs_out}", None)
    limit = data_time + timedelta(seconds=rpo)
    if now <= limit:
        return conditions.make("RPOMet", True, "WithinRPO",
                               f"the newest recovery point holds data as of {rfc3339(data_time)}: within the RPO "
                               f"of {r} until {rfc3339(limit)}", None)
    return conditions.make("RPOMet", False, "RPOBreached",
                           f"the newest recovery point holds data as of {rfc3339(data_time)}: the RPO of {r} ran "
                           f"out at {rfc3339(limit)}. Look at the latest backup Jobs and the policy's Events", None)


def _hooks_note(spec: BackupPolicySpec) -> str:
    if not room_of(spec).runs_hooks and (spec.hooks.pre or spec.hooks.post):
        return ("; spec.hooks are not run for this source (hooks run around a volumeSnapshot's cut only: "
                "a backup Job of a pvc or command source starts without the operator)")
    return ""


def _pipeline_failure(jobs: list[dict]) -> tuple[str, str] | None:
    """The newest snapshot pipeline's failure about the source, unless a backup succeeded since."""
    newest = None
    for job in sorted(jobs, key=_job_key):
        r = JobRecord.of(job) or JobRecord()
        if job["operation"] == "trigger" and r.outcome == "Failed" and r.reason in SNAPSHOT_REASONS:
            newest = r
        elif r.outcome == "Succeeded" and job["operation"] == "backup":
            newest = None
    return (newest.reason, newest.error or "") if newest is not None else None


def _source(spec: BackupPolicySpec, ns: str, name: str, x: Inputs) -> dict:
    """SourceAvailable: the plan's error about the source, else what the source's room finds."""
    if x.plan_error is not None and x.plan_error.condition == "SourceAvailable":
        status, reason, message = False, x.plan_error.reason, x.plan_error.message
    else:
        seen = Seen(ns, x.refs, _pipeline_failure(x.jobs), policy=name, served=x.served)
        found = room_of(spec).availability(spec, seen)
        status, reason, message = found.status, found.reason, found.message
    return conditions.make("SourceAvailable", status, reason, message + _hooks_note(spec), None)


def _destinations(spec: BackupPolicySpec, ns: str, x: Inputs, dest_status: list[dict]) -> dict:
    problems = []
    for d in spec.destinations:
        if d.s3 is not None:
            p = secret_problem(x.refs.get(f"secret/{d.s3.credentials_secret}"), ns, d.s3.credentials_secret,
                                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                                f"destination {d.name} (S3 credentials)")
        elif d.azure is not None:
            p = _azure_secret_problem(d, x.refs.get(f"secret/{d.azure.credentials_secret}"), ns)
        elif d.gcs is not None:
            p = secret_problem(x.refs.get(f"secret/{d.gcs.credentials_secret}"), ns, d.gcs.credentials_secret,
                                (d.gcs.credentials_key,), f"destination {d.name} (GCS service account key)")
        else:
            p = pvc_problem(x.refs.get(f"pvc/{d.filesystem.claim_name}"), ns, d.filesystem.claim_name,
                             f"destination {d.name}", "its filesystem.claimName")
        if p:
            problems.append(p)
    if problems:
        return conditions.make("DestinationsReachable", False, problems[0][0], "; ".join(m for _, m in problems), None)
    failed = [d for d in dest_status if d.get("lastOutcome") == "Failed"]
    if failed:
        text = "; ".join(f"{d['name']}: the latest backup failed there: {d.get('message') or 'no reason given'}"
                         for d in failed)
        return conditions.make("DestinationsReachable", False, "DestinationFailed", text, None)
    tried = [d for d in dest_status if d.get("lastOutcome") == "Succeeded"]
    if tried and len(tried) == len(dest_status):
        return conditions.make("DestinationsReachable", True, "LatestBackupsStored",
                               "every destination took its latest backup: " + ", ".join(d["name"] for d in tried),
                               None)
    if tried:
        untried = [d["name"] for d in dest_status if d.get("lastOutcome") is None]
        return conditions.make("DestinationsReachable", None, "NotAllTried",
                               f"no backup has reached {', '.join(untried)} yet", None)
    return conditions.make("DestinationsReachable", None, "NotProbedYet",
                           "no backup has reached a destination yet; Lifeline learns reachability from backups "
                           "(there is no active probe yet)", None)


AZURE_CREDENTIALS = (("AZURE_STORAGE_ACCOUNT_KEY",), ("AZURE_STORAGE_SAS_TOKEN",),
                     ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"))


def _azure_secret_problem(d, ref, ns: str) -> tuple[str, str] | None:
    """An azure destination's Secret: there, with the account's name unless accountName says it, and one
    credential whole (an account key, a SAS token, or a service principal's three keys)."""
    az, what = d.azure, f"destination {d.name} (Azure credentials)"
    name = az.credentials_secret
    need = () if az.account_name else ("AZURE_STORAGE_ACCOUNT_NAME",)
    problem = secret_problem(ref, ns, name, need, what)
    if problem or ref is None or not ref.exists:
        if problem and problem[0] == "SecretNotFound":
            return problem[0], problem[1] + (" and " if need else " with ") + "AZURE_STORAGE_ACCOUNT_KEY " \
                "(or AZURE_STORAGE_SAS_TOKEN, or a service principal's AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and " \
                "AZURE_TENANT_ID)"
        return problem
    if not any(all(k in ref.keys for k in keys) for keys in AZURE_CREDENTIALS):
        return "SecretKeyMissing", (f"{what}: Secret {ns}/{name} has no credential: give it AZURE_STORAGE_ACCOUNT_KEY, "
                                    "AZURE_STORAGE_SAS_TOKEN, or AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and "
                                    f"AZURE_TENANT_ID (it has: {', '.join(sorted(ref.keys)) or 'none'})")
    return None


def _keys(spec: BackupPolicySpec, ns: str, x: Inputs, last_backup: dict | None,
          last_result: JobRecord | None) -> dict:
    if x.plan_error is not None and x.plan_error.condition == "KeysAvailable":
        return conditions.make("KeysAvailable", False, x.plan_error.reason, x.plan_error.message, None)
    ref = spec.encryption.key_ref
    scheme, secret, key = parse_key_ref(ref)
    if x.key_check is not None and x.key_check[0] == "False":  # what the key provider says now comes first
        return conditions.make("KeysAvailable", False, x.key_check[1], x.key_check[2], None)
    if last_result and last_result.outcome == "Failed" and last_result.exit_codes and \
            all(rc == 4 for rc in last_result.exit_codes.values()):
        errors = "; ".join(f"{d}: {e}" for d, e in last_result.failures.items())
        return conditions.make("KeysAvailable", False, "KeyRefused",
                               f"the latest backup could not use the key {ref}: {errors}", None)
    if secret:
        problem = secret_problem(x.refs.get(f"secret/{secret}"), ns, secret, (key,), f"encryption.keyRef {ref}")
        if problem:
            reason, text = problem
            return conditions.make("KeysAvailable", False, "KeySecretNotFound" if reason == "SecretNotFound"
                                   else reason, text, None)
        looked = x.refs.get(f"secret/{secret}")
        if looked is None or looked.exists is None:
            return conditions.make("KeysAvailable", None, "LookupFailed",
                                   f"could not look up Secret {ns}/{secret}: "
                                   f"{(looked.error if looked else None) or 'not looked up yet'}", None)
        return conditions.make("KeysAvailable", True, "KeySecretFound",
                               f"the key-encryption key is in Secret {secret}, key {key}", None)
    if x.key_check is not None:
        status, reason, message = x.key_check
        return conditions.make("KeysAvailable", {"True": True, "False": False}.get(status), reason, message, None)
    if last_backup and last_backup.get("outcome") == "Succeeded":
        return conditions.make("KeysAvailable", True, "UsedByLatestBackup",
                               f"the latest backup used the key {ref}; the operator does not check {scheme} keys "
                               "itself yet", None)
    return conditions.make("KeysAvailable", None, "NotCheckedYet",
                           f"{scheme} keys are not checked by the operator yet (the Vault check has not landed); "
                           "the first backup shows whether the key can be used", None)


def immutable_text(dest) -> str | None:
    """What a destination's ``immutable`` asks, in a few words ("Compliance, 30 days"); None: mutable."""
    imm = dest.immutable
    return f"{imm.mode}, {imm.days} day{'s' if imm.days != 1 else ''}" if imm is not None else None


def _off_site(spec: BackupPolicySpec, newest: dict | None, dest_status: list[dict]) -> dict:
    off = [d.name for d in spec.destinations if d.off_site]
    locked = {d.name: immutable_text(d) for d in spec.destinations if d.off_site and d.immutable is not None}
    required = spec.objectives.require_immutable_off_site
    if not off:
        return conditions.make("OffSiteCopy", False, "NoOffSiteDestination",
                               "no destination is marked offSite: losing this site loses every copy; add a "
                               "destination in another site with offSite: true", None)
    if required and not locked:
        return conditions.make("OffSiteCopy", False, "NoImmutableOffSiteDestination",
                               f"spec.objectives.requireImmutableOffSite: no offSite destination is immutable "
                               f"({', '.join(off)} can be deleted by whoever holds their credentials): make an s3 one "
                               "immutable (immutable: {mode: Compliance, days: 30}), on a new prefix of a bucket with "
                               "S3 Object Lock (docs/immutability.md)", None)
    if newest is None:
        return conditions.make("OffSiteCopy", None, "NoBackupYet", "no recovery point yet", None)
    held = [d for d, _ in newest["copies"] if d in off]
    counted = [d for d in held if d in locked] if required else held
    if counted:
        return conditions.make("OffSiteCopy", True, "OffSiteCopyStored",
                               f"the newest recovery point {newest['name']} has an off-site copy at "
                               + ", ".join(f"{d} (immutable: {locked[d]})" if d in locked else d for d in counted),
                               None)
    wanted = locked if required else off
    why = "; ".join(f"{d['name']}: {d.get('message')}" for d in dest_status
                    if d["name"] in wanted and d.get("lastOutcome") == "Failed")
    if held:  # required, and only mutable copies off site
        return conditions.make("OffSiteCopy", False, "NoImmutableOffSiteCopy",
                               f"the newest recovery point {newest['name']} has an off-site copy at {', '.join(held)}, "
                               f"none on an immutable destination ({', '.join(locked)}), as "
                               "spec.objectives.requireImmutableOffSite asks" + (f" ({why})" if why else ""), None)
    return conditions.make("OffSiteCopy", False, "NoOffSiteCopy",
                           f"the newest recovery point {newest['name']} has no off-site copy"
                           + (f" ({why})" if why else ""), None)


# ---- last backup, destinations ----------------------------------------------------------------


def _as_backup(job: dict) -> dict | None:
    """A Job as a backup attempt: a snapshot trigger counts while its pipeline runs or when it failed early."""
    if job["operation"] == "backup":
        return job
    if job["operation"] != "trigger":
        return None
    if not job.get("recorded"):
        return dict(job, phase="Running")
    r = JobRecord.of(job) or JobRecord()
    if r.mover:  # the pipeline ran its mover, deleted once recorded: the backup is the mover's
        return r.moved or None
    return job if r.outcome == "Failed" else None


def _job_key(job: dict) -> tuple:
    return (job.get("start") or "", job.get("created") or "", job.get("name") or "")


def _last_backup(job: dict) -> dict:
    lb = {"job": job["name"], "trigger": job["trigger"], "startTime": job["start"]}
    if job.get("type"):
        lb["type"] = job["type"]
    if job["phase"] == "Running":
        text = (f"taking a VolumeSnapshot and moving its data (trigger Job {job['name']})"
                if job["operation"] == "trigger" else f"Job {job['name']} is running")
        lb.update(outcome="Running", message=text)
        return lb
    r = JobRecord.of(job) or JobRecord()
    lb["outcome"] = r.outcome or job["phase"]
    if r.type:
        lb["type"] = r.type
    if job.get("completion"):
        lb["completionTime"] = job["completion"]
    if r.recovery_point:
        lb["recoveryPoint"] = r.recovery_point
    failed = r.failures
    if lb["outcome"] == "Succeeded":
        text = f"stored at {', '.join(r.stored_at)}" if r.stored_at else r.report
        if failed:
            text += "; failed at " + "; ".join(f"{d}: {e}" for d, e in failed.items())
    else:
        text = r.error or ("; ".join(f"{d}: {e}" for d, e in failed.items()) if failed else "")
        if not text:  # no summary from the agent: what the Job and its pod said
            text = r.report or job.get("failMessage") or "the Job failed"
            if job.get("reason") and job["reason"] not in text:
                text = f"{job['reason']}: {text}"
    lb["message"] = text[:1000]
    return lb


def _last_maintenance(job: dict) -> dict:
    """status.lastMaintenance of the maintenance (repack) Job: its outcome, each repository's size before and after."""
    lm = {"job": job["name"], "startTime": job["start"]}
    if job["phase"] == "Running":
        lm.update(outcome="Running", message=f"Job {job['name']} is repacking the repositories")
        return lm
    r = JobRecord.of(job) or JobRecord()
    lm["outcome"] = r.outcome or job["phase"]
    if job.get("completion"):
        lm["completionTime"] = job["completion"]
    done = [(d, *(list(v) + [0, 0, 0, 0])[:4]) for d, v in sorted((r.repacked or {}).items())]
    parts = [f"{d}: {before} -> {after} bytes ({rewritten} packs rewritten, {deleted} deleted)"
             for d, before, after, rewritten, deleted in done]
    parts += [f"{d}: failed: {e}" for d, e in r.failures.items()]
    if done:
        lm["bytesBefore"], lm["bytesAfter"] = sum(x[1] for x in done), sum(x[2] for x in done)
        lm["destinations"] = [{"name": d, "bytesBefore": b, "bytesAfter": a, "packsRewritten": rw, "packsDeleted": dl}
                              for d, b, a, rw, dl in done]
    text = "; ".join(parts) or r.error or r.report or job.get("failMessage") or \
        ("no repository to repack yet" if lm["outcome"] == "Succeeded" else "the Job failed")
    if r.error and r.error not in text:
        text = f"{r.error}; {text}"
    lm["message"] = text[:1000]
    return lm


def _destination_status(spec: BackupPolicySpec, stored: list[dict], jobs: list[dict]) -> list[dict]:
    by_name = {d["name"]: dict(d) for d in stored or []}
    for job in jobs:
        r, t = JobRecord.of(job) or JobRecord(), job.get("completion")
        if not t:
            continue
        for name in r.stored_at:
            entry = by_name.setdefault(name, {"name": name})
            if (entry.get("lastAttemptTime") or "") <= t:
                entry.update(lastOutcome="Succeeded", lastAttemptTime=t, lastSuccessTime=t)
                entry.pop("message", None)
        for name, error in r.failures.items():
            entry = by_name.setdefault(name, {"name": name})
            if (entry.get("lastAttemptTime") or "") <= t:
                entry.update(lastOutcome="Failed", lastAttemptTime=t, message=error or "no reason given")
    out = []
    for d in spec.destinations:
        entry = {k: v for k, v in by_name.get(d.name, {}).items() if k not in ("offSite", "immutable")}
        locked = {"immutable": immutable_text(d)} if d.immutable is not None else {}
        out.append({"name": d.name, "offSite": d.off_site, **locked,
                    **{k: v for k, v in entry.items() if k != "name"}})
    return out


# ---- the plan ----------------------------------------------------------------------------------


def _events(old_conds: list[dict], new_conds: list[dict]) -> list[EventPlan]:
    events = []
    for new in new_conds:
        type_ = new["type"]
        old = conditions.find(old_conds, type_)
        if type_ == READY:
            if new["status"] == "False" and (old is None or old.get("message") != new["message"]
                                             or old.get("status") != "False"):
                events.append(EventPlan("Warning", new["reason"], new["message"]))
            elif new["status"] == "True" and old is not None and old.get("status") == "False":
                events.append(EventPlan("Normal", "SpecValid", "BackupPolicy spec is valid again"))
            continue
        if new["status"] == "False" and (old is None or old.get("status") != "False"
                                         or old.get("reason") != new["reason"]):
            events.append(EventPlan("Warning", new["reason"], new["message"]))
        elif new["status"] == "True" and old is not None and old.get("status") == "False":
            events.append(EventPlan("Normal", RECOVERED.get(type_, new["reason"]), new["message"]))
    return events


def _merged(old_conds: list[dict], wanted: list[dict], generation, now: str) -> list[dict]:
    merged = list(old_conds)
    for cond in wanted:
        cond = dict(cond, observedGeneration=generation)
        merged = conditions.merge(merged, cond, now)
    return merged


def plan_status(body: dict, x: Inputs) -> StatusPlan:
    meta, old = body.get("metadata") or {}, body.get("status") or {}
    generation = meta.get("generation")
    ns = meta.get("namespace", "")
    now_s = rfc3339(x.now)
    old_conds = old.get("conditions") or []
    problems = x.problems if x.problems is not None else problems_in_spec(INFO, body.get("spec"))[1]

    if problems:
        ready = conditions.make(READY, False, "InvalidSpec", "; ".join(str(p) for p in problems), generation)
        new = dict(old, observedGeneration=generation, conditions=_merged(old_conds, [ready], generation, now_s))
        patch = merge_patch(old, new) or None
        return StatusPlan(patch, _events(old_conds, [ready]) if patch else [], valid=False)

    spec = x.spec or BackupPolicySpec.model_validate(body["spec"])
    rpo = spec.rpo_seconds

    # Ready
    if x.apply_error:
        ready = conditions.make(READY, False, "ApplyFailed", x.apply_error, None)
    elif x.plan_error is not None:
        ready = conditions.make(READY, False, x.plan_error.reason, x.plan_error.message, None)
    else:
        runs = ", ".join(f"{n} ({s})" for n, s in x.cron_jobs)
        verb = "suspended (no new backups start)" if spec.suspend else "scheduled"
        ready = conditions.make(READY, True, "SpecValid", f"BackupPolicy spec is valid; {verb}: {runs}", None)

    # Backups: the newest Job that is running or recorded, the destinations, the points
    backup_jobs = sorted(filter(None, (_as_backup(j) for j in x.jobs)), key=_job_key)
    known = [j for j in backup_jobs if j["phase"] == "Running" or j.get("recorded")]
    last_backup = old.get("lastBackup")
    newest_job = known[-1] if known else None
    if newest_job is not None and (last_backup is None
                                   or (newest_job["start"] or "") >= (last_backup.get("startTime") or "")):
        last_backup = _last_backup(newest_job)
    last_result = JobRecord.of(newest_job) if newest_job and last_backup and \
        last_backup.get("job") == newest_job["name"] else None
    dest_status = _destination_status(spec, old.get("destinations") or [],
                                      [j for j in backup_jobs if j.get("recorded") and JobRecord.of(j) is not None])

    available = [p for p in x.points if p.get("phase") != "Pruned" and p.get("completion")]
    newest_point = max(available, key=lambda p: (parse_time(p["start"]), p["name"])) if available else None
    last_success = max((parse_time(p["completion"]) for p in available), default=None)
    stored_success = parse_time(old.get("lastSuccessfulBackupTime"))
    if stored_success and (last_success is None or stored_success > last_success):
        last_success = stored_success
    data_time = parse_time(newest_point["start"]) if newest_point else stored_success
    created = parse_time(meta.get("creationTimestamp"))

    if room_of(spec).ships_segments:
        achievable, gap = _achievable_continuous(rpo)
        shipped_at = getattr(x.shipped, "closed_at", None)
        rpo_met = _rpo_met_shipped(rpo, x.shipped, data_time, created, x.now)
        if shipped_at is not None and (data_time is None or shipped_at > data_time):
            data_time = shipped_at
    else:
        achievable, gap = _achievable(spec, rpo)
        rpo_met = _rpo_met(rpo, data_time, created, x.now)
    wanted = [
        ready,
        achievable,
        rpo_met,
        _source(spec, ns, meta["name"], x),
        _destinations(spec, ns, x, dest_status),
        _keys(spec, ns, x, last_backup, last_result),
        _off_site(spec, newest_point, dest_status),
    ]
    new_conds = _merged(old_conds, wanted, generation, now_s)

    maintenance = sorted((j for j in x.jobs if j["operation"] == "maintenance"
                          and (j["phase"] == "Running" or j.get("recorded"))), key=_job_key)
    last_maintenance = old.get("lastMaintenance")
    if maintenance and (last_maintenance is None
                        or (maintenance[-1]["start"] or "") >= (last_maintenance.get("startTime") or "")):
        last_maintenance = _last_maintenance(maintenance[-1])

    new = {k: v for k, v in old.items()}
    new.update(observedGeneration=generation, conditions=new_conds, rpoTargetSeconds=int(rpo),
               scheduleIntervalSeconds=gap, recoveryPoints=len(available),
               cronJobs=[n for n, _ in x.cron_jobs], destinations=dest_status)
    for key, value in (("lastBackup", last_backup), ("lastSuccessfulBackupTime", rfc3339(last_success)),
                       ("backupNowHandled", x.backup_now_handled or old.get("backupNowHandled")),
                       ("lastMaintenance", last_maintenance)):
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value

    # currentRPOSeconds: exact whenever the status is written anyway; otherwise refreshed only
    # when it drifted by a quarter of the RPO (at least a minute), so the timer rarely writes.
    age = max(0.0, (x.now - data_time).total_seconds()) if data_time else None
    new.pop("currentRPOSeconds", None)
    rest_old = {k: v for k, v in old.items() if k != "currentRPOSeconds"}
    if age is not None:
        stored_age = old.get("currentRPOSeconds")
        quantum = max(60.0, rpo / 4)
        if new != rest_old or stored_age is None or abs(age - stored_age) >= quantum:
            new["currentRPOSeconds"] = int(age)
        else:
            new["currentRPOSeconds"] = stored_age
    patch = merge_patch(old, new) or None
    events = _events(old_conds, [dict(c, observedGeneration=generation) for c in wanted]) if patch else []
    return StatusPlan(patch, events, valid=True, data_age_seconds=age, rpo_target_seconds=rpo,
                      achievable=achievable["status"] == "True")
