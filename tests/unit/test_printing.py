"""`kubectl get`-style tables from the CRD's printer columns."""
from datetime import datetime, timezone

from lifeline.api import BY_KIND
from lifeline.printing import lookup, table

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
POLICY = {
    "metadata": {"name": "pacs-images", "namespace": "hospital", "creationTimestamp": "2026-11-23T11:58:30Z"},
    "spec": {"tier": "B"},
    "status": {
        "currentRPOSeconds": 42,
        "lastSuccessfulBackupTime": "2026-11-20T08:00:00Z",
        "conditions": [
            {"type": "RPOMet", "status": "False"},
            {"type": "Ready", "status": "True"},
        ],
    },
}


def test_lookup_follows_dotted_paths_and_condition_filters():
    assert lookup(POLICY, ".spec.tier") == "B"
    assert lookup(POLICY, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert lookup(POLICY, '.status.conditions[?(@.type=="Missing")].status') is None
    assert lookup(POLICY, ".status.lastBackup.outcome") is None


def test_table_shows_the_columns_kubectl_would():
    text = table(BY_KIND["BackupPolicy"], [POLICY], now=NOW)
    header, row = text.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "TIER", "LAST", "SUCCESS", "RPO", "READY", "AGE"]
    assert row.split() == ["hospital", "pacs-images", "B", "3d4h", "42", "True", "1m30s"]


def test_wide_adds_the_priority_columns():
    assert "POINTS" not in table(BY_KIND["BackupPolicy"], [POLICY], now=NOW)
    assert "POINTS" in table(BY_KIND["BackupPolicy"], [POLICY], now=NOW, wide=True)
