"""Small steps several controllers take the same way, kept in one place so they cannot drift apart."""
from __future__ import annotations

import asyncio
import copy

from lifeline.kube import KubeError


async def stop_ticker(task: asyncio.Task | None) -> None:
    """Cancel a controller's timer task at operator cleanup and wait until it has ended."""
    if task is not None:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down: its end is all we want
            pass


async def replace_current(kube, api_version: str, plural: str, namespace: str, name: str, manifest: dict,
                          current: dict) -> str:
    """Replace the object with ``manifest`` at ``current``'s resourceVersion (a 409 if it changed since);
    the resourceVersion the write was made against."""
    body = copy.deepcopy(manifest)
    body["metadata"]["resourceVersion"] = current["resourceVersion"]
    await kube.replace_object(api_version, plural, namespace, name, body)
    return current["resourceVersion"]


async def delete_owned(kube, api_version: str, plural: str, kind: str, namespace: str, leftovers: dict,
                       uid: str, errors: list[str]) -> None:
    """Delete the ``leftovers`` (name -> fact with ``owners``) that ``uid`` owns; failures go to ``errors``."""
    for name, current in leftovers.items():
        if uid in current["owners"]:
            try:
                await kube.delete_object(api_version, plural, namespace, name)
            except KubeError as exc:
                errors.append(f"{kind} {name}: {exc}")
