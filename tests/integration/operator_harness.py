"""The operator inside a test: a frozen clock by default, and its metrics at hand."""
from __future__ import annotations

from datetime import datetime, timezone

from lifeline.clock import FrozenClock
from lifeline.devstack.operator_thread import until
from lifeline.runtime import Context

START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc)

__all__ = ["START", "metric", "until"]


def metric(ctx: Context, sample: str, **labels) -> float:
    """A sample's value from the operator's own metrics registry (0 when absent)."""
    return ctx.metrics.registry.get_sample_value(sample, labels) or 0.0
