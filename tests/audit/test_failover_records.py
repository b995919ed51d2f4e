"""Failover and failback transitions (as the state machine announces them in Events) become audit records."""
from __future__ import annotations

from lifeline.failover.machine import Event
from lifeline.failover.runner import audit_transitions
from lifeline.kube import ObjectRef


def test_transitions_are_recorded_started_succeeded_failed(audit_url, chained):
    ref = ObjectRef("dr.lifeline.io/v1alpha1", "FailoverPlan", "hospital", "icu-monitoring")
    audit_transitions(ref, [Event("Warning", "SiteDegraded", "site site-a: 2 checks failing"),
                            Event("Warning", "FailingOver", "failover from site-a to site-b: breach")],
                      "2026-11-23T10:00:00Z")
    audit_transitions(ref, [Event("Normal", "FailoverComplete", "site site-b healthy; achieved RTO 212.0s")],
                      "2026-11-23T10:03:32Z")
    audit_transitions(ref, [Event("Normal", "FailingBack", "failback from site-b to site-a: requested"),
                            Event("Warning", "SwitchoverAborted", "site site-b cannot be reached")],
                      "2026-11-24T09:00:00Z")
    from .conftest import store_of

    records = [(r["action"], r["outcome"], r["details"]["reason"], r["time"]) for r in store_of(audit_url).records()]
    assert records == [
        ("failover", "started", "FailingOver", "2026-11-23T10:00:00+00:00"),
        ("failover", "succeeded", "FailoverComplete", "2026-11-23T10:03:32+00:00"),
        ("failback", "started", "FailingBack", "2026-11-24T09:00:00+00:00"),
        ("failover", "failed", "SwitchoverAborted", "2026-11-24T09:00:00+00:00"),
    ]
    first = next(store_of(audit_url).records())
    assert first["subject"] == {"kind": "FailoverPlan", "namespace": "hospital", "name": "icu-monitoring"}
