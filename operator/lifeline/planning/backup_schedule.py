"""Schedule arithmetic: how old can the newest backup get under a set of cron schedules?

Pure and cached: the answer depends only on the expressions. The worst-case data loss of a
schedule is the longest gap between two consecutive runs of *any* backup type (a full at 01:00
and incrementals every 15 minutes from 08:00 to 18:00 leave a gap from 17:45 to 01:00).

Computed day by day rather than run by run (an every-minute schedule has half a million runs a
year): each of the five cron fields becomes a set, a day either matches (day of month and day of
week OR-ed when both are restricted, as cron does) or not, and a matching day runs at its
hours x minutes. Four years from a fixed Monday are scanned in UTC, so leap days count; time
zones and DST move single days by an hour, which the RPO comparison does not need.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from lifeline.api.common import format_duration

_START = date(2026, 1, 5)  # a Monday
_DAYS = 4 * 365 + 1
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_NAMES = {
    3: {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
# (month, day of month, day of week with 0 = Sunday) of every day scanned
_CALENDAR = tuple((d.month, d.day, d.isoweekday() % 7)
                  for d in (_START + timedelta(days=n) for n in range(_DAYS)))


@dataclass(frozen=True)
class Gap:
    seconds: int  # longest time between two consecutive runs of any type
    after: str  # the schedule kind whose run opens that gap
    expression: str


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month field was '*'
    any_weekday: bool

    def runs_on(self, month: int, day: int, weekday: int) -> bool:
        if month not in self.months:
            return False
        dom, dow = day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow  # both restricted: either matches (cron's rule)

    @property
    def times(self) -> tuple[int, ...]:
        return tuple(sorted(h * 60 + m for h in self.hours for m in self.minutes))


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _BOUNDS[index]
    out: set[int] = set()
    for part in text.lower().split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = low, high
        else:
            first, _, last = rng.partition("-")
            a = int(_NAMES.get(index, {}).get(first, first))
            b = int(_NAMES.get(index, {}).get(last, last)) if last else (high if step else a)
        out.update(range(a, b + 1, int(step) if step else 1))
    if index == 4 and 7 in out:
        out = (out - {7}) | {0}
    return frozenset(out)


@lru_cache(maxsize=4096)
def parse(expression: str) -> Cron:
    text = _MACROS.get(expression.strip(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} is not a five-field cron expression")
    sets = [_field(f, i) for i, f in enumerate(fields)]
    return Cron(*sets, any_day=fields[2] == "*", any_weekday=fields[4] == "*")


@lru_cache(maxsize=4096)
def longest_gap(schedules: tuple[tuple[str, str], ...]) -> Gap:
    """The longest gap between consecutive runs of the ``(kind, expression)`` schedules together."""
    crons = [(kind, expr, parse(expr)) for kind, expr in schedules]
    exprs = {kind: expr for kind, expr, _ in crons}
    best_seconds, best_kind = 0, schedules[0][0]
    last: tuple[int, str] | None = None  # (minute since the start, kind) of the previous run
    # per set of schedules running on a day: first run, last run, longest gap inside the day
    days: dict[tuple[bool, ...], tuple[int, str, int, str, int, str]] = {}
    for n, day in enumerate(_CALENDAR):
        which = tuple(c.runs_on(*day) for _, _, c in crons)
        if not any(which):
            continue
        if which not in days:
            merged: dict[int, str] = {}
            for (kind, _, cron), on in zip(crons, which):
                if on:
                    for t in cron.times:
                        merged.setdefault(t, kind)
            runs = sorted(merged.items())
            gap, after = 0, runs[0][1]
            for (t0, k0), (t1, _) in zip(runs, runs[1:]):
                if t1 - t0 > gap:
                    gap, after = t1 - t0, k0
            days[which] = (runs[0][0], runs[0][1], runs[-1][0], runs[-1][1], gap, after)
        first, first_kind, final, final_kind, gap, after = days[which]
        base = n * 1440
        if last is not None and base + first - last[0] > best_seconds:
            best_seconds, best_kind = base + first - last[0], last[1]
        if gap > best_seconds:
            best_seconds, best_kind = gap, after
        last = (base + final, final_kind)
    if best_seconds == 0:  # runs at most once in four years
        kind, expr = schedules[0]
        return Gap(_DAYS * 86400, kind, expr)
    return Gap(best_seconds * 60, best_kind, exprs[best_kind])


def describe(seconds: float) -> str:
    """``900`` -> ``15m (900s)``."""
    return f"{format_duration(seconds)} ({int(seconds)}s)"
