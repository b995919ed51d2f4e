"""A small asyncio HTTP client for the Kubernetes API, for the process kubelet.

The kubelet needs only get/create/patch/delete and watches, authenticated by the node's client
certificate from its kubeconfig; the ``kubernetes`` client's thread pool would be a heavier way to
the same few calls. Errors keep the API server's status code and message.
"""
from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import yaml

JSON = "application/json"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


def ssl_from_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext, dict]:
    """The server URL, an SSL context with the current user's certificate, and extra headers."""
    config = yaml.safe_load(Path(path).read_text())
    current = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ctx = ssl.create_default_context(cafile=cluster.get("certificate-authority"))
    headers = {}
    if user.get("client-certificate"):
        ctx.load_cert_chain(user["client-certificate"], user["client-key"])
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    return cluster["server"].rstrip("/"), ctx, headers


class KubeHTTP:
    def __init__(self, kubeconfig: Path):
        self.url, self._ssl, self._headers = ssl_from_kubeconfig(kubeconfig)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl),
                                                  headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body=None, *, content_type: str = JSON,
                      params: dict | None = None, missing_ok: bool = False):
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.url + path, data=data, params=params,
                                        headers={"Content-Type": content_type, "Accept": JSON},
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            if resp.status == 404 and missing_ok:
                return None
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise ApiError(resp.status, message)
            return json.loads(text) if text else {}

    async def watch(self, path: str, params: dict) -> AsyncIterator[dict]:
        """Events of one watch request until the server ends it (the caller re-lists and re-watches)."""
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        async with self.session.get(self.url + path, params=query,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status >= 400:
                raise ApiError(resp.status, await resp.text())
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


__all__ = ["ApiError", "JSON", "KubeHTTP", "MERGE", "STRATEGIC", "ssl_from_kubeconfig"]
