"""The admin's settings that reach the operator as JSON lists in its environment (approval policies,
notification targets): read the same way, refused the same way, with the variable named."""
from __future__ import annotations

import json


def json_list(text: str | None, env: str, what: str, error: type[ValueError]) -> list:
    """The list in ``text`` ([] when unset or blank); ``error`` names ``env`` when it is not a JSON list."""
    if not text or not text.strip():
        return []
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise error(f"{env} is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise error(f"{env}: a list of {what}")
    return raw
