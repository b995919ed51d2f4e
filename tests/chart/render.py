"""Render the Helm chart with the real helm binary, for the chart and alert tests."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "lifeline"
NAMESPACE = "lifeline-system"


def helm_template(helm: Path, *args: str) -> subprocess.CompletedProcess:
    """`helm template lifeline charts/lifeline` with extra args; never raises."""
    cmd = [str(helm), "template", "lifeline", str(CHART), "--namespace", NAMESPACE, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def sets(*values: str) -> list[str]:
    out: list[str] = []
    for v in values:
        out += ["--set", v]
    return out


def render(helm: Path, *values: str, extra: tuple[str, ...] = ()) -> list[dict]:
    """The rendered objects for ``--set`` values (and extra helm args such as --api-versions)."""
    return [d for d in yaml.safe_load_all(_rendered(helm, (*sets(*values), *extra))) if d]


@functools.lru_cache(maxsize=None)
def _rendered(helm: Path, args: tuple[str, ...]) -> str:
    """helm is slow to start (about a second): each distinct rendering runs once per session."""
    result = helm_template(helm, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def rule_set(rules: list[dict]) -> set[tuple[str, str, str]]:
    """RBAC rules flattened to (group, resource, verb)."""
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", [])
            for r in rule.get("resources", []) for v in rule["verbs"]}
