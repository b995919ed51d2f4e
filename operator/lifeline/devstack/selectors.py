"""Label and field selectors, parsed into predicates for lists and watches.

A malformed selector is the client's mistake, so it is refused with a 400 ``Status``
as the API server does, rather than matching nothing.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from lifeline.devstack.api_errors import bad_request

_LABEL_REQUIREMENT = re.compile(
    r"^(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[-A-Za-z0-9_.]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?$"
)


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """``a=b,c!=d,e,!f,g in (x,y),h notin (z)`` as a predicate on a labels dict (400 if malformed)."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_top_level(text or ""):
        m = _LABEL_REQUIREMENT.match(part)
        if not m or (m["neg"] and (m["op"] or m["set"])):
            raise bad_request(f"unable to parse requirement: {part!r}")
        key, value = m["key"], m["value"]
        if m["neg"]:
            checks.append(lambda ls, k=key: k not in ls)
        elif m["op"] in ("=", "=="):
            checks.append(lambda ls, k=key, v=value: ls.get(k) == v)
        elif m["op"] == "!=":
            checks.append(lambda ls, k=key, v=value: ls.get(k) != v)
        elif m["set"]:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if m["set"] == "in":
                checks.append(lambda ls, k=key, vs=values: k in ls and ls[k] in vs)
            else:
                checks.append(lambda ls, k=key, vs=values: ls.get(k) not in vs)
        else:
            checks.append(lambda ls, k=key: k in ls)
    return lambda labels: all(check(labels) for check in checks)


def field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """``metadata.name=x,status.phase!=Done`` as a predicate on an object (any dotted path)."""
    checks = []
    for part in _split_top_level(text or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid field selector: {part!r}")
        checks.append((m[1].split("."), m[2] != "!=", m[3]))

    def value_at(obj: Any, path: list[str]) -> str:
        for step in path:
            obj = obj.get(step) if isinstance(obj, dict) else None
        return "" if obj is None else str(obj).lower() if isinstance(obj, bool) else str(obj)

    return lambda obj: all((value_at(obj, path) == want) == equal for path, equal, want in checks)
