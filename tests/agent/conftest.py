"""Agent test fixtures (defined in helpers.py so they also load with -p tests.agent.helpers)."""
from .helpers import repo, small_file_writers  # noqa: F401
