"""Print objects the way `kubectl get` does, from the CRD's own printer columns.

Used by `lifeline demo` and the CLI so a person sees the same columns with or
without kubectl. Supports the JSONPath forms the printer columns use: dotted
fields and a filter on a list (``.status.conditions[?(@.type=="Ready")].status``).
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
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)
