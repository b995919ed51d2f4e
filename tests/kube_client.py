"""The kubernetes client as tests use it: called from a thread so the emulator's loop keeps serving."""
from __future__ import annotations

import asyncio
from pathlib import Path

import kubernetes

from lifeline.api import BY_KIND

NS = "hospital"


class Api:
    """The kubernetes client, called from a thread so the emulator's loop keeps serving."""

    def __init__(self, kubeconfig: Path):
        self.client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)

    async def create(self, body: dict, namespace: str = NS) -> dict:
        info = BY_KIND[body["kind"]]
        return await asyncio.to_thread(self.custom.create_namespaced_custom_object, info.group, info.version,
                                       namespace, info.plural, body)

    async def patch(self, kind: str, name: str, patch: dict, namespace: str = NS) -> dict:
        info = BY_KIND[kind]
        return await asyncio.to_thread(self.custom.patch_namespaced_custom_object, info.group, info.version,
                                       namespace, info.plural, name, patch)

    async def delete(self, kind: str, name: str, namespace: str = NS) -> None:
        info = BY_KIND[kind]
        await asyncio.to_thread(self.custom.delete_namespaced_custom_object, info.group, info.version,
                                namespace, info.plural, name)

    async def events(self, name: str | None = None, namespace: str = NS) -> list:
        items = (await asyncio.to_thread(self.core.list_namespaced_event, namespace)).items
        return [e for e in items if name is None or e.involved_object.name == name]
