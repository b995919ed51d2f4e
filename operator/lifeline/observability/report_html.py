"""HTML of the DR compliance report: one self-contained page, readable printed or on screen.

Every state is written in words ("RPO missed", "RTO met") and not only in colour, so
the page reads the same in black and white and to a screen reader.
"""
from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from lifeline.api.common import format_duration

from . import report_charts as charts

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
code { background: #f4f4f4; padding: 0 0.2rem; overflow-wrap: anywhere; }
td { overflow-wrap: anywhere; }
.chart { margin: 0.4rem 0 1rem; } .chart svg { max-width: 100%; height: auto; }
.chart figcaption { color: #556; font-size: 0.85rem; }
.charts { display: flex; flex-wrap: wrap; gap: 0 1.5rem; }
.matrix td, .matrix th { text-align: center; } .matrix td:first-child { text-align: left; }
@media (max-width: 900px) { table { min-width: 0; } }
@media print {
  @page { size: A4; margin: 14mm; }
  body { margin: 0; font-size: 10pt; } table { min-width: 0; width: 100%; }
  h2 { break-after: avoid; } section, figure, tr { break-inside: avoid; }
  .restore { break-before: page; }
}
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
{policy_charts(p)}
<h4>Destinations</h4>{dests}
<h4>Last backups</h4>{points}
</section>"""


def matrix_section(rows: list[dict]) -> str:
    """The one-glance matrix: a policy a row, an objective a column, each met, missed or unknown."""
    body = [[esc(r["policy"]), esc(r["tier"]), badge(r["rpo_met"], "met", "missed"),
             badge(r["off_site"], "yes", "no"),
             badge(r["drill"], "passed", "failed", "none") + (f'<br>{when(r["drill_when"])}' if r["drill_when"] else ""),
             badge(r["rto_met"], "met", "missed", "—"), badge(r["keys"], "available", "UNAVAILABLE")]
            for r in rows]
    return table(["policy", "tier", "RPO", "off-site copy", "last drill", "RTO (last drill)", "keys"], body,
                 "No BackupPolicies.").replace("<table>", '<table class="matrix">', 1)


def policy_charts(p: dict) -> str:
    gaps = charts.bars([g for g, _ in p["gaps"]], [w for _, w in p["gaps"]], target=p["rpo_target"], fmt=secs,
                       caption=f"Data age reached between consecutive backups (the RPO achieved), against the "
                               f"target {secs(p['rpo_target'])}: bars over the dashed line missed it")
    sizes = charts.bars([s for s, _ in p["sizes"]], [n for _, n in p["sizes"]], fmt=size,
                        caption="Size of each recovery point, oldest left")
    return f'<div class="charts">{gaps}{sizes}</div>' if gaps or sizes else ""


def drill_chart(d: dict) -> str:
    runs = list(reversed(d["runs"]))
    return charts.bars([r["total"] for r in runs], [when(r["start"]) for r in runs], target=d["rto_target"],
                       fmt=secs, caption=f"Measured recovery time of each drill run, against the RTO "
                                         f"{secs(d['rto_target'])}")


def failover_chart(f: dict, now: datetime) -> str:
    marks = []
    for e in f["events"]:
        try:
            moment = datetime.fromisoformat(str(e["time"]).replace("Z", "+00:00"))
        except ValueError:
            continue
        marks.append((moment, f"{e['reason']} to {e['site']}", e["rto_met"]))
    if not marks:
        return ""
    start = min(m for m, _, _ in marks)
    return charts.timeline(marks, start=start, end=max(now, start), caption="Failovers and failbacks over time "
                           "(green: within the RTO, red: over it, blue: planned)")


def restore_section(r: dict) -> str:
    approvals = table(["who", "decision", "when", "groups", "comment"], [
        [esc(a["user"]), esc(a["decision"]), when(a["time"]), esc(", ".join(a["groups"])) or "—",
         esc(a["comment"] or "")] for a in r["approvals"]], "No decision recorded.")
    outcome = {"Succeeded": "ok", "Failed": "bad", "Rejected": "bad"}.get(r["phase"], "unknown")
    return f"""
<section class="restore" id="restore-{esc(r['namespace'])}-{esc(r['name'])}">
<h3>Restore {esc(r['namespace'])}/{esc(r['name'])}</h3>
<table><tbody>
<tr><th>requested</th><td>{when(r['requested'])} by {esc(r['requested_by'] or 'unknown')}</td></tr>
<tr><th>reason</th><td>{esc(r['reason'])}</td></tr>
<tr><th>recovery point</th><td>{esc(r['point'])}</td></tr>
<tr><th>target</th><td>{esc(r['target'])} ({esc(r['strategy'])})</td></tr>
<tr><th>approval policy</th><td>{esc(r['policy'])}</td></tr>
<tr><th>outcome</th><td><span class="{outcome}">{esc(r['phase'])}</span>{': ' + esc(r['message']) if r['message'] else ''}</td></tr>
<tr><th>ran</th><td>{when(r['started'])} to {when(r['completed'])}{' by Job ' + esc(r['job']) if r['job'] else ''}{', ' + size(r['bytes']) if r['bytes'] else ''}</td></tr>
</tbody></table>
<h4>Decisions</h4>{approvals}
</section>"""


def access_section(access: dict | None) -> str:
    if access is None:
        return ('<p class="unknown">Not readable with the credentials this report was made with (it needs to '
                'list RoleBindings and ClusterRoleBindings).</p>')
    if not access:
        return "<p>No RoleBinding or ClusterRoleBinding names a Lifeline role.</p>"
    rows = [[esc(ns), esc(right), esc(", ".join(who))] for ns, rights in access.items() for right, who in rights.items()]
    return ("<p>From the RoleBindings and ClusterRoleBindings naming Lifeline's ClusterRoles (and admin, edit and "
            "view, into which the chart folds some). Custom roles granting the same verbs are not listed.</p>"
            + table(["namespace", "right", "who holds it"], rows, ""))


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
{drill_chart(d)}
{table(["started", "recovery point", "outcome", "measured RTO", "RTO target", "RTO", "data age", "note"],
       rows, "Never run.")}""")
    return "".join(out) or "<p>No RestoreDrills.</p>"


def failover_section(plans: list[dict], now: datetime | None = None) -> str:
    out = []
    for f in plans:
        rows = [[when(e["time"]), esc(e["reason"]), esc(e["site"]), secs(e["achieved"]), secs(f["rto_target"]),
                 badge(e["rto_met"], "RTO met", "RTO missed", "planned (no outage)"), esc(e["message"] or "")]
                for e in f["events"]]
        out.append(f"""<h3>FailoverPlan {esc(f['namespace'])}/{esc(f['name'])} (tier {esc(f['tier'])})</h3>
<p>{esc(f['primary'])} → {esc(f['standby'])}; now {esc(f['phase'] or 'not started')}, active site
{esc(f['active_site'] or '—')}; mode {esc(f['mode'] or 'Automatic')}; RTO target {secs(f['rto_target'])}</p>
{failover_chart(f, now) if now else ''}
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
<h2 id="glance">At a glance</h2>
{matrix_section(facts["matrix"])}
<h2 id="audit">Audit trail</h2>
{audit_section(audit)}
<h2 id="backups">Backups per policy</h2>
{policies}
<h2 id="drills">Restore drills</h2>
{drill_section(facts["drills"])}
<h2 id="failovers">Failovers</h2>
{failover_section(facts["failovers"], facts["generated"])}
<h2 id="access">Access review</h2>
{access_section(facts["access"])}
<h2 id="restores">Restores</h2>
{"".join(restore_section(r) for r in facts["restores"]) or "<p>No Restores.</p>"}
<p class="meta">End of report. Generated {generated}.</p>
</body></html>
"""


def restore_page(record: dict, generated: datetime) -> str:
    """One Restore's record as a page of its own (``lifeline report --restore NS/NAME``)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Restore {esc(record['namespace'])}/{esc(record['name'])}: audit record</title>
<style>{CSS}</style></head>
<body>
<h1>Restore audit record</h1>
<p class="meta">Generated {when(generated)} by Lifeline from the Restore's status (identities from the API server,
sealed by the admission webhook).</p>
{restore_section(record).replace('class="restore"', 'class="restore-alone"')}
<p class="meta">End of record.</p>
</body></html>
"""
