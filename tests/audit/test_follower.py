"""The operator follows the audit log for what others write there (the CLI's rotations and shreds),
counting from when it started, never its own records twice."""
from __future__ import annotations

from lifeline.audit.store import open_store
from lifeline.observability.audit_follower import AuditFollower
from lifeline.observability.metrics import OperatorMetrics


def append(store, action: str, outcome: str, namespace: str = "his") -> None:
    store.append({"time": "2026-12-02T03:00:00+00:00", "action": action, "actor": "ops@hospital", "outcome": outcome,
                  "subject": {"kind": "Key", "namespace": namespace, "name": "k"}, "details": {}})


def test_records_of_other_writers_are_counted_from_now_on(tmp_path):
    url = f"file://{tmp_path}/audit"
    operator, cli = open_store(url, writer="operator/1"), open_store(url, writer="laptop/42")
    append(cli, "key-shred", "succeeded")  # before the operator started: history, not news
    metrics = OperatorMetrics()
    follower = AuditFollower(open_store(url, create=False), metrics, own_writer="operator/1")
    assert follower.poll() == 0
    append(cli, "key-rotation", "failed", namespace="")
    append(operator, "restore", "started")  # its own: counted where it is written, not here
    append(cli, "key-shred", "succeeded", namespace="lis")
    assert follower.poll() == 2 and follower.poll() == 0
    sample = metrics.registry.get_sample_value
    assert sample("lifeline_audited_elsewhere_total", {"action": "key-rotation", "outcome": "failed",
                                                        "namespace": ""}) == 1
    assert sample("lifeline_audited_elsewhere_total", {"action": "key-shred", "outcome": "succeeded",
                                                        "namespace": "lis"}) == 1
    assert sample("lifeline_audited_elsewhere_total", {"action": "key-shred", "outcome": "succeeded",
                                                        "namespace": "his"}) is None
    assert sample("lifeline_audited_elsewhere_total", {"action": "restore", "outcome": "started",
                                                        "namespace": "his"}) is None
