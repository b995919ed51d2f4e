"""A real OpenBao (Vault-compatible) dev server on a loopback port.

The server itself lives in :mod:`lifeline.devstack.openbao` (``lifeline dev up`` starts it too);
tests import it from here.
"""

from __future__ import annotations

from lifeline.devstack.openbao import OpenBaoServer, prepare_keys

__all__ = ["OpenBaoServer", "prepare_keys"]
