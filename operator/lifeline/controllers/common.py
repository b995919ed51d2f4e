"""Small steps several controllers take the same way, kept in one place so they cannot drift apart."""
from __future__ import annotations

import asyncio
import copy
import os

from lifeline.keys.refs import ALLOWED_ROLES_ENV, PINNED_ENV
from lifeline.kube import Kind, KubeError


def job_end(job: dict | None) -> str | None:
    """``"Complete"`` or ``"Failed"`` once a Job has finished (that condition is True), else None."""
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return c["type"]
    return None


async def stop_ticker(task: asyncio.Task | None) -> None:
    """Cancel a controller's timer task at operator cleanup and wait until it has ended."""
    if task is not None:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down: its end is all we want
            pass


async def replace_current(kube, res: Kind, namespace: str, name: str, manifest: dict, current: dict) -> str:
    """Replace the object with ``manifest`` at ``current``'s resourceVersion (a 409 if it changed since);
    the resourceVersion the write was made against."""
    body = copy.deepcopy(manifest)
    body["metadata"]["resourceVersion"] = current["resourceVersion"]
    await kube.replace(res, namespace, name, body)
    return current["resourceVersion"]


async def create_owned(kube, res: Kind, namespace: str, manifest: dict, uid: str) -> None:
    """Create ``manifest``; one of its name already there is ours too when ``uid`` owns it (a create the watch
    has not brought back yet), else a KubeError that says so."""
    name = manifest["metadata"]["name"]
    try:
        await kube.create(res, namespace, manifest)
    except KubeError as exc:
        if exc.status != 409:
            raise
        found = await kube.get(res, namespace, name, missing_ok=True)
        owners = [r.get("uid") for r in ((found or {}).get("metadata") or {}).get("ownerReferences") or []]
        if found is not None and uid not in owners:
            raise KubeError(f"a {res.kind} named {name} already exists and does not belong to this policy: "
                            "rename or delete it") from None


async def write_owned(kube, res: Kind, namespace: str, manifest: dict, current: dict | None, uid: str,
                      errors: list[str]) -> tuple[bool, str | None]:
    """Create ``manifest`` (``current`` None: there is none) or replace ``current`` with it: whether it was
    written, and the resourceVersion the replace was made against (None: created). A conflict is not an
    error: someone wrote in between, the watch brings that and the write is tried again then; any other
    failure goes to ``errors``."""
    name = manifest["metadata"]["name"]
    try:
        if current is None:
            await create_owned(kube, res, namespace, manifest, uid)
            return True, None
        return True, await replace_current(kube, res, namespace, name, manifest, current)
    except KubeError as exc:
        if exc.status != 409:
            errors.append(f"{res.kind} {name}: {exc}")
        return False, None


async def delete_owned(kube, res: Kind, namespace: str, leftovers: dict, uid: str, errors: list[str]) -> None:
    """Delete the ``leftovers`` (name -> fact with ``owners``) that ``uid`` owns; failures go to ``errors``."""
    for name, current in leftovers.items():
        if uid in current["owners"]:
            try:
                await kube.delete(res, namespace, name, missing_ok=True)
            except KubeError as exc:
                errors.append(f"{res.kind} {name}: {exc}")


# The operator's non-secret Vault settings, handed to every Job that needs a key (backup, restore,
# drill, shred); the Job authenticates as its own service account, never with the operator's token.
VAULT_SETTINGS = ("VAULT_ADDR", "BAO_ADDR", "VAULT_NAMESPACE", "BAO_NAMESPACE", "LIFELINE_VAULT_AUTH",
                  "LIFELINE_VAULT_ROLE", "LIFELINE_VAULT_TIMEOUT", "LIFELINE_VAULT_RETRIES", ALLOWED_ROLES_ENV)


def vault_env() -> tuple[tuple[str, str], ...]:
    """Those settings, pinned: a key reference from a tenant's object cannot change them in the Job."""
    return tuple((k, os.environ[k]) for k in VAULT_SETTINGS if os.environ.get(k)) + ((PINNED_ENV, "true"),)


def pinned_vault_env() -> dict[str, str]:
    """The operator's own environment, pinned, for the key checks it makes with its own credentials."""
    return {**os.environ, PINNED_ENV: "true"}

