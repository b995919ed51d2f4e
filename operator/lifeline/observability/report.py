"""The DR compliance report: what an auditor asks for, from the objects' own status.

:func:`render_report` is a pure function of (objects, audit facts, now) -> HTML, so
the CLI (`lifeline report`), the operator's ``/report`` and the demo print the same
page and a test can build it from plain dicts. :func:`collect_objects` and
:func:`audit_facts` gather its inputs from a cluster and an audit log.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lifeline.api import BY_KIND, BY_PLURAL
from lifeline.api.common import TIER_DEFAULTS, parse_duration
from lifeline.audit import open_store, verify
from lifeline.kube import CLUSTERROLEBINDINGS, ROLEBINDINGS, KubeError

from . import report_access, report_html, report_restores

log = logging.getLogger(__name__)

REPORTED_KINDS = ("BackupPolicy", "RecoveryPoint", "RestoreDrill", "FailoverPlan", "Restore")
LAST_BACKUPS = 5
CHARTED = 30  # the most recent points a policy's charts show
PROVIDERS = {"vault-transit": "Vault transit (envelope encryption)", "vault-kv": "Vault KV",
             "secret": "Kubernetes Secret"}


# ---- inputs -------------------------------------------------------------------------

def normalize(objects: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Objects keyed by kind ("BackupPolicy") whether given by kind or by plural ("backuppolicies")."""
    out: dict[str, list[dict]] = {kind: [] for kind in REPORTED_KINDS}
    for key, items in (objects or {}).items():
        info = BY_KIND.get(key) or BY_PLURAL.get(key)
        if info is not None and info.kind in out:
            out[info.kind].extend(items or [])
    return out


async def collect_objects(kube, namespace: str | None = None, namespaces: list[str] | None = None
                          ) -> dict[str, list[dict]]:
    """Every reported kind from the API (one namespace, a list of them, or all)."""
    scopes = [namespace] if namespace else (namespaces or [None])
    out: dict[str, list[dict]] = {}
    for kind in REPORTED_KINDS:
        out[kind] = []
        for ns in scopes:
            out[kind].extend(await kube.list(BY_KIND[kind], ns))
    return out


async def collect_access(kube) -> dict | None:
    """The RoleBindings and ClusterRoleBindings for the access review; None when these credentials
    may not read them (the section then says so)."""
    try:
        return {"rolebindings": await kube.list(ROLEBINDINGS, None),
                "clusterrolebindings": await kube.list(CLUSTERROLEBINDINGS, None)}
    except KubeError as exc:
        if exc.status in (401, 403):
            return None
        raise


def audit_facts(audit_url: str | None) -> dict[str, Any]:
    """The audit log's verification and its key-rotation records (blocking I/O)."""
    if not audit_url:
        return {"configured": False}
    try:
        store = open_store(audit_url, create=False)
        result = verify(store)
        rotations = [r for r in store.records() if r.get("action") == "key-rotation"]
    except Exception as exc:  # unreachable bucket, bad URL: the report says so instead of failing
        return {"configured": True, "url": audit_url, "ok": False, "summary": f"audit log {audit_url} could not "
                f"be read: {exc}", "problem": str(exc), "key_rotations": []}
    return {"configured": True, "url": audit_url, "ok": result.ok, "summary": result.summary(),
            "problem": result.problem, "records": result.records, "first_time": result.first_time,
            "last_time": result.last_time,
            "anchor": f"{result.last_seq}:{result.head_hash}" if result.ok and result.records else None,
            "key_rotations": rotations}


# ---- facts (pure) -------------------------------------------------------------------

def _meta(obj: dict) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _condition(obj: dict, type_: str) -> dict | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def _time(value) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _objective(spec: dict, which: str, tier: str | None) -> float | None:
    text = ((spec.get("objectives") or {}).get(which)) or (
        getattr(TIER_DEFAULTS[tier], which) if tier in TIER_DEFAULTS else None)
    try:
        return parse_duration(text) if text else None
    except ValueError:
        return None


def _rotation_for(policy: dict, key_ref: str | None, rotations: list[dict]) -> dict | None:
    ns, name = _meta(policy)
    matching = []
    for r in rotations:
        subject, details = r.get("subject") or {}, r.get("details") or {}
        if (key_ref and key_ref in (subject.get("name"), details.get("key_ref"), details.get("keyRef"))) or \
                (subject.get("kind") == "BackupPolicy" and (subject.get("namespace"), subject.get("name")) == (ns, name)):
            matching.append(r)
    done = [r for r in matching if r.get("outcome") == "succeeded"]
    last = max(done or matching, key=lambda r: str(r.get("time")), default=None)
    return last


