"""Agent test fixtures (defined in helpers.py so they also load with -p tests.agent.helpers)."""
from .helpers import repo  # noqa: F401
