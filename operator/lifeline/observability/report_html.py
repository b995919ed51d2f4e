"""HTML of the DR compliance report: one self-contained page, readable printed or on screen.

Every state is written in words ("RPO missed", "RTO met") and not only in colour, so
the page reads the same in black and white and to a screen reader.
"""
from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from lifeline.api.common import format_duration

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d2430; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #d0d7e2; }
h3 { margin-bottom: 0.3rem; }
.meta { color: #556; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; min-width: 40rem; }
th, td { border: 1px solid #d0d7e2; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f1f4f9; }
.ok { color: #0b6b2e; font-weight: 600; } .bad { color: #b00020; font-weight: 600; }
.unknown { color: #7a5b00; font-weight: 600; }
.findings li { margin: 0.2rem 0; } .policy { margin-bottom: 1.5rem; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def badge(state: bool | None, yes: str, no: str, unknown: str = "unknown") -> str:
    cls, text = ("ok", yes) if state is True else ("bad", no) if state is False else ("unknown", unknown)
    return f'<span class="{cls}">{esc(text)}</span>'


def secs(value) -> str:
    if value is None:
        return "—"
    value = float(value)
    return f"{value:.1f}s" if value < 60 and value != int(value) else format_duration(value)


def size(value) -> str:
    if value is None:
        return "—"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def when(value) -> str:
    if not value:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return esc(str(value).replace("T", " ").replace("+00:00", " UTC").replace("Z", " UTC"))


def table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p>{esc(empty)}</p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def findings(items: list[str]) -> str:
    if not items:
        return '<p class="ok">No findings: every objective below is met.</p>'
    lis = "".join(f"<li>{esc(i)}</li>" for i in items)
    return f'<p class="bad">{len(items)} finding(s)</p><ul class="findings">{lis}</ul>'


def policy_section(p: dict) -> str:
    rpo = badge(p["rpo_met"], "RPO met", "RPO missed", "RPO unknown: no successful backup yet")
    achievable = ""
    if p["rpo_achievable"] is False:
        achievable = f'<p class="bad">Schedule cannot meet the RPO: {esc(p["rpo_achievable_message"])}</p>'
    rotation = p["last_rotation"]
    if rotation is not None:
        rotated = (f'{when(rotation.get("time"))} by {esc(rotation.get("actor"))} '
                   f'({esc(rotation.get("outcome"))}, audit record {esc(rotation.get("seq"))})')
    else:
        rotated = "never rotated (no key-rotation record in the audit log)" if p["audit_configured"] else \
            "unknown (no audit log configured)"
    keys = badge(p["keys_available"], "key available", "key UNAVAILABLE")
    last = p["last_backup"]
    last_line = (f'{esc(last.get("type"))} backup {esc(last.get("outcome"))} at '
                 f'{when(last.get("completionTime") or last.get("startTime"))}'
                 + (f': {esc(last.get("message"))}' if last.get("message") else "")) if last else "none yet"
    dests = table(["destination", "where", "off-site", "last outcome", "last success"], [
        [esc(d["name"]), esc(d["where"]), "yes" if d["off_site"] else "no",
         esc(d["last_outcome"] or "—") + (f' ({esc(d["message"])})' if d["message"] else ""), when(d["last_success"])]
        for d in p["destinations"]], "no destinations")
    points = table(["recovery point", "type", "completed", "size", "copies", "state"], [
        [esc(r["name"]), esc(r["type"]), when(r["completion"]), size(r["size"]), esc(", ".join(r["copies"])),
         esc(r["phase"])] for r in p["points"]], "No backups yet.")
    suspended = ' <span class="unknown">(suspended)</span>' if p["suspended"] else ""
    off = f'<span class="{"ok" if p["off_site_ok"] else "bad"}">{esc(p["off_site_state"])}</span>'
    drills = esc(", ".join(p["drills"])) if p["drills"] else '<span class="bad">no restore drill</span>'
    return f"""
<section class="policy" id="policy-{esc(p['namespace'])}-{esc(p['name'])}">
<h3>BackupPolicy {esc(p['namespace'])}/{esc(p['name'])}{suspended}</h3>
<table><tbody>
<tr><th>tier</th><td>{esc(p['tier'])}</td></tr>
<tr><th>RPO</th><td>target {secs(p['rpo_target'])}, achieved {secs(p['rpo_achieved'])}: {rpo}</td></tr>
<tr><th>RTO target</th><td>{secs(p['rto_target'])}</td></tr>
<tr><th>last backup</th><td>{last_line}</td></tr>
<tr><th>last successful backup</th><td>{when(p['last_success'])}</td></tr>
<tr><th>recovery points</th><td>{esc(p['recovery_points'])}</td></tr>
<tr><th>encryption</th><td>AES-256-GCM per chunk; key ref <code>{esc(p['key_ref'])}</code>;
 provider {esc(p['provider'])}; {keys}</td></tr>
<tr><th>last key rotation</th><td>{rotated}</td></tr>
<tr><th>off-site copies</th><td>{off}</td></tr>
<tr><th>restore drills</th><td>{drills}</td></tr>
</tbody></table>
{achievable}
<h4>Destinations</h4>{dests}
<h4>Last backups</h4>{points}
</section>"""


def drill_section(drills: list[dict]) -> str:
    out = []
    for d in drills:
        rows = [[when(r["start"]), esc(r["point"]), badge(r["outcome"] == "Succeeded" if r["outcome"] in
                                                         ("Succeeded", "Failed") else None, "succeeded",
                                                         "failed", esc(r["outcome"] or "—")),
                 secs(r["total"]), secs(r["rto"]), badge(r["rto_met"], "RTO met", "RTO missed", "—"),
                 secs(r["point_age"]) + (" " + badge(r["rpo_met"], "RPO met", "RPO missed") if r["rpo_met"]
                                         is not None else ""),
                 esc(r["message"] or "")] for r in d["runs"]]
        out.append(f"""<h3>RestoreDrill {esc(d['namespace'])}/{esc(d['name'])} (policy {esc(d['policy'])})</h3>
<p>RTO target {secs(d['rto_target'])}; next run {when(d['next_run'])}</p>
{table(["started", "recovery point", "outcome", "measured RTO", "RTO target", "RTO", "data age", "note"],
       rows, "Never run.")}""")
    return "".join(out) or "<p>No RestoreDrills.</p>"


def failover_section(plans: list[dict]) -> str:
    out = []
    for f in plans:
        rows = [[when(e["time"]), esc(e["reason"]), esc(e["site"]), secs(e["achieved"]), secs(f["rto_target"]),
                 badge(e["rto_met"], "RTO met", "RTO missed", "planned (no outage)"), esc(e["message"] or "")]
                for e in f["events"]]
        out.append(f"""<h3>FailoverPlan {esc(f['namespace'])}/{esc(f['name'])} (tier {esc(f['tier'])})</h3>
<p>{esc(f['primary'])} → {esc(f['standby'])}; now {esc(f['phase'] or 'not started')}, active site
{esc(f['active_site'] or '—')}; mode {esc(f['mode'] or 'Automatic')}; RTO target {secs(f['rto_target'])}</p>
{table(["completed", "what", "active site", "achieved RTO", "RTO target", "RTO", "note"], rows,
       "No failover or failback has happened.")}""")
    return "".join(out) or "<p>No FailoverPlans.</p>"


def audit_section(audit: dict) -> str:
    if not audit.get("configured"):
        return ('<p class="unknown">No audit log configured: run the operator with --audit-url '
                '(or LIFELINE_AUDIT_URL) so DR actions are kept in a hash-chained log.</p>')
    state = badge(audit.get("ok"), "Audit chain verified", "Audit chain verification FAILED")
    anchor = (f'<p>Head of the chain (note it; <code>lifeline audit verify --anchor {esc(audit["anchor"][:24])}'
              f'</code> later proves nothing was cut from the end): <code>{esc(audit["anchor"])}</code></p>'
              if audit.get("anchor") else "")
    return f"<p>{state}: {esc(audit.get('summary'))}</p>{anchor}"


def page(facts: dict) -> str:
    audit = facts["audit"]
    generated = when(facts["generated"])
    policies = "".join(policy_section(p) for p in facts["policies"]) or "<p>No BackupPolicies.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Lifeline DR compliance report</title>
<style>{CSS}</style></head>
<body>
<h1>Lifeline DR compliance report</h1>
<p class="meta">Generated {generated} by Lifeline from the status of the objects in the cluster and the audit log.</p>
<h2 id="summary">Summary</h2>
{findings(facts["findings"])}
<h2 id="audit">Audit trail</h2>
{audit_section(audit)}
<h2 id="backups">Backups per policy</h2>
{policies}
<h2 id="drills">Restore drills</h2>
{drill_section(facts["drills"])}
<h2 id="failovers">Failovers</h2>
{failover_section(facts["failovers"])}
<p class="meta">End of report. Generated {generated}.</p>
</body></html>
"""
