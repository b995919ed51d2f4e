"""Time as an object, so tests move it instead of waiting for it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock:
    """A clock that moves only when told to; for tests and planners' golden files."""

    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._now += timedelta(seconds=seconds)


def rfc3339(moment: datetime | None) -> str | None:
    """Kubernetes' timestamp form: UTC, whole seconds, trailing Z (None stays None)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def parse_time(value) -> datetime | None:
    """A timestamp as the API or a status holds it (RFC 3339, a trailing Z, or a datetime) in UTC;
    a time without a zone is taken as UTC. Empty: None."""
    if not value:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def seconds_between(earlier, later) -> float:
    """Seconds from one timestamp to another, each in a form :func:`parse_time` reads."""
    return (parse_time(later) - parse_time(earlier)).total_seconds()
