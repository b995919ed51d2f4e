"""The base every message model shares, and the checks both ends make before trusting a message.

A message crosses a process boundary (an environment variable, a termination message), so the
side that reads it validates it and turns what is wrong into one sentence: the agent refuses a
bad plan with it, the operator puts it in a status instead of failing with a KeyError.
"""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

VERSION = 1  # the one version of every message this release writes and reads


class Wire(BaseModel):
    """A message: readable attribute names in code, the short wire keys as aliases.

    Built by attribute name or by wire key; always written by wire key. Keys this release
    does not know are ignored, so a field added later does not break an older reader.
    """

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True,
                              extra="ignore")

    def to_wire(self) -> dict:
        """The message as it is written: wire keys, nothing that is None."""
        return self.model_dump(exclude_none=True)


class UnreadableMessage(ValueError):
    """A message that cannot be used; ``str(exc)`` says why, in words for a status or a log."""


def decode_object(text: str, what: str) -> dict[str, Any]:
    """The JSON object in ``text``; UnreadableMessage naming ``what`` when it is none."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableMessage(f"{what} is not valid JSON: {exc.msg} at character {exc.pos}") from None
    if not isinstance(data, dict):
        raise UnreadableMessage(f"{what} is not a JSON object")
    return data


def check_version(data: dict, what: str) -> None:
    if data.get("v") != VERSION:
        raise UnreadableMessage(f"{what} is version {data.get('v')!r}, and this release reads version {VERSION} "
                                "(do the agent image and the operator come from the same release?)")


def describe(exc: ValidationError, limit: int = 3) -> str:
    """Pydantic's errors as ``where: what`` (wire keys), the first ``limit`` of them; never the values."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'the message'}: {e['msg']}" for e in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)
