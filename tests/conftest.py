"""Test-wide fixtures: each area's fixtures live in their own plugin module."""

pytest_plugins = [
    "tests.realparts.fixtures",
    "tests.cluster_fixtures",
    "tests.audit_fixtures",
]
