"""``gs://bucket/prefix``: Google Cloud Storage, on obstore.

Credentials are found the way Google's own tools find them, first match wins:

1. ``GOOGLE_SERVICE_ACCOUNT_KEY``: a service account's JSON key itself (object_store's name);
2. ``GOOGLE_SERVICE_ACCOUNT`` or ``GOOGLE_SERVICE_ACCOUNT_PATH``: the path of a service account key file
   (not together with 1: obstore reads these variables too, and refuses both);
3. ``GOOGLE_APPLICATION_CREDENTIALS``: the path of a key file (a service account's, or a gcloud
   user's ``authorized_user`` file), Google's usual variable: a Kubernetes Secret mounted in the Pod;
4. gcloud's own application-default file, ``~/.config/gcloud/application_default_credentials.json``;
5. on Google Cloud (GKE with Workload Identity, a VM's service account): the metadata server. Only
   where the machine says it is a Google Compute Engine machine, or ``GCE_METADATA_HOST`` names the
   metadata server: anywhere else the agent says what to set instead of asking an address that is not there.

A key file may carry ``gcs_base_url`` (another endpoint: an emulator, a private endpoint) and, for an
emulator, ``disable_oauth``; ``GOOGLE_BASE_URL`` sets the endpoint too. Plain http is refused except
on loopback (``LIFELINE_GCS_ALLOW_HTTP=1`` for a network you trust). No key, token or secret of a
credentials file is ever put in a message: the agent reads the file to check it and names only its
path and what is wrong.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from lifeline.errors import UsageError

from .backend_object import ObjectStoreBackend, endpoint_of, env
from .errors import BackendError

HINT = "GOOGLE_APPLICATION_CREDENTIALS naming a service account key file, or Workload Identity"
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
GCLOUD_ADC = Path(".config") / "gcloud" / "application_default_credentials.json"
SECRET_FIELDS = ("private_key", "client_secret", "refresh_token")


def on_google_cloud() -> bool:
    """Whether the metadata server may be asked for credentials: google-auth's residency check (the
    DMI product name of a Compute Engine machine, GKE's nodes included), or GCE_METADATA_HOST set."""
    if env("GCE_METADATA_HOST", "GCE_METADATA_IP"):
        return True
    try:
        return Path("/sys/class/dmi/id/product_name").read_text().strip().startswith("Google")
    except OSError:
        return False


