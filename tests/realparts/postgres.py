"""A real PostgreSQL server on a loopback port (Debian's `postgresql`).

The server itself lives in :mod:`lifeline.devstack.postgres` (``lifeline dev up`` starts the
hospital's "HIS" database with it); tests import it from here.
"""

from __future__ import annotations

from lifeline.devstack.postgres import MISSING, PG_ROOT, PostgresServer, find_bin_dir

__all__ = ["MISSING", "PG_ROOT", "PostgresServer", "find_bin_dir"]