def policy_facts(policy: dict, points: list[dict], drills: list[dict], audit: dict, now: datetime) -> dict:
    ns, name = _meta(policy)
    spec, status = policy.get("spec") or {}, policy.get("status") or {}
    tier = spec.get("tier")
    target = status.get("rpoTargetSeconds") or _objective(spec, "rpo", tier)
    achieved = status.get("currentRPOSeconds")
    last_success = _time(status.get("lastSuccessfulBackupTime"))
    if achieved is None and last_success is not None:
        achieved = max(0.0, (now - last_success).total_seconds())
    met_cond = _condition(policy, "RPOMet")
    if met_cond is not None and met_cond.get("status") in ("True", "False"):
        rpo_met = met_cond["status"] == "True"
    elif achieved is not None and target:
        rpo_met = achieved <= target
    else:
        rpo_met = None
    achievable = _condition(policy, "RPOAchievable")
    mine = sorted((p for p in points if _meta(p)[0] == ns and (p.get("spec") or {}).get("policyName") == name),
                  key=lambda p: str((p.get("spec") or {}).get("completionTime") or ""), reverse=True)
    key_ref = (spec.get("encryption") or {}).get("keyRef")
    scheme = key_ref.split("://", 1)[0] if key_ref and "://" in key_ref else None
    keys = _condition(policy, "KeysAvailable")
    rotation = _rotation_for(policy, key_ref, audit.get("key_rotations") or []) if audit.get("configured") else None
    dest_status = {d.get("name"): d for d in status.get("destinations") or []}
    destinations = []
    for d in spec.get("destinations") or []:
        st = dest_status.get(d.get("name")) or {}
        kind = next((k for k in ("s3", "azure", "gcs", "filesystem") if d.get(k)), "?")
        store = d.get(kind) or {}
        where = (f"PVC {store.get('claimName')}" if kind == "filesystem" else "" if kind == "?" else
                 f"{ {'gcs': 'gs'}.get(kind, kind)}://{store.get('container') or store.get('bucket')}/"
                 f"{store.get('prefix', '')}".rstrip("/"))
        destinations.append({"name": d.get("name"), "off_site": bool(d.get("offSite")), "kind": kind, "where": where,
                             "last_outcome": st.get("lastOutcome"), "last_success": st.get("lastSuccessTime"),
                             "message": st.get("message")})
    off_site = [d for d in destinations if d["off_site"]]
    off_site_cond = _condition(policy, "OffSiteCopy")
    if not off_site:
        off_site_state = "No off-site copy: every destination is on site"
    elif off_site_cond is not None and off_site_cond.get("status") == "False":
        off_site_state = f"Off-site copy missing: {off_site_cond.get('message') or off_site_cond.get('reason')}"
    elif any(d["last_success"] for d in off_site):
        off_site_state = "Off-site copy present"
    else:
        off_site_state = "Off-site copy not yet made"
    charted = list(reversed(mine[:CHARTED]))  # oldest first
    times = [_time((p.get("spec") or {}).get("completionTime")) for p in charted]
    gaps = [((b - a).total_seconds(), b.strftime("%m-%d %H:%M")) for a, b in zip(times, times[1:])
            if a is not None and b is not None]
    return {
        "namespace": ns, "name": name, "tier": tier, "suspended": bool(spec.get("suspend")),
        "gaps": gaps, "sizes": [((p.get("spec") or {}).get("sizeBytes"), _meta(p)[1]) for p in charted],
        "rpo_target": target, "rpo_achieved": achieved, "rpo_met": rpo_met,
        "rpo_achievable": None if achievable is None else achievable.get("status") == "True",
        "rpo_achievable_message": (achievable or {}).get("message"),
        "rto_target": _objective(spec, "rto", tier),
        "last_success": status.get("lastSuccessfulBackupTime"), "last_backup": status.get("lastBackup") or {},
        "recovery_points": status.get("recoveryPoints", len(mine)),
        "points": [_point_row(p) for p in mine[:LAST_BACKUPS]],
        "key_ref": key_ref, "provider": PROVIDERS.get(scheme, scheme or "none"),
        "keys_available": None if keys is None else keys.get("status") == "True",
        "keys_message": (keys or {}).get("message"),
        "last_rotation": rotation, "audit_configured": bool(audit.get("configured")),
        "destinations": destinations, "off_site_state": off_site_state,
        "off_site_ok": off_site_state == "Off-site copy present",
        "drills": [_meta(d)[1] for d in drills if _meta(d)[0] == ns and (d.get("spec") or {}).get("policyName") == name],
        "ready": (_condition(policy, "Ready") or {}).get("status"),
    }