class GCSBackend(ObjectStoreBackend):
    service = "Google Cloud Storage"
    scheme = "gs"
    credentials_hint = HINT
    default_endpoint = DEFAULT_ENDPOINT

    def __init__(self, bucket: str, prefix: str):
        from obstore.store import GCSStore

        self._secrets: list[str] = []
        config, endpoint = self._credentials(bucket)
        if base := env("GOOGLE_BASE_URL"):
            endpoint = base
        client_options: dict = {}
        if endpoint:
            config["base_url"], http = endpoint_of(endpoint, "Google Cloud Storage", None, "LIFELINE_GCS_ALLOW_HTTP")
            if http:
                client_options["allow_http"] = True

        def build():
            try:
                return GCSStore(bucket, prefix=prefix or None, config=config, client_options=client_options or None)
            except Exception as exc:  # _open names the repository; the message must not carry the key
                raise ValueError(self._scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else
                                             type(exc).__name__)) from None

        self._open(bucket, prefix, endpoint, build)

    # --- credentials -------------------------------------------------------------------------------
    def _credentials(self, bucket: str) -> tuple[dict, str | None]:
        """obstore's config for the first credentials found, and the endpoint a key file names."""
        where = f"gs://{bucket}"
        # obstore reads these variables too and refuses a key and a key file together: say so first.
        if env("GOOGLE_SERVICE_ACCOUNT_KEY") and env("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH"):
            raise UsageError(f"{where}: set one of GOOGLE_SERVICE_ACCOUNT_KEY (the key) and GOOGLE_SERVICE_ACCOUNT "
                             "(the key file's path), not both")
        if key := env("GOOGLE_SERVICE_ACCOUNT_KEY"):
            self._secrets.append(key)
            doc = self._parse(key, "GOOGLE_SERVICE_ACCOUNT_KEY", where)
            return self._service_account(doc, {"service_account_key": key}, "GOOGLE_SERVICE_ACCOUNT_KEY", where)
        for name in ("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH", "GOOGLE_APPLICATION_CREDENTIALS"):
            if path := env(name):
                return self._key_file(Path(path), f"{name} ({path})", where)
        home = os.environ.get("HOME")
        if home and (Path(home) / GCLOUD_ADC).is_file():
            path = Path(home) / GCLOUD_ADC
            return self._key_file(path, f"gcloud's application-default credentials ({path})", where)
        if on_google_cloud():
            return {}, None  # object_store asks the metadata server (Workload Identity, the VM's account)
        raise UsageError(f"{where}: no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service "
                         "account key file (in Kubernetes: a Secret mounted in the agent's Pod), or run on GKE "
                         "with Workload Identity (docs/storage.md)")

    def _key_file(self, path: Path, what: str, where: str) -> tuple[dict, str | None]:
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"{where}: cannot read the credentials file named by {what}: "
                             f"{exc.strerror or type(exc).__name__}") from None
        doc = self._parse(text, what, where)
        kind = doc.get("type", "service_account")  # object_store's own key files may leave it out
        if kind == "service_account":
            return self._service_account(doc, {"service_account": str(path)}, what, where)
        if kind == "authorized_user":
            if not all(isinstance(doc.get(f), str) and doc.get(f) for f in ("client_id", "client_secret",
                                                                              "refresh_token")):
                raise UsageError(f"{where}: the authorized_user credentials in {what} lack client_id, "
                                 "client_secret or refresh_token; run `gcloud auth application-default login` again")
            return {"application_credentials": str(path)}, None
        if kind == "external_account":
            raise UsageError(f"{where}: {what} is a workload identity federation file (type external_account), "
                             "which this agent cannot use yet; on GKE use Workload Identity (no file), or a "
                             "service account key file")
        raise UsageError(f"{where}: {what} is a credentials file of type {str(kind)[:40]!r}; expected a service "
                         "account key (type service_account) or gcloud's authorized_user file")

    def _parse(self, text: str, what: str, where: str) -> dict:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise UsageError(f"{where}: {what} is not a JSON credentials file (a service account key is the JSON "
                             "file Google Cloud's console or `gcloud iam service-accounts keys create` gives)")
        self._secrets += [v for f in SECRET_FIELDS if isinstance(v := doc.get(f), str) and len(v) >= 8]
        return doc

    def _service_account(self, doc: dict, config: dict, what: str, where: str) -> tuple[dict, str | None]:
        """obstore's config for a service account key (checked first) and the endpoint it names."""
        base_url = doc.get("gcs_base_url")
        if base_url is not None and not isinstance(base_url, str):
            raise UsageError(f"{where}: gcs_base_url in {what} is not a URL")
        if doc.get("disable_oauth") is True:  # an emulator's file: no token is made or sent
            if not all(isinstance(doc.get(f), str) for f in ("private_key_id", "private_key", "client_email")):
                raise UsageError(f"{where}: {what} says disable_oauth (an emulator's key file) but lacks "
                                 "private_key_id, private_key or client_email (empty strings will do)")
            if not base_url:
                raise UsageError(f"{where}: {what} says disable_oauth, which only an emulator takes, "
                                 "but names no gcs_base_url")
            return config, base_url
        missing = [f for f in ("client_email", "private_key_id", "private_key")
                   if not isinstance(doc.get(f), str) or not doc.get(f)]
        if missing:
            raise UsageError(f"{where}: the service account key in {what} has no {', '.join(missing)}; download "
                             "a new JSON key for the service account")
        if "-----BEGIN" not in doc["private_key"] or "PRIVATE KEY-----" not in doc["private_key"]:
            raise UsageError(f"{where}: the private_key of the service account key in {what} is not a PEM "
                             "private key")
        return config, base_url

    # --- messages never carry a secret -------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[secret]")
            for line in secret.splitlines():  # a PEM key's lines, one at a time
                if len(line) >= 16 and "-----" not in line:
                    text = text.replace(line, "[secret]")
        return text

    def _err(self, exc: Exception, what: str, name: str) -> Exception:
        err = super()._err(exc, what, name)
        if isinstance(err, BackendError) and self._secrets:
            scrubbed = self._scrub(str(err))
            if scrubbed != str(err):
                return BackendError(scrubbed)
        return err


__all__ = ["GCSBackend"]
