"""The audit trail's front door: every DR action calls :func:`record` once.

Callers (controllers, the agent's key commands, the CLI) say who did what to
which object and how it ended; where records go (a JSON log line always, plus
the hash-chained log kept with the backups when one is configured) is this
module's business, so no caller changes when the store does.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import re
import socket
from datetime import datetime, timezone
from typing import Any, Callable

from lifeline.audit.sink import ChainSink
from lifeline.audit.store import open_store

ACTIONS = frozenset(
    {
        "backup",
        "restore",
        "drill",
        "approval",
        "rejection",
        "failover",
        "failback",
        "key-rotation",
        "key-shred",
        "deletion",
        "adoption",  # RecoveryPoints made again from what a policy's destinations hold
        "audit-prune",  # written by lifeline.audit.retention itself, straight into the chain
    }
)
OUTCOMES = frozenset({"requested", "started", "succeeded", "failed", "refused", "not-counted"})

log = logging.getLogger("lifeline.audit")

# Extra destinations for records (the hash-chained store registers itself here).
_sinks: list[Callable[[dict[str, Any]], None]] = []


# Detail keys whose values are secrets by name, and values that are key material by shape.
# References (key_ref, keyRef, secretName, token_id) are facts and stay.
_SECRET_WORDS = {"password", "passwd", "passphrase", "token", "secret", "plaintext", "ciphertext",
                 "credential", "credentials", "material"}
_SECRET_PAIRS = {("data", "key"), ("private", "key"), ("wrapped", "key"), ("api", "key"), ("secret", "key"),
                 ("master", "key"), ("key", "bytes")}
_FACT_WORDS = {"ref", "name", "id", "path", "version", "versions", "count", "url", "kind", "type", "epoch",
               "epochs", "time", "at", "provider", "display", "policy"}
_SECRET_VALUE = re.compile(r"^(vault:v\d+:|-----BEGIN |hvs\.[A-Za-z0-9_-]{20,}|s\.[A-Za-z0-9]{20,})")
REDACTED = "[redacted]"


def _words(key: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", key)]


def _secret_key(key: str) -> bool:
    words = _words(key)
    if not words or words[-1] in _FACT_WORDS:
        return False
    return bool(_SECRET_WORDS & set(words)) or any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def scrub(value: Any, key: str = "") -> Any:
    """``value`` with anything that looks like key material replaced by ``[redacted]``."""
    if key and _secret_key(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, key) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return REDACTED
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return REDACTED
    return value


def add_sink(sink: Callable[[dict[str, Any]], None]) -> None:
    """Send every later record to ``sink`` as well (idempotent for the same callable).

    Identity, not equality: two bound ``list.append`` of different empty lists
    compare equal, and the second must not be dropped.
    """
    if not any(s is sink for s in _sinks):
        _sinks.append(sink)


def remove_sink(sink: Callable[[dict[str, Any]], None]) -> None:
    global _store_sink
    _sinks[:] = [s for s in _sinks if s is not sink]
    if sink is _store_sink:
        _store_sink = None


def default_actor() -> str:
    """Who runs this process, for a record made at a terminal: ``$LIFELINE_ACTOR``, else user@host."""
    actor = os.environ.get("LIFELINE_ACTOR")
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def record(
    action: str,
    *,
    actor: str,
    outcome: str,
    subject: dict[str, str],
    details: dict[str, Any] | None = None,
    when: datetime | None = None,
) -> dict[str, Any]:
    """Append one audit record and return it.

    ``subject`` names the object acted on: ``{"kind", "namespace", "name"}``
    (plus ``uid`` when known). ``details`` holds facts, never key material:
    values that look like it (by key name or shape) are stored as ``[redacted]``.
    The object's Kubernetes Event is the caller's job (controllers post their own).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; one of {sorted(ACTIONS)}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}; one of {sorted(OUTCOMES)}")
    entry = {
        "time": (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(),
        "action": action,
        "actor": actor,
        "outcome": outcome,
        "subject": dict(subject),
        "details": scrub(dict(details or {})),
    }
    log.info("audit %s", json.dumps(entry, sort_keys=True, default=str))
    _store_from_env()
    for sink in list(_sinks):
        sink(entry)
    return entry


_store_sink: Any = None  # the ChainSink in use, if any


def use_store(url: str, *, writer: str | None = None):
    """Send every later record to the hash-chained log at ``url`` too; returns the sink (to remove it)."""
    global _store_sink
    sink = ChainSink(open_store(url, writer=writer))
    add_sink(sink)
    _store_sink = sink
    return sink


def _store_from_env() -> None:
    """Processes that never configured a store (agent Jobs, CLI runs) chain to $LIFELINE_AUDIT_URL when set."""
    global _store_sink
    url = os.environ.get("LIFELINE_AUDIT_URL")
    if _store_sink is None and url:
        try:
            use_store(url)
        except Exception as exc:  # a bad URL must not stop the action being recorded
            _store_sink = False
            log.error("audit store %s unusable, records go to the log only: %s", url, exc)
