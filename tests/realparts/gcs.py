"""fake-gcs-server, a Google Cloud Storage emulator, serving on 127.0.0.1 for the gs:// backend's tests.

The binary is built from Go modules into .tools/bin by scripts/build-fake-gcs.sh: upstream
fsouza/fake-gcs-server (pinned in tools/gcs/go.mod) with the XML-API uploads that obstore's GCS
client writes with and upstream lacks (tools/gcs/main.go). Objects are kept in memory.

Upstream checks no credentials: the agent reaches it with a service-account file that says
``disable_oauth`` and carries the emulator's URL (``gcs_base_url``), object_store's way to an emulator.
``FakeGCS(authenticate=True)`` makes the server accept only bearer tokens signed by one service
account's RSA key (the self-signed JWTs object_store makes from a key file), so a wrong key is refused.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

from lifeline.devstack.children import ChildServer, start_on_free_port

from .scratch_server import ScratchServer
from .tools import repo_root

PROJECT = "lifeline-test"
CLIENT_EMAIL = f"lifeline-agent@{PROJECT}.iam.gserviceaccount.com"


def binary() -> Path | None:
    found = repo_root() / ".tools" / "bin" / "fake-gcs-server"
    return found if found.is_file() else None


def new_private_key() -> bytes:
    """A fresh RSA private key, PEM (PKCS#8), as Google's service-account key files hold them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def self_signed_jwt(private_pem: bytes) -> str:
    """What object_store sends for a service-account key: an RS256 JWT the account signs itself."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    now = int(time.time())
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "test-key"}).encode())
    body = _b64(json.dumps({"iss": CLIENT_EMAIL, "sub": CLIENT_EMAIL, "iat": now, "exp": now + 3600,
                            "scope": "https://www.googleapis.com/auth/cloud-platform"}).encode())
    key = serialization.load_pem_private_key(private_pem, password=None)
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(sig)}"


class FakeGCS(ScratchServer):
    prefix = "fake-gcs-"

    def __init__(self, *, authenticate: bool = False):
        super().__init__()
        self.private_key = new_private_key() if authenticate else None

    def key_file(self, name: str = "service-account.json", *, private_key: bytes | None = None) -> Path:
        """A service-account key file pointing at this server (``gcs_base_url``). Without a private
        key (and on a server that checks none) it says ``disable_oauth``: requests carry no token."""
        private_key = private_key if private_key is not None else self.private_key
        doc = {"type": "service_account", "project_id": PROJECT, "client_email": CLIENT_EMAIL,
               "client_id": "100000000000000000001", "gcs_base_url": self.endpoint}
        if private_key is None:
            doc.update(private_key_id="", private_key="", disable_oauth=True)
        else:
            doc.update(private_key_id="test-key", private_key=private_key.decode())
        path = self.where / name
        path.write_text(json.dumps(doc, indent=1))
        path.chmod(0o600)
        return path

    def env(self) -> dict[str, str]:
        """What the agent reads to reach it: GOOGLE_APPLICATION_CREDENTIALS, the usual variable."""
        return {"GOOGLE_APPLICATION_CREDENTIALS": str(self.key_file())}

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.endpoint + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if self.private_key is not None:
            req.add_header("Authorization", "Bearer " + self_signed_jwt(self.private_key))
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def make_bucket(self, name: str) -> str:
        self._call("POST", f"/storage/v1/b?project={PROJECT}", {"name": name})
        return name

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name in ``bucket`` (under ``prefix``), through the JSON API."""
        names: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token} if token else {"prefix": prefix})
            page = self._call("GET", f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o?{query}")
            names += [o["name"] for o in page.get("items", [])]
            token = page.get("nextPageToken", "")
            if not token:
                return sorted(names)

    def _answers(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/_internal/healthcheck", timeout=2) as resp:
            return resp.status == 200

    def _launch(self, port: int) -> tuple[ChildServer, str]:
        self.port = port
        argv = [str(binary()), "-host", "127.0.0.1", "-port", str(port)]
        if self.private_key is not None:
            public = self.where / "service-account-public.pem"
            public.write_bytes(_public_pem(self.private_key))
            argv += ["-service-account-public-key", str(public)]
        child = ChildServer(argv, log_path=self.where / f"fake-gcs-{port}.log", scratch=self.where)
        return child, f"fake-gcs-server on {self.endpoint}"

    def __enter__(self) -> "FakeGCS":
        self._scratch()
        self._child = start_on_free_port(self._launch, self._answers, 30)
        return self
