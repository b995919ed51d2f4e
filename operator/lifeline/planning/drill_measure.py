"""A drill run's measurements -> its DrillRun record, its verdict and its history. Pure.

Durations come from the data plane, never from the operator's clock: the restore agent times
the manifest check and the restore with a monotonic clock (its termination summary, a
:class:`~lifeline.messages.RestoreSummary`), and the verify container times the user's command
(``date +%s%N`` around it; :class:`~lifeline.messages.VerifyReport`). An application drill's
start-up is the API server's span from the restored workloads' creation to the last one's pods
ready (one-second resolution). The total is their sum, or the span between the restore Job's
start and the verify Job's end when the cluster's timestamps say it took longer (pod scheduling
and image pulls count against an RTO too); a run whose application did not start has no total.
"""
from __future__ import annotations

from datetime import datetime

from lifeline.messages import RestoreSummary, VerifyReport

from lifeline.clock import parse_time, rfc3339


def verify_verdict(spec, output: VerifyReport | None, recorded: str | None) -> tuple[bool, str, str]:
    """``(ok, reason, message)`` of the user's verify command."""
    cmd = spec.verify.command
    if output is None:
        return False, "VerifyCommandFailed", "the verify command left no result (did its image start?)"
    shown = output.output[:200]
    if output.exit_code != 0:
        return False, "VerifyCommandFailed", f"the verify command exited with status {output.exit_code}: {shown}"
    if cmd.expect_output is not None and output.output != cmd.expect_output.strip():
        return False, "UnexpectedOutput", (f"the verify command printed {shown!r}, expected "
                                           f"{cmd.expect_output.strip()!r}")
    if cmd.compare_to_backup:
        if recorded is None:
            return False, "NoRecordedValue", ("compareToBackup is set but the recovery point carries no "
                                              "verifyOutput tag; set the BackupPolicy's spec.fingerprint to record it at "
                                              "backup time, or use expectOutput")
        if output.output != recorded.strip():
            return False, "UnexpectedOutput", (f"the verify command printed {shown!r}, but {recorded.strip()!r} "
                                               "was recorded at backup time")
    return True, "Verified", f"the verify command printed {shown!r}"


def _span(start: str | None, end: str | None) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return (b - a).total_seconds() if a and b else None


def finish(run: dict, *, restore: RestoreSummary | None, restore_job_failure: str | None, verify: VerifyReport | None,
           verify_needed: bool, verify_ok: tuple[bool, str, str] | None, spans: tuple[str | None, str | None],
           rto: float, rpo: float, point_time: datetime | None, now: datetime, ttl: float,
           keep_on_failure: bool, startup_failure: tuple[str, str] | None = None) -> dict:
    """The finished DrillRun (a dict in wire form): outcome, reason, measurements, clean-up time.

    An application drill's run carries ``startupSeconds`` (its workloads' start-up, counted in the
    total), or ends with ``startup_failure`` (reason, message) when they did not start."""
    out = dict(run)
    start = parse_time(run.get("startTime")) or now
    out["completionTime"] = rfc3339(now)
    if point_time is not None:
        age = max(0.0, (start - point_time).total_seconds())
        out.update(pointAgeSeconds=round(age, 3), rpoSeconds=rpo, rpoMet=age <= rpo)
    out["rtoSeconds"] = rto
    ok, reason, message = True, "Verified", "restored and the manifest checksum matched"
    if run.get("startupSeconds") is not None:
        message += "; the restored workloads became ready"
    if restore is None:
        ok, reason = False, "RestoreJobFailed"
        message = restore_job_failure or "the restore Job ended without a summary from the agent"
    else:
        measured = restore.seconds or 0.0
        if restore.restore_seconds is not None:
            out["restoreSeconds"] = measured
        if restore.bytes_restored is not None:
            out["bytesRestored"] = restore.bytes_restored
        if not restore.ok:
            ok, reason = False, restore.reason or "RestoreFailed"
            message = restore.error or "the restore failed"
        elif startup_failure is not None:
            ok, (reason, message) = False, startup_failure
        elif verify_needed:
            if verify is not None and verify.seconds is not None:
                out["verifySeconds"] = verify.seconds
            if verify is not None:
                out["verifyOutput"] = verify.output[:512]
            ok, reason, message = verify_ok or (False, "VerifyCommandFailed", "the verify command did not run")
        measured += float(out.get("startupSeconds") or 0) + float(out.get("verifySeconds") or 0)
        wall = _span(*spans)
        if restore.restore_seconds is not None and startup_failure is None:
            out["totalSeconds"] = round(max(measured, wall or 0.0), 3)
    if out.get("totalSeconds") is not None:
        out["rtoMet"] = out["totalSeconds"] <= rto
    out["outcome"] = "Succeeded" if ok else "Failed"
    out["reason"] = reason
    if ok and out.get("rtoMet") is False:
        message += f"; but the restore took {out['totalSeconds']:.1f}s, longer than the RTO of {rto:.0f}s"
    out["message"] = message[:1000]
    out["phase"] = "Done"
    keep = not ok and keep_on_failure
    if not keep:
        out["cleanupTime"] = rfc3339(datetime.fromtimestamp(now.timestamp() + ttl, tz=now.tzinfo))
    return out


def with_history(history: list[dict], run: dict, limit: int) -> list[dict]:
    """Newest first, at most ``limit`` runs; a run already present is replaced."""
    rest = [r for r in history if r.get("name") != run.get("name")]
    return [run, *rest][:limit]


def cleanup_due(run: dict, now: datetime) -> bool:
    """True when a finished run's sandbox should go now (its TTL passed and it was not kept)."""
    when = parse_time(run.get("cleanupTime"))
    return bool(run.get("sandbox")) and not run.get("sandboxDeleted") and when is not None and now >= when
