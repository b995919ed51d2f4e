"""Notices to people: the admin's notification targets, and what a notice says in each format.

On a switchover the clinical workstations are told, and the on-call team's chat. The admin defines
the targets in the chart (``notifications.targets``, passed to the operator as JSON in
``LIFELINE_NOTIFICATION_TARGETS``): a name, an address, a format. A tenant's object only *names*
targets (``spec.notify``): an address in a tenant's object would let anyone who may write a
FailoverPlan make the operator send requests wherever they like inside the cluster.

Formats: ``generic`` (Lifeline's JSON, or the admin's ``template`` with the notice's fields filled
in), ``dingtalk`` and ``wecom`` (their group robots' markdown messages). Every notice carries
Alertmanager-style labels (``alertname``, ``severity``, ``namespace``, ``name``, plus the target's
own), so SMS and phone routing can stay in Alertmanager.

A DingTalk robot created with signing (加签) wants each request's URL signed with its secret
(:func:`dingtalk_signed_url`). The secret never stands in the targets' JSON: a target names a
Kubernetes Secret (``secret: {name, key}``), the chart puts that Secret's key into the operator's
environment as :func:`secret_env` of the target's name, and :func:`load_targets` takes it from there.
WeCom robots have no signing: their key is in the URL.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from .admin_settings import json_list

ENV = "LIFELINE_NOTIFICATION_TARGETS"
FORMATS = ("generic", "dingtalk", "wecom")
VERSION = "lifeline.io/notice/v1"
SECRET_ENV_PREFIX = "LIFELINE_NOTIFICATION_SECRET_"  # + the target's name: its signing secret (from a Secret)

# What people are told about, per kind: event -> (what happened, severity). FailoverPlans by their Events'
# reasons; Restores by the transition (RestoreRequested, RestoreStarted, ...); drills and policies likewise.
FAILOVER_NOTICES = {
    "FailingOver": ("a failover to the standby site started", "critical"),
    "FailoverComplete": ("the failover is complete: the standby site serves", "critical"),
    "FailingBack": ("a failback to the primary site started", "warning"),
    "FailbackComplete": ("the failback is complete: the primary site serves again", "warning"),
    "SwitchComplete": ("the planned switchover is complete", "warning"),
    "SwitchoverAborted": ("the switchover was aborted: the source could not be fenced", "critical"),
    "FailoverRecommended": ("a failover is recommended and waits for a person's approval", "critical"),
}


NOTICES = {
    "FailoverPlan": FAILOVER_NOTICES,
    "Restore": {
        "RestoreRequested": ("a restore was requested and waits for its approvals", "warning"),
        "RestoreStarted": ("the approved restore started", "warning"),
        "RestoreSucceeded": ("the restore succeeded", "warning"),
        "RestoreFailed": ("the restore failed", "critical"),
        "RestoreRejected": ("the restore was rejected", "warning"),
    },
    "RestoreDrill": {
        "DrillFailed": ("a restore drill failed: the backups may not be restorable", "critical"),
        "DrillRTOMissed": ("a restore drill took longer than the RTO", "warning"),
    },
    "BackupPolicy": {
        "RPOBreached": ("the RPO is breached: the newest backup is older than the objective", "critical"),
        "RPORecovered": ("the RPO is met again", "warning"),
        "BackupFailed": ("a backup failed", "warning"),
    },
}


class TargetError(ValueError):
    """The admin's notification targets cannot be read: the operator says so and does not start."""


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    format: str = "generic"
    template: dict | None = None  # generic only: a JSON object whose strings may hold {placeholders}
    labels: tuple[tuple[str, str], ...] = ()
    secret: str | None = field(default=None, repr=False)  # dingtalk only: the robot's signing secret (SEC...)


@dataclass(frozen=True)
class Notice:
    event: str  # the Event reason: FailingOver, FailoverComplete, ...
    kind: str
    namespace: str
    name: str
    summary: str
    message: str
    severity: str
    time: str
    labels: dict = field(default_factory=dict)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _checked_url(url, where: str) -> str:
    parsed = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise TargetError(f"{where}.url: an https:// address")
    if parsed.scheme == "http" and not _loopback(parsed.hostname):
        raise TargetError(f"{where}.url: https only (plain http only to loopback), not {url}")
    return url


def secret_env(target: str) -> str:
    """The environment variable that holds ``target``'s signing secret (the chart sets it from the Secret)."""
    return SECRET_ENV_PREFIX + target.upper().replace("-", "_")


