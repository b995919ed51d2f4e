"""The termination message: how the agent writes its summary, and how the operator reads it back.

Kubernetes keeps at most 4096 bytes of a container's termination message and cuts the rest, so
:func:`render` makes the summary fit first: error texts are shortened, then list entries dropped
(``truncated: true`` says so). :func:`read_summary` never raises: a message that is no summary at
all (empty, or the log's tail under ``FallbackToLogsOnError``) is ``Reading(None, None)``; one
that was meant as a summary but is cut off, not JSON, of another version or incomplete comes back
with a sentence for the status (``Reading(None, "the agent's summary was cut off ...")``).
"""
from __future__ import annotations

import json
import re
import sys
from typing import NamedTuple

from pydantic import ValidationError

from .summaries import (BackupSummary, CatalogueSummary, MaintenanceSummary, PruneReport, RestoreSummary,
                        ShredSummary, Summary)
from .wire import UnreadableMessage, check_version, describe

MAX_MESSAGE = 4096  # the kubelet keeps at most 4 KiB of a termination message
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
WHAT = "the agent's summary"
KINDS: dict[str, type] = {"backup": BackupSummary, "prune": PruneReport, "restore": RestoreSummary,
                          "shred": ShredSummary, "catalogue": CatalogueSummary, "maintenance": MaintenanceSummary}


def _dumps(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _fits(text: str, limit: int) -> bool:
    return len(text.encode()) <= limit


def render(summary: Summary, limit: int = MAX_MESSAGE) -> str:
    """The summary as JSON of at most ``limit`` bytes: error texts are shortened first, then lists cut."""
    data = summary.to_wire()
    text = _dumps(data)
    for width in (200, 80, 30, 0):
        if _fits(text, limit):
            return text
        for failure in data.get("failed") or []:
            failure["error"] = failure.get("error", "")[:width]
        if isinstance(data.get("error"), str):
            data["error"] = data["error"][: max(width, 40)]
        text = _dumps(data)
    for key in ("forgot", "ok", "failed"):
        while not _fits(text, limit) and isinstance(data.get(key), (list, dict)) and data[key]:
            value = data[key]
            if isinstance(value, dict):  # a prune's ids per destination: the longest list loses one
                biggest = max(value, key=lambda k: len(value[k]) if isinstance(value[k], list) else 0)
                if isinstance(value[biggest], list) and value[biggest]:
                    value[biggest] = value[biggest][:-1]
                else:
                    value.pop(biggest)
            else:
                value.pop()
            data["truncated"] = True
            text = _dumps(data)
    return text


def write(path: str, summary: Summary) -> str:
    """Write the rendered summary to the termination log; the text, for stdout too."""
    text = render(summary)
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:  # not in a pod, or no such path: the summary still goes to stdout
        print(f"lifeline job: could not write the termination message to {path}: {exc.strerror or exc}",
              file=sys.stderr, flush=True)
    return text


class Reading(NamedTuple):
    summary: Summary | None  # the summary, validated
    problem: str | None  # why a message meant as a summary cannot be used (None: there was none)


_UNFINISHED_TOKEN = re.compile(r"[A-Za-z0-9.+-]*")  # the start of a number, of true/false/null, or of a \u escape


def _cut_off(exc: json.JSONDecodeError) -> bool:
    """Whether the JSON ends early, as a message cut at its end does: the parser stopped in an
    unfinished string, or at an unfinished token with nothing after it."""
    return exc.msg.startswith("Unterminated string") or bool(_UNFINISHED_TOKEN.fullmatch(exc.doc[exc.pos:].rstrip()))


def read_summary(message: str | None, *kinds: type) -> Reading:
    """The summary of one of ``kinds`` in a termination message (see the module's docstring)."""
    text = (message or "").strip()
    if not text.startswith("{"):
        return Reading(None, None)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if _cut_off(exc):
            return Reading(None, f"{WHAT} was cut off after {len(text.encode())} bytes (Kubernetes keeps at most "
                                 f"{MAX_MESSAGE} of a termination message): it ends before the JSON does")
        return Reading(None, f"{WHAT} is not valid JSON: {exc.msg} at character {exc.pos}")
    if not isinstance(data, dict):
        return Reading(None, f"{WHAT} is not a JSON object")
    try:
        check_version(data, WHAT)
    except UnreadableMessage as exc:
        return Reading(None, str(exc))
    kind = KINDS.get(data.get("op"))
    if kind not in kinds:
        wanted = " or ".join(k.model_fields["operation"].default for k in kinds)
        return Reading(None, f"{WHAT} is a {data.get('op')!r} summary where a {wanted} summary was expected")
    try:
        return Reading(kind.model_validate(data), None)
    except ValidationError as exc:
        return Reading(None, f"{WHAT} is not valid: {describe(exc)}")
