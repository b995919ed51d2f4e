"""Server-side Tables: the columns `kubectl get` prints for a custom resource.

kubectl asks for ``Accept: ...;as=Table`` and prints the cells it gets back, so the
emulator renders a ``meta.k8s.io/v1`` Table from the CRD's printer columns the way
the apiextensions server does: values found with the same printer-column JSONPath
as ``lifeline.printing`` (one reading of a column for the CLI and for kubectl), and
dates shown as apimachinery's HumanDuration, which is what kubectl's AGE shows.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import kmock

from lifeline.devstack.resources import meta_of
from lifeline.printing import lookup

AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def wants_table(request: kmock.Request) -> bool:
    accept = next((v for k, v in request.headers.items() if k.lower() == "accept"), "")
    return "as=Table" in accept


def table(columns: Iterable[Mapping[str, Any]], items: Iterable[dict], *, now: datetime, resource_version: str,
          include_object: bool = False, continue_token: str | None = None) -> dict:
    """A meta.k8s.io/v1 Table of ``items``: the name, then one cell per printer column."""
    columns = list(columns)
    rows = []
    for obj in items:
        cells = [meta_of(obj)["name"]] + [_cell(_value(obj, c.get("jsonPath", "")), c.get("type"), now)
                                       for c in columns]
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta_of(obj)}
        rows.append({"cells": cells, "object": obj if include_object else partial})
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    definitions += [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                     "description": c.get("description", ""), "priority": c.get("priority", 0)}
                    for c in columns]
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": definitions, "rows": rows}


def _value(obj: dict, path: str) -> Any:
    """The column's value, or None; an object of an unexpected shape shows an empty cell, not a 500."""
    try:
        return lookup(obj, path)
    except AttributeError:  # a [?(...)] filter over something that is not a list of objects
        return None


def _human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration, which `kubectl get` shows as AGE."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 120:
        return f"{max(s, 0)}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def _cell(value: Any, type_: str | None, now: datetime) -> Any:
    if value is None:
        return None
    if type_ == "date" and isinstance(value, str):
        try:
            then = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        return _human_duration((now - then).total_seconds())
    if type_ == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if type_ == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if type_ == "boolean" and isinstance(value, bool):
        return value
    return value if isinstance(value, str) else json.dumps(value)