def _secret(item: dict, fmt: str, where: str, secrets: Mapping[str, str]) -> str | None:
    ref = item.get("secret")
    if ref is None:
        return None
    if fmt != "dingtalk":
        raise TargetError(f"{where}.secret: for the dingtalk format only (WeCom robots have no signing)")
    if not isinstance(ref, dict) or set(ref) != {"name", "key"} or not all(
            isinstance(v, str) and v for v in ref.values()):
        raise TargetError(f"{where}.secret: {{name, key}} of a Secret in the operator's namespace")
    value = secrets.get(secret_env(item["name"]), "").strip()
    if not value:
        raise TargetError(f"{where}.secret: {secret_env(item['name'])} is not set (the chart sets it from "
                          f"key {ref['key']!r} of Secret {ref['name']!r})")
    return value


def load_targets(text: str | None, secrets: Mapping[str, str] | None = None) -> dict[str, Target]:
    """The targets of ``text`` (JSON: a list of ``{name, url, format, template, labels, secret}``), by name;
    a target's signing secret is taken from ``secrets`` (the environment) by :func:`secret_env`."""
    out: dict[str, Target] = {}
    for i, item in enumerate(json_list(text, ENV, "notification targets", TargetError)):
        where = f"notification target {i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise TargetError(f"{where}: an object with a name")
        where = f"notification target {item['name']!r}"
        unknown = set(item) - {"name", "url", "format", "template", "labels", "secret"}
        if unknown:
            raise TargetError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if item["name"] in out:
            raise TargetError(f"{where}: named twice")
        fmt = item.get("format", "generic")
        if fmt not in FORMATS:
            raise TargetError(f"{where}.format: one of {', '.join(FORMATS)}, not {fmt!r}")
        template = item.get("template")
        if template is not None and (fmt != "generic" or not isinstance(template, dict)):
            raise TargetError(f"{where}.template: a JSON object, for the generic format only")
        labels = item.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise TargetError(f"{where}.labels: a map of strings")
        out[item["name"]] = Target(item["name"], _checked_url(item.get("url"), where), fmt, template,
                                   tuple(sorted(labels.items())), _secret(item, fmt, where, secrets or {}))
    return out


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature of a robot request: base64(HMAC-SHA256(key=secret, msg="<timestamp>\\n<secret>"))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` with ``timestamp`` (ms since the epoch; DingTalk refuses one more than an hour off) and
    its ``sign`` appended. Never logged: it is good for an hour."""
    query = urllib.parse.urlencode({"timestamp": timestamp_ms, "sign": dingtalk_sign(secret, timestamp_ms)})
    return url + ("" if url.endswith(("?", "&")) else "&" if "?" in url else "?") + query


def notice(kind: str, event: str, namespace: str, name: str, message: str, time: str) -> Notice | None:
    """The notice for ``event`` of a ``kind`` object, or None when people are not told about it."""
    found = NOTICES.get(kind, {}).get(event)
    if found is None:
        return None
    what, severity = found
    return Notice(event, kind, namespace, name, f"{kind} {namespace}/{name}: {what}", message, severity, time)


def failover_notice(reason: str, namespace: str, name: str, message: str, time: str) -> Notice | None:
    """The notice for a FailoverPlan Event, or None when people are not told about it."""
    return notice("FailoverPlan", reason, namespace, name, message, time)


class _Fields(dict):
    def __missing__(self, key: str) -> str:  # an unknown {placeholder} stays as written
        return "{" + key + "}"


def _fill(value, fields: _Fields):
    if isinstance(value, str):
        return value.format_map(fields)
    if isinstance(value, dict):
        return {k: _fill(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, fields) for v in value]
    return value


def labels_of(target: Target, notice: Notice) -> dict[str, str]:
    return {"alertname": f"Lifeline{notice.event}", "severity": notice.severity, "kind": notice.kind,
            "namespace": notice.namespace, "name": notice.name, **dict(target.labels), **notice.labels}


def render(target: Target, notice: Notice) -> bytes:
    """The request body for ``target`` (JSON, UTF-8)."""
    labels = labels_of(target, notice)
    if target.format == "dingtalk":
        body = {"msgtype": "markdown", "markdown": {
            "title": notice.summary, "text": f"### {notice.summary}\n\n{notice.message}\n\n> {notice.time}"}}
    elif target.format == "wecom":
        body = {"msgtype": "markdown", "markdown": {
            "content": f"**{notice.summary}**\n{notice.message}\n> {notice.time}"}}
    elif target.template is not None:
        fields = _Fields(event=notice.event, kind=notice.kind, namespace=notice.namespace, name=notice.name,
                         summary=notice.summary, message=notice.message, severity=notice.severity, time=notice.time)
        body = _fill(target.template, fields)
    else:
        body = {"version": VERSION, "event": notice.event, "severity": notice.severity, "time": notice.time,
                "object": {"kind": notice.kind, "namespace": notice.namespace, "name": notice.name},
                "summary": notice.summary, "message": notice.message, "labels": labels}
    return json.dumps(body, ensure_ascii=False).encode()
