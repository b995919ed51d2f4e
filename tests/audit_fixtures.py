"""The audit records this test process writes, as a list (an audit sink for the test's duration)."""
from __future__ import annotations

import pytest

from lifeline.observability import audit


@pytest.fixture
def audit_records() -> list[dict]:
    got: list[dict] = []
    audit.add_sink(got.append)
    yield got
    audit.remove_sink(got.append)
