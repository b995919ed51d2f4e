"""`lifeline demo` (what `make demo` runs) shows the status the operator really wrote."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_real_status_and_leaves_its_state(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lifeline.cli", "demo", "--dir", str(tmp_path / "demo")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in (ROOT / "examples").glob("*.yaml")]
    for name in names:
        row = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
        assert row is not None, f"{name} missing from the demo's tables:\n{text}"
        assert " True " in row, row
    typo = next(line for line in text.splitlines() if line.startswith("lab-results-typo "))
    assert " False " in typo
    assert "spec.tier: Input should be 'A', 'B' or 'C' (got 'AA')" in text

    # what was printed is what the API holds: the dump has the same status
    stored = json.loads((tmp_path / "demo" / "objects.json").read_text())
    policy = next(o for o in stored["BackupPolicy"] if o["metadata"]["name"] == "lab-results-typo")
    ready = next(c for c in policy["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert (tmp_path / "demo" / "kubeconfig").exists()

    # the DR loop: two real backups recorded as RecoveryPoints, a failover with a measured RTO
    assert "backup     2 recovery points (full, incremental)" in text and "ok=True" in text
    points = [p for p in stored["RecoveryPoint"] if p["spec"]["policyName"] == "icu-trends"]
    assert sorted(p["spec"]["type"] for p in points) == ["full", "incremental"]
    summary = next(line for line in text.splitlines() if line.startswith("failover   "))
    figures = dict(part.split("=") for part in summary.split()[1:] if "=" in part)
    figures = {k.rstrip(","): v.rstrip(",") for k, v in figures.items()}
    assert float(figures["achieved_rto_seconds"]) >= float(figures["breach_window_seconds"])
    assert figures["fenced_on_return"] == "True"
    assert "Traceback" not in out.stderr