def _point_row(point: dict) -> dict:
    spec, status = point.get("spec") or {}, point.get("status") or {}
    return {"name": _meta(point)[1], "type": spec.get("type"), "completion": spec.get("completionTime"),
            "size": spec.get("sizeBytes"), "copies": [c.get("destination") for c in spec.get("copies") or []],
            "phase": status.get("phase") or "Available", "key_ref": spec.get("keyRef")}


def drill_facts(drill: dict, policies: dict[tuple[str, str], dict]) -> dict:
    ns, name = _meta(drill)
    spec, status = drill.get("spec") or {}, drill.get("status") or {}
    policy = policies.get((ns, spec.get("policyName")))
    target = None
    if policy is not None:
        target = _objective(policy.get("spec") or {}, "rto", (policy.get("spec") or {}).get("tier"))
    runs = []
    for run in sorted(status.get("history") or [], key=lambda r: str(r.get("startTime") or ""), reverse=True):
        rto = run.get("rtoSeconds") or target
        total = run.get("totalSeconds")
        met = run.get("rtoMet")
        if met is None and rto and total is not None:
            met = total <= rto
        runs.append({"name": run.get("name"), "start": run.get("startTime"), "point": run.get("recoveryPoint"),
                     "outcome": run.get("outcome"), "total": total, "restore": run.get("restoreSeconds"),
                     "rto": rto, "rto_met": met, "rpo_met": run.get("rpoMet"),
                     "point_age": run.get("pointAgeSeconds"), "message": run.get("message")})
    last = runs[0] if runs else None
    return {"namespace": ns, "name": name, "policy": spec.get("policyName"), "rto_target": target,
            "schedule": spec.get("schedule"), "suspended": bool(spec.get("suspend")), "runs": runs, "last": last,
            "next_run": status.get("nextRunTime"),
            "ok": bool(last and last["outcome"] == "Succeeded" and last["rto_met"] is not False)}


def failover_facts(plan: dict) -> dict:
    ns, name = _meta(plan)
    spec, status = plan.get("spec") or {}, plan.get("status") or {}
    target = _objective(spec, "rto", spec.get("tier") or "A")
    completions = []
    for t in status.get("history") or []:
        achieved = t.get("achievedRTOSeconds")
        if achieved is None and not str(t.get("reason", "")).endswith("Complete"):
            continue
        completions.append({"time": t.get("time"), "reason": t.get("reason"), "phase": t.get("phase"),
                            "site": t.get("activeSite"), "achieved": achieved,
                            "switchover": t.get("switchoverSeconds"), "message": t.get("message"),
                            "rto_met": None if achieved is None or not target else achieved <= target})
    completions.sort(key=lambda c: str(c["time"]), reverse=True)
    return {"namespace": ns, "name": name, "tier": spec.get("tier") or "A", "mode": spec.get("mode"),
            "phase": status.get("phase"), "active_site": status.get("activeSite"),
            "primary": (spec.get("primary") or {}).get("name"), "standby": (spec.get("standby") or {}).get("name"),
            "rto_target": target, "events": completions,
            "ok": not any(c["rto_met"] is False for c in completions[:1])}


def report_facts(objects: dict[str, list[dict]], audit: dict | None, now: datetime, access: dict | None = None) -> dict:
    """Everything the page shows, computed once (pure)."""
    objects = normalize(objects)
    audit = audit or {"configured": False}
    by_name = {_meta(p): p for p in objects["BackupPolicy"]}
    policies = [policy_facts(p, objects["RecoveryPoint"], objects["RestoreDrill"], audit, now)
                for p in sorted(objects["BackupPolicy"], key=_meta)]
    drills = [drill_facts(d, by_name) for d in sorted(objects["RestoreDrill"], key=_meta)]
    plans = [failover_facts(p) for p in sorted(objects["FailoverPlan"], key=_meta)]
    findings = []
    for p in policies:
        ref = f"BackupPolicy {p['namespace']}/{p['name']}"
        if p["rpo_met"] is False:
            findings.append(f"{ref}: RPO missed")
        elif p["rpo_met"] is None:
            findings.append(f"{ref}: no successful backup yet")
        if p["rpo_achievable"] is False:
            findings.append(f"{ref}: schedule cannot meet the RPO")
        if not p["off_site_ok"]:
            findings.append(f"{ref}: {p['off_site_state']}")
        if p["keys_available"] is False:
            findings.append(f"{ref}: encryption key unavailable")
        if not p["drills"]:
            findings.append(f"{ref}: no restore drill")
    for d in drills:
        ref = f"RestoreDrill {d['namespace']}/{d['name']}"
        if d["last"] is None:
            findings.append(f"{ref}: never run")
        elif d["last"]["outcome"] == "Failed":
            findings.append(f"{ref}: last drill failed")
        elif d["last"]["rto_met"] is False:
            findings.append(f"{ref}: RTO missed in the last drill")
    for f in plans:
        if not f["ok"]:
            findings.append(f"FailoverPlan {f['namespace']}/{f['name']}: RTO missed in the last failover")
    if audit.get("configured") and not audit.get("ok"):
        findings.append("Audit log: verification FAILED")
    elif not audit.get("configured"):
        findings.append("Audit log: none configured")
    restores = [report_restores.restore_facts(r) for r in sorted(
        objects["Restore"], key=lambda r: str((r.get("metadata") or {}).get("creationTimestamp") or ""), reverse=True)]
    return {"generated": now.astimezone(timezone.utc), "policies": policies, "drills": drills,
            "failovers": plans, "audit": audit, "findings": findings, "restores": restores,
            "matrix": [_matrix_row(p, drills) for p in policies],
            "access": None if access is None else report_access.review(access.get("rolebindings") or [],
                                                                        access.get("clusterrolebindings") or [])}


