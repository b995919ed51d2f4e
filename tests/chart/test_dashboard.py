"""The Grafana dashboard: loadable JSON, shipped by the chart with the sidecar's label, and every
query uses only metrics the operator exports (read from a live OperatorMetrics registry)."""
from __future__ import annotations

import json
import re

from lifeline.observability.metrics import OperatorMetrics

from .render import CHART, one, render

DASHBOARD = CHART / "files" / "dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "info": ("_info",), "gauge": ("",)}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def exported_names() -> set[str]:
    """Every sample name the operator's registry can expose (counters as _total, histograms as _bucket, ...)."""
    names = set()
    for family in OperatorMetrics().registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small tokenizer, enough for our queries)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)                             # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                            # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    expr = re.sub(r"\$\w+", "", expr)                                  # Grafana variables
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word, rest = match.group(0), expr[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue  # a function or an operator
        if re.fullmatch(r"\d*e\d+", word):
            continue
        names.add(word)
    return names


def queries(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            # label_values(metric, label): the metric is the query
            out.append((f"variable {var['name']}", re.sub(r"label_values\((.*),\s*\w+\)", r"\1", var["definition"])))
    for note in dashboard["annotations"]["list"]:
        out.append((f"annotation {note['name']}", note["expr"]))
    return out


def test_the_tokenizer_finds_metric_names():
    assert metric_names('sum by (le, namespace) (rate(a_bucket{x=~"$ns"}[$__rate_interval])) / b') == {"a_bucket", "b"}
    assert metric_names('time() - max by (p) (c_seconds) > 1e3 unless d == 1') == {"c_seconds", "d"}


def test_every_query_uses_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    used = {}
    for title, expr in queries(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{title}: {sorted(unknown)} not exported by the operator (metrics.py)"
        for name in names:
            used.setdefault(name, title)
    # what the issue asks the dashboard to show
    assert {"lifeline_rpo_seconds", "lifeline_rpo_target_seconds", "lifeline_backup_failures_total",
            "lifeline_backup_bytes_total", "lifeline_drill_duration_seconds", "lifeline_drill_rto_target_seconds",
            "lifeline_failover_phase", "lifeline_failover_transitions_total"} <= set(used)


def test_panels_have_titles_ids_and_a_layout():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["title"] and 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"


def test_chart_ships_it_for_the_grafana_sidecar(helm_bin):
    config = one(render(helm_bin), "ConfigMap", "lifeline-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["lifeline.json"]) == json.loads(DASHBOARD.read_text())
    custom = one(render(helm_bin, "dashboard.label=dashboards", "dashboard.labelValue=lifeline",
                        "dashboard.namespace=monitoring"), "ConfigMap", "lifeline-dashboard")
    assert custom["metadata"]["labels"]["dashboards"] == "lifeline"
    assert custom["metadata"]["namespace"] == "monitoring"
