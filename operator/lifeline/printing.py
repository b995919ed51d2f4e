"""Print objects the way `kubectl get` does, from the CRD's own printer columns.

Used by `lifeline demo` and the CLI so a person sees the same columns with or
without kubectl. Supports the JSONPath forms the printer columns use: dotted
fields and a filter on a list (``.status.conditions[?(@.type=="Ready")].status``).
A drill's measured runs are printed here too, the same in `lifeline drill` and the demo.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from lifeline.api import KindInfo
from lifeline.api.common import format_duration

_STEP = re.compile(r"[^.\[]+(?:\[[^\]]*\])?")  # dots inside [...] do not split
_FILTER = re.compile(r'^(?P<field>[A-Za-z0-9_]+)\[\?\(@\.(?P<key>[A-Za-z0-9_]+)=="(?P<value>[^"]*)"\)\]$')


def lookup(obj: dict, path: str):
    """Value at a printer-column JSONPath, or None when any step is missing."""
    current = obj
    for step in _STEP.findall(path):
        match = _FILTER.match(step)
        if match:
            items = (current or {}).get(match["field"]) or []
            current = next((i for i in items if str(i.get(match["key"])) == match["value"]), None)
        else:
            current = current.get(step) if isinstance(current, dict) else None
        if current is None:
            return None
    return current


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "<none>"
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, (now - then).total_seconds())
    text = format_duration(seconds)
    # kubectl shows the two largest units at most: 3d4h, 5m10s
    parts = re.findall(r"\d+[dhms]", text)
    return "".join(parts[:2])


def cell(value, column: dict, now: datetime) -> str:
    if value is None or value == "":
        return "<none>" if column.get("type") != "date" else "<none>"
    if column.get("type") == "date":
        return _age(value, now)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def table(info: KindInfo, objects: list[dict], now: datetime | None = None, wide: bool = False, namespaced: bool = True) -> str:
    """A `kubectl get` style table of ``objects`` of one kind."""
    now = now or datetime.now(timezone.utc)
    columns = [c for c in info.printer_columns if wide or not c.get("priority")]
    header = (["NAMESPACE"] if namespaced else []) + ["NAME"] + [c["name"].upper() for c in columns]
    rows = []
    for obj in sorted(objects, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
        meta = obj["metadata"]
        row = ([meta.get("namespace", "")] if namespaced else []) + [meta["name"]]
        row += [cell(lookup(obj, c["jsonPath"]), c, now) for c in columns]
        rows.append(row)
    return _aligned([header, *rows])


def _aligned(rows: list) -> str:
    """Rows of cells as left-aligned columns, three spaces apart (as kubectl prints them)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


# ---- drill runs (`lifeline drill`, and the demo) -------------------------------------------------------

def _secs(value) -> str:
    return "-" if value is None else f"{float(value):.2f}s"


def _limit(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    return format_duration(value) if value >= 1 else f"{value * 1000:g}ms"


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def describe_drill_run(run: dict) -> str:
    """One line with a finished run's measurements: what an on-call person reads first."""
    head = f"{run.get('outcome', '?')} ({run.get('reason') or '-'})"
    started = f"start-up {_secs(run['startupSeconds'])}, " if run.get("startupSeconds") is not None else ""
    timing = (f"restore {_secs(run.get('restoreSeconds'))}, {started}verify {_secs(run.get('verifySeconds'))}, "
              f"total {_secs(run.get('totalSeconds'))} against an RTO of {_limit(run.get('rtoSeconds'))}: "
              f"RTO {'met' if run.get('rtoMet') else 'NOT met' if run.get('rtoMet') is False else 'not measured'}")
    age = (f"; point {run.get('recoveryPoint')} was {_secs(run.get('pointAgeSeconds'))} old against an RPO of "
           f"{_limit(run.get('rpoSeconds'))}" if run.get("pointAgeSeconds") is not None else "")
    size = f"; {run['bytesRestored']} bytes restored" if run.get("bytesRestored") is not None else ""
    return f"{head}: {timing}{age}{size}"


DRILL_HEADER = ("START", "POINT", "RESTORE", "VERIFY", "TOTAL/RTO", "RTO MET", "AGE/RPO", "BYTES", "OUTCOME")


def drill_rows(history: list[dict]) -> list[tuple[str, ...]]:
    out = []
    for r in history:
        outcome = r.get("outcome") or "-"
        if r.get("reason"):
            outcome += f"/{r['reason']}"
        out.append((r.get("startTime") or "-", r.get("recoveryPoint") or "-", _secs(r.get("restoreSeconds")),
                    _secs(r.get("verifySeconds")), f"{_secs(r.get('totalSeconds'))}/{_limit(r.get('rtoSeconds'))}",
                    _yes(r.get("rtoMet")), f"{_secs(r.get('pointAgeSeconds'))}/{_limit(r.get('rpoSeconds'))}",
                    str(r["bytesRestored"]) if r.get("bytesRestored") is not None else "-", outcome))
    return out


def drill_table(history: list[dict]) -> str:
    """A drill's measured history, one run a row."""
    return _aligned([DRILL_HEADER, *drill_rows(history)])