def _matrix_row(p: dict, drills: list[dict]) -> dict:
    """One line of the one-glance matrix: the policy's objectives, each met, missed or unknown."""
    mine = [d for d in drills if d["namespace"] == p["namespace"] and d["policy"] == p["name"]]
    lasts = [d["last"] for d in mine if d["last"]]
    newest = max(lasts, key=lambda r: str(r["start"] or ""), default=None)
    return {"policy": f"{p['namespace']}/{p['name']}", "tier": p["tier"], "rpo_met": p["rpo_met"],
            "off_site": p["off_site_ok"], "drill": None if newest is None else newest["outcome"] == "Succeeded",
            "drill_when": (newest or {}).get("start"), "rto_met": None if newest is None else newest["rto_met"],
            "keys": p["keys_available"]}


def render_report(objects: dict[str, list[dict]], audit: dict | None, now: datetime, access: dict | None = None) -> str:
    """The report as one self-contained HTML page (pure: same inputs, same bytes)."""
    return report_html.page(report_facts(objects, audit, now, access))


# ---- conveniences for the CLI, the operator and the demo ------------------------------

def render_for(objects: dict[str, list[dict]], audit_url: str | None, now: datetime | None = None,
               access: dict | None = None) -> str:
    return render_report(objects, audit_facts(audit_url), now or datetime.now(timezone.utc), access)


async def write_report_async(kube_or_objects, path: str | Path, audit_url: str | None = None,
                             now: datetime | None = None) -> Path:
    """Like :func:`write_report`, from async code that holds a :class:`~lifeline.kube.Kube`."""
    given = isinstance(kube_or_objects, dict)
    objects = kube_or_objects if given else await collect_objects(kube_or_objects)
    access = None if given else await collect_access(kube_or_objects)
    audit = await asyncio.to_thread(audit_facts, audit_url)
    html = render_report(objects, audit, now or datetime.now(timezone.utc), access)
    target = Path(path)
    target.write_text(html, encoding="utf-8")
    return target


def write_report(kube_or_objects, path: str | Path, audit_url: str | None = None,
                 now: datetime | None = None) -> Path:
    """Write the report to ``path`` and return it.

    ``kube_or_objects``: a dict of objects (by kind or plural, as ``kube.list`` returns them) — the
    easy way from anywhere — or a :class:`~lifeline.kube.Kube` when no event loop runs in this
    thread (inside one, ``await write_report_async(...)`` instead).
    """
    if isinstance(kube_or_objects, dict):
        html = render_for(kube_or_objects, audit_url, now)
        target = Path(path)
        target.write_text(html, encoding="utf-8")
        return target
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(write_report_async(kube_or_objects, path, audit_url, now))
    raise RuntimeError("write_report() was given a Kube inside a running event loop: "
                       "use `await write_report_async(kube, path, audit_url)` or pass the listed objects")


async def operator_report(ctx) -> str:
    """The page the operator serves at /report: its own scope, its audit log, its clock."""
    import fnmatch

    patterns = list(ctx.options.namespaces)
    if any(ch in n for n in patterns for ch in "*?["):  # globs: list everything, keep what they match
        objects = await collect_objects(ctx.kube)
        objects = {kind: [o for o in items if any(fnmatch.fnmatch(_meta(o)[0], p) for p in patterns)]
                   for kind, items in objects.items()}
    else:
        objects = await collect_objects(ctx.kube, namespaces=patterns or None)
    audit = await asyncio.to_thread(audit_facts, ctx.options.audit_url)
    return render_report(objects, audit, ctx.clock.now(), await collect_access(ctx.kube))
