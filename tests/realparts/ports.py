"""Free ports, waiting until a server answers, and child servers that die with us: for tests.

One implementation, in :mod:`lifeline.devstack.children` (``lifeline dev up`` uses it too);
this module re-exports it under the names the tests import.
"""
from lifeline.devstack.children import ChildServer, NotReady, free_port, wait_for

__all__ = ["ChildServer", "NotReady", "free_port", "wait_for"]
