"""The operator's Prometheus metrics, in one registry so tests can read them cleanly."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from lifeline import __version__


class OperatorMetrics:
    """Metrics of one operator instance (one registry each, so two in a test do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        info = Info("lifeline_build", "Version of the running Lifeline operator.", registry=self.registry)
        info.info({"version": __version__})
        self.reconciles = Counter(
            "lifeline_reconciles",
            "Reconciles handled, by kind and result (written, unchanged, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.spec_valid = Gauge(
            "lifeline_spec_valid",
            "1 when the object's spec passes validation, 0 when it does not.",
            ["kind", "namespace", "name"],
            registry=self.registry,
        )

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop the series of a deleted object so dashboards do not show ghosts."""
        try:
            self.spec_valid.remove(kind, namespace, name)
        except KeyError:
            pass
