"""Read the one object a `lifeline <area> … NAME` command is about, or say on stderr why not.

Kept in one place so every command answers a missing or forbidden object the same way: the
API server's words after the command's own name, and an exit code a script can test.
"""
from __future__ import annotations

import sys

from lifeline.kube import KubeError


async def get_named(kube, info, namespace: str, name: str, where: str, *,
                    not_found_exit: int = 2) -> tuple[dict | None, int]:
    """``(body, 0)``, or ``(None, exit code)`` with ``where: <error>`` printed: ``not_found_exit`` for a 404,
    1 otherwise. Closes ``kube`` either way (these commands read once, then print)."""
    try:
        return await kube.get(info, namespace, name), 0
    except KubeError as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return None, not_found_exit if exc.status == 404 else 1
    finally:
        kube.close()
