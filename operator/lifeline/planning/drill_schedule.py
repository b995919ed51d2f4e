"""When a RestoreDrill runs: its cron, or its policy tier's rhythm (A monthly, B quarterly, C half-yearly). Pure."""
from __future__ import annotations

from datetime import datetime, timezone

from croniter import croniter

from lifeline.api.common import TIER_DEFAULTS
from lifeline.clock import parse_time

# The longest a tier may go without a drill: what lifeline_drill_max_interval_seconds reports
# and an "overdue" alert compares with (a month, a quarter, half a year, each with a day's slack).
MAX_INTERVAL_SECONDS = {"A": 32 * 86400, "B": 93 * 86400, "C": 185 * 86400}


def schedule_of(spec, tier: str | None) -> str:
    """The drill's own cron, else its policy tier's (tier C's when the policy is unknown)."""
    return spec.schedule or TIER_DEFAULTS[tier if tier in TIER_DEFAULTS else "C"].drill_schedule


def max_interval_seconds(spec, tier: str | None) -> float:
    """The tier's rhythm, or the drill's own cron's longest gap when that is longer."""
    base = MAX_INTERVAL_SECONDS.get(tier or "C", MAX_INTERVAL_SECONDS["C"])
    if spec.schedule:
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        it = croniter(spec.schedule, start)
        times = [it.get_next(datetime) for _ in range(13)]
        gap = max((b - a).total_seconds() for a, b in zip(times, times[1:]))
        return max(base, gap)
    return float(base)


def next_run(schedule: str, after: datetime) -> datetime:
    """The first scheduled time strictly after ``after`` (UTC)."""
    return croniter(schedule, after.astimezone(timezone.utc)).get_next(datetime).astimezone(timezone.utc)


def due(spec, tier: str | None, status: dict, now: datetime, created: datetime | None) -> tuple[str | None, datetime | None]:
    """``(trigger, next run time)``: trigger is "schedule"/"once" when a run should start now, else None.

    A Scheduled drill first runs at the first scheduled time after it was created (never at
    once: creating a monthly drill is not a request to run it now); a Once drill runs when it
    has never run. Suspended drills never start on their own.
    """
    if spec.mode == "Once":
        ran = bool(status.get("history")) or bool(status.get("lastRun"))
        return (None if ran or spec.suspend else "once"), None
    schedule = schedule_of(spec, tier)
    planned = parse_time(status.get("nextRunTime"))
    if planned is None:
        planned = next_run(schedule, created or now)
    if spec.suspend:
        return None, planned
    if now >= planned:
        return "schedule", next_run(schedule, now)
    return None, planned
