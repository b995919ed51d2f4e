"""Pictures for the report, as inline SVG: nothing fetched from a network, the page stays one file.

Management reads a chart faster than a table: how old the data got between backups against the
RPO, how long each drill took against the RTO, how big the backups are, when failovers happened.
Every chart also says its point in words (``<title>`` on each bar, a caption), so it survives
printing in black and white and a screen reader.
"""
from __future__ import annotations

import html
from datetime import datetime

WIDTH, HEIGHT = 560, 150
LEFT, BOTTOM, TOP = 64, 22, 12
OK, BAD, NEUTRAL, LINE = "#2e7d4f", "#c62828", "#5b7bb2", "#1d2430"


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def bars(values: list[float | None], labels: list[str], *, target: float | None = None, fmt=str,
         caption: str = "", higher_is_worse: bool = True) -> str:
    """A bar per value (oldest left), a dashed line at ``target``; bars over it are red."""
    shown = [v for v in values if v is not None]
    if not shown:
        return ""
    top = max(shown + ([target] if target else [])) * 1.1 or 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / len(values)
    width = max(2.0, step * 0.7)
    parts = [f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}" stroke="{LINE}"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end" font-size="10">{_esc(fmt(top / 1.1))}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="10">0</text>']
    for i, (value, label) in enumerate(zip(values, labels)):
        if value is None:
            continue
        h = plot_h * value / top
        over = target is not None and ((value > target) if higher_is_worse else (value < target))
        x = LEFT + i * step + (step - width) / 2
        parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                     f'fill="{BAD if over else (OK if target is not None else NEUTRAL)}">'
                     f'<title>{_esc(label)}: {_esc(fmt(value))}{" (over the target)" if over else ""}</title></rect>')
    if target is not None:
        y = TOP + plot_h - plot_h * target / top
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}" stroke="{LINE}" '
                     f'stroke-dasharray="5 3"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">target</text>')
    if labels:
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="10">{_esc(labels[0])}</text>')
        parts.append(f'<text x="{WIDTH - 8}" y="{HEIGHT - 6}" text-anchor="end" font-size="10">{_esc(labels[-1])}</text>')
    return _figure(parts, caption)


def timeline(events: list[tuple[datetime, str, bool | None]], *, start: datetime, end: datetime,
             caption: str = "") -> str:
    """Marks on a time axis from ``start`` to ``end``: (when, what, RTO met?)."""
    if not events or end <= start:
        return ""
    plot_w, y = WIDTH - LEFT - 8, HEIGHT // 2
    span = (end - start).total_seconds()
    parts = [f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - 8}" y2="{y}" stroke="{LINE}"/>',
             f'<text x="{LEFT}" y="{y + 24}" font-size="10">{_esc(start.strftime("%Y-%m-%d"))}</text>',
             f'<text x="{WIDTH - 8}" y="{y + 24}" text-anchor="end" font-size="10">{_esc(end.strftime("%Y-%m-%d"))}</text>']
    for moment, what, met in events:
        x = LEFT + plot_w * max(0.0, min(1.0, (moment - start).total_seconds() / span))
        colour = NEUTRAL if met is None else (OK if met else BAD)
        parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="6" fill="{colour}"><title>{_esc(moment.strftime("%Y-%m-%d %H:%M"))}'
                     f' {_esc(what)}</title></circle>')
    return _figure(parts, caption)


def _figure(parts: list[str], caption: str) -> str:
    return (f'<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_esc(caption)}">{"".join(parts)}</svg>'
            f'<figcaption>{_esc(caption)}</figcaption></figure>')
