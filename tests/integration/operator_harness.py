"""The operator inside a test: its metrics at hand, and a poll for what causes no API write."""
from __future__ import annotations

from lifeline.devstack.operator_thread import until
from lifeline.runtime import Context

__all__ = ["metric", "until"]


def metric(ctx: Context, sample: str, **labels) -> float:
    """A sample's value from the operator's own metrics registry (0 when absent)."""
    return ctx.metrics.registry.get_sample_value(sample, labels) or 0.0
