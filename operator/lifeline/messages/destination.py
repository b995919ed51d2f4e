"""One destination's child agent, seen from the Job that runs it: the environment it gets from its
:class:`~lifeline.messages.DestinationPlan`, and the words of its stderr that say why it failed.

Here, beside the plan, so that every Job running one child per destination (backup, restore,
shred) reads a plan's destination and reports a child's failure the same way.
"""
from __future__ import annotations

import re

from .plans import PLAN_ENV, DestinationPlan

# Another destination's credentials, never handed to this one's agent (LIFELINE_S3_ALLOW_HTTP goes too, as before).
_OTHERS = re.compile(r"^(LIFELINE_S3_|LIFELINE_AZURE_\d+_)")
# What the agent's object stores read as credentials or endpoint: only a destination's own reach its agent.
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# <credentialsEnv><suffix> -> the variable Azure's tools (and the azure:// backend) read
AZURE_VARS = {"ACCOUNT_NAME": "AZURE_STORAGE_ACCOUNT_NAME", "ACCOUNT_KEY": "AZURE_STORAGE_ACCOUNT_KEY",
              "SAS_TOKEN": "AZURE_STORAGE_SAS_TOKEN", "CLIENT_ID": "AZURE_CLIENT_ID",
              "CLIENT_SECRET": "AZURE_CLIENT_SECRET", "TENANT_ID": "AZURE_TENANT_ID"}
# kept when the Secret has no client: what the AKS workload identity webhook injects
_AZURE_KEPT = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID")
GCS_VARS = ("GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_BASE_URL")


def destination_env(dest: DestinationPlan, base: dict) -> dict:
    """The environment of one destination's agent: only its own credentials (S3, Azure or a GCS key
    file, by the repository's scheme), and no plan."""
    env = {k: v for k, v in base.items() if not _OTHERS.match(k) and k != PLAN_ENV}
    for k in AWS_VARS:
        env.pop(k, None)
    scheme = dest.scheme
    if scheme == "azure":
        for k in AZURE_VARS.values():
            if k not in _AZURE_KEPT:
                env.pop(k, None)
        env.pop("AZURE_STORAGE_ENDPOINT", None)
        for suffix, k in AZURE_VARS.items():
            if dest.credentials_env and base.get(dest.credentials_env + suffix):
                env[k] = base[dest.credentials_env + suffix]
        if dest.account:
            env["AZURE_STORAGE_ACCOUNT_NAME"] = dest.account
        if dest.endpoint:
            env["AZURE_STORAGE_ENDPOINT"] = dest.endpoint
        return env
    if scheme == "gs":
        for k in GCS_VARS:
            env.pop(k, None)
        if dest.credentials_file:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = dest.credentials_file
        if dest.endpoint:
            env["GOOGLE_BASE_URL"] = dest.endpoint
        return env
    if dest.credentials_env:
        env["AWS_ACCESS_KEY_ID"] = base.get(dest.credentials_env + "ACCESS_KEY_ID", "")
        env["AWS_SECRET_ACCESS_KEY"] = base.get(dest.credentials_env + "SECRET_ACCESS_KEY", "")
    if dest.endpoint:
        env["AWS_ENDPOINT_URL"] = dest.endpoint
    if dest.region:
        env["AWS_REGION"] = dest.region
    return env


def stderr_tail(text: str, limit: int = 300) -> str:
    """The useful end of an agent's stderr: its last error line(s), trimmed."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()] or lines
    out = " ".join(errors[-2:])
    prefix = "lifeline agent "
    out = out.replace(prefix + "backup: error: ", "").replace(prefix + "prune: error: ", "")
    out = out.replace(prefix + "init: error: ", "").replace(prefix + "repack: error: ", "")
    return out if len(out) <= limit else out[: limit - 1] + "…"
