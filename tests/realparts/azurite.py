"""Azurite, Microsoft's Azure Storage emulator (the npm package, unpacked into .tools/node by
scripts/install-tools.py), serving Blob Storage on 127.0.0.1 for the azure:// backend's tests."""
from __future__ import annotations

import socket
from pathlib import Path

from lifeline.devstack.children import ChildServer, free_port, wait_for

from .scratch_server import ScratchServer
from .tools import repo_root

ACCOUNT = "devstoreaccount1"  # Azurite's well-known development account and key
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def binary() -> Path | None:
    found = repo_root() / ".tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
    return found if found.exists() else None


class Azurite(ScratchServer):
    prefix = "azurite-"
    # Azurite (3.37) does not exit on SIGTERM or SIGINT once it has served a request: without this every
    # session that started it waited 10 s for the SIGKILL. Its data is thrown away anyway.
    stop_timeout = 1.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def env(self) -> dict[str, str]:
        """What the agent reads to reach it: an account name, its key and the endpoint."""
        return {"AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": KEY,
                "AZURE_STORAGE_ENDPOINT": self.endpoint}

    def make_container(self, name: str) -> str:
        from azure.storage.blob import BlobServiceClient

        conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.endpoint}")
        BlobServiceClient.from_connection_string(conn).create_container(name)
        return name

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def __enter__(self) -> "Azurite":
        where = self._scratch()
        self.port = free_port()
        self._child = ChildServer([str(binary()), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                                   "--location", str(where), "--skipApiVersionCheck", "--silent"],
                                  log_path=where / "azurite.log", scratch=where)
        wait_for(self._answers, 30, "Azurite", interval=0.1, abort=self._child.exited, detail=self._child.log_tail)
        return self
