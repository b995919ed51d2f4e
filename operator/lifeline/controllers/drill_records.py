"""RestoreDrill: what a run that just ended leaves behind: its Event, its metrics, a notification and
its audit record (the run's measurements are already in its status)."""
from __future__ import annotations

from lifeline.api.backuppolicy import BackupPolicySpec
from lifeline.api.restoredrill import RestoreDrillSpec
from lifeline.clock import rfc3339
from lifeline.kube import ObjectRef
from lifeline.observability import audit
from lifeline.planning import drill_schedule


async def finished(ctx, body: dict, spec: RestoreDrillSpec, policy: dict | None, run: dict, actor: str) -> None:
    """Event, metrics and audit record of a run that just ended."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    now = ctx.clock.now()
    ok = run["outcome"] == "Succeeded"
    pspec = BackupPolicySpec.model_validate((policy or {}).get("spec") or {}) if policy else None
    tier = pspec.tier if pspec else ""
    labels = (ns, name, spec.policy_name, tier)
    m = ctx.metrics
    m.drill_last_run.labels(*labels).set(now.timestamp())
    if ok:
        m.drill_last_success.labels(*labels).set(now.timestamp())
    m.drill_success.labels(*labels).set(1 if ok else 0)
    if run.get("rtoMet") is not None:
        m.drill_rto_met.labels(*labels).set(1 if run["rtoMet"] else 0)
    if run.get("totalSeconds") is not None:
        m.drill_duration.labels(*labels).set(run["totalSeconds"])
    if pspec:
        m.drill_rto_target.labels(*labels).set(pspec.rto_seconds)
    m.drill_max_interval.labels(*labels).set(drill_schedule.max_interval_seconds(spec, tier or None))
    m.drill_runs.labels(*labels, run["outcome"]).inc()
    total = run.get("totalSeconds")
    started = f"start-up {run['startupSeconds']}s, " if run.get("startupSeconds") is not None else ""
    timing = (f"restore {run.get('restoreSeconds')}s, {started}verify {run.get('verifySeconds', '-')}s, total {total}s "
              f"against an RTO of {run.get('rtoSeconds')}s ({'met' if run.get('rtoMet') else 'NOT met'})"
              if total is not None else "no time measured")
    message = f"run {run['name']} {run['outcome'].lower()} ({run.get('reason')}): {timing}; {run.get('message')}"
    await ctx.kube.emit_event(ObjectRef.of(body), "Normal" if ok and run.get("rtoMet") is not False else "Warning",
                              "DrillSucceeded" if ok else "DrillFailed", message, rfc3339(now))
    ctx.notifier.tell(body, "DrillRTOMissed" if ok and run.get("rtoMet") is False else "DrillFailed" if not ok
                      else "DrillSucceeded", message, rfc3339(now))
    audit.record("drill", actor=actor, outcome="succeeded" if ok else "failed", when=now,
                 subject={"kind": "RestoreDrill", "namespace": ns, "name": name},
                 details={k: run.get(k) for k in ("name", "recoveryPoint", "sandbox", "reason", "restoreSeconds",
                                                  "startupSeconds", "verifySeconds", "totalSeconds", "rtoSeconds",
                                                  "rtoMet", "pointAgeSeconds", "rpoMet", "bytesRestored")})
