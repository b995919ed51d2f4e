"""The chart's alert rules, as rendered into the PrometheusRule, checked and unit-tested by promtool.

The rules are taken from `helm template` output (not from files/alerts.yaml directly), so
promtool tests exactly what a cluster would get. Each *.test.yaml here is a promtool
unit-test file whose `rule_files` is pointed at the rendered rules.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.render import ROOT, one, render

HERE = Path(__file__).resolve().parent
TEST_FILES = sorted(HERE.glob("*.test.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def rendered_groups(helm_bin) -> list[dict]:
    rule = one(render(helm_bin, "prometheusRule.enabled=true"), "PrometheusRule")
    return rule["spec"]["groups"]


def alerts_of(groups: list[dict]) -> dict[str, dict]:
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


@pytest.fixture(scope="module")
def rules_file(helm_bin, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("alerts") / "lifeline-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rendered_groups(helm_bin)}, sort_keys=False))
    return path


def test_promtool_accepts_the_rendered_rules(promtool_bin, rules_file):
    result = subprocess.run([str(promtool_bin), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool_bin, rules_file, test_file, tmp_path):
    spec = yaml.safe_load(test_file.read_text())
    spec["rule_files"] = [str(rules_file)]
    copy = tmp_path / test_file.name
    copy.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run([str(promtool_bin), "test", "rules", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing(helm_bin):
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(alerts_of(rendered_groups(helm_bin)))
    assert alerts - fires == set(), "alerts with no test that makes them fire"
    assert alerts - silent == set(), "alerts with no test that shows them quiet"


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_every_alert_links_to_its_runbook_section(helm_bin):
    anchors = {github_anchor(m) for m in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.M)}
    for name, rule in alerts_of(rendered_groups(helm_bin)).items():
        url = rule["annotations"]["runbook_url"]
        assert url.split("#")[0].endswith("docs/runbooks.md"), url
        assert url.split("#")[1] in anchors, f"{name}: no section '{url.split('#')[1]}' in docs/runbooks.md"
        assert rule["labels"]["severity"] in {"critical", "warning"}, name


def test_alert_values_reach_the_rules(helm_bin):
    rule = one(render(helm_bin, "prometheusRule.enabled=true", "prometheusRule.job=dr-operator",
                      "prometheusRule.failoverStuckAfter=30m", "prometheusRule.additionalLabels.team=platform",
                      "prometheusRule.labels.release=kube-prometheus-stack"), "PrometheusRule")
    alerts = alerts_of(rule["spec"]["groups"])
    assert alerts["LifelineOperatorDown"]["expr"] == 'absent(up{job="dr-operator"} == 1)'
    assert alerts["LifelineFailoverStuck"]["for"] == "30m"
    assert all(a["labels"]["team"] == "platform" for a in alerts.values())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
