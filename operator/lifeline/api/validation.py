"""Check a manifest against its model and say, per field, what is wrong and what is allowed.

The same messages reach a person three ways: ``lifeline validate`` on a laptop,
the ``Ready`` condition and Event the operator writes, and (later) the admission
webhook's refusal. So they name the field by its YAML path and say what to write.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from .registry import BY_KIND, KindInfo

_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a DNS subdomain, as the API server checks

_DNS_HINT = "lowercase letters, digits and '-', starting and ending with a letter or digit"


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _allowed_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """The camelCase field names allowed at ``loc`` (the parent of an unknown field)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or isinstance(part, int):
            continue
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part), None
        )
        if field is None:
            return []
        current = _model_in(field.annotation)
    return [f.alias or n for n, f in current.model_fields.items()] if current else []


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found:
            return found
    return None


def _message(err: dict, spec_model: type[BaseModel]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(spec_model, tuple(err["loc"][:-1]))
        return "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        if pattern.startswith("^[a-z0-9]([-a-z0-9]*[a-z0-9])?"):
            return f"{err['input']!r} is not a valid name: {_DNS_HINT}"
        return f"{err['input']!r} does not have the required form {pattern}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "too_short" and isinstance(err["input"], list):
        least = err.get("ctx", {}).get("min_length", 1)
        return f"must list at least {least} entr{'y' if least == 1 else 'ies'}"
    if kind in ("greater_than_equal", "less_than_equal", "too_short", "too_long", "literal_error", "enum"):
        return f"{msg} (got {err['input']!r})" if not isinstance(err["input"], (dict, list)) else msg
    return msg


def problems_in_spec(info: KindInfo, spec: object) -> tuple[BaseModel | None, list[Problem]]:
    """Validate a ``spec`` mapping; returns the model, or None and the problems found."""
    if not isinstance(spec, dict):
        return None, [Problem("spec", "is required and must be a mapping")]
    try:
        return info.spec_model.model_validate(spec), []
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            found.append(Problem(_path(("spec", *err["loc"])), _message(err, info.spec_model)))
        return None, found


def problems_in_manifest(body: dict) -> tuple[KindInfo | None, BaseModel | None, list[Problem]]:
    """Validate a whole manifest: apiVersion, kind, metadata.name, then the spec."""
    info = BY_KIND.get(body.get("kind", ""))
    if info is None:
        known = ", ".join(BY_KIND)
        return None, None, [Problem("kind", f"{body.get('kind')!r} is not a Lifeline kind; known: {known}")]
    problems = []
    if body.get("apiVersion") != info.api_version:
        problems.append(Problem("apiVersion", f"must be {info.api_version} (got {body.get('apiVersion')!r})"))
    name = (body.get("metadata") or {}).get("name") if isinstance(body.get("metadata"), dict) else None
    if not name:
        problems.append(Problem("metadata.name", "is required"))
    elif not isinstance(name, str) or not _OBJECT_NAME.fullmatch(name):
        shown = name[:40] + "…" if isinstance(name, str) and len(name) > 40 else name
        problems.append(Problem("metadata.name", f"{shown!r} is not a Kubernetes object name: lowercase letters, "
                                                 "digits, '-' and '.', at most 253 characters"))
    model, spec_problems = problems_in_spec(info, body.get("spec"))
    return info, model, problems + spec_problems
