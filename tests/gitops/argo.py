"""Run the Argo CD health checks in deploy/argocd/health/ under a real Lua 5.1 (what Argo CD's
gopher-lua speaks), the way Argo CD calls them: the object as the global ``obj``, the
returned table's ``status`` and ``message`` read back."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("CI", "").lower() == "true":  # CI never goes green by skipping
    import lupa.lua51 as lua51
else:
    lua51 = pytest.importorskip("lupa.lua51", reason="the Lua runtime is PyPI's lupa (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health"
KINDS = ("BackupPolicy", "RecoveryPoint", "RestoreDrill", "Restore", "FailoverPlan")


def script(kind: str) -> str:
    return (HEALTH / f"{kind.lower()}.lua").read_text()


def _to_lua(runtime, value):
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def health(kind: str, obj: dict) -> dict:
    """{'status': ..., 'message': ...} as Argo CD would show it for ``obj``."""
    runtime = lua51.LuaRuntime()
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(script(kind))
    if result is None:
        raise AssertionError(f"{kind}'s health check returned nothing")
    return {k: result[k] for k in ("status", "message") if result[k] is not None}
