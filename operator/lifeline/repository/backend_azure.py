"""``azure://container/prefix``: Azure Blob Storage, on obstore.

Credentials come from the environment, as Azure's own tools read them: an account key
(``AZURE_STORAGE_ACCOUNT_NAME`` + ``AZURE_STORAGE_ACCOUNT_KEY``), a SAS token
(``AZURE_STORAGE_SAS_TOKEN``), a service principal (``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``/
``AZURE_TENANT_ID``), or workload identity (``AZURE_FEDERATED_TOKEN_FILE`` with the client and tenant
ids, as the AKS webhook injects them). ``AZURE_STORAGE_ENDPOINT`` points at another endpoint
(Azurite, Azure Stack); ``AZURE_STORAGE_USE_EMULATOR=true`` is Azurite's defaults.
"""
from __future__ import annotations

from lifeline.errors import UsageError

from .backend_object import ObjectStoreBackend, endpoint_of, env

# Environment variable -> obstore's Azure config key
ENV_CONFIG = {
    "AZURE_STORAGE_ACCOUNT_NAME": "account_name", "AZURE_STORAGE_ACCOUNT_KEY": "account_key",
    "AZURE_STORAGE_SAS_TOKEN": "sas_key", "AZURE_CLIENT_ID": "client_id", "AZURE_CLIENT_SECRET": "client_secret",
    "AZURE_TENANT_ID": "tenant_id", "AZURE_FEDERATED_TOKEN_FILE": "federated_token_file",
}


class AzureBackend(ObjectStoreBackend):
    service = "Azure Blob Storage"
    scheme = "azure"
    container_word = "container"
    credentials_hint = "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN"
    default_endpoint = "Azure"

    def __init__(self, container: str, prefix: str):
        from obstore.store import AzureStore

        config = {key: value for name, key in ENV_CONFIG.items() if (value := env(name))}
        client_options: dict = {}
        endpoint = env("AZURE_STORAGE_ENDPOINT")
        if env("AZURE_STORAGE_USE_EMULATOR") in ("1", "true", "True"):
            config["use_emulator"] = True
            client_options["allow_http"] = True
        if endpoint:
            config["endpoint"], http = endpoint_of(endpoint, "Azure Blob Storage", None, "LIFELINE_AZURE_ALLOW_HTTP")
            if http:
                client_options["allow_http"] = True
        if "account_name" not in config and not config.get("use_emulator"):
            raise UsageError(f"azure://{container}: set AZURE_STORAGE_ACCOUNT_NAME (and a credential: "
                             "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN or workload identity)")
        self._open(container, prefix, endpoint, lambda: AzureStore(container, prefix=prefix or None, config=config,
                                                                   client_options=client_options or None))
