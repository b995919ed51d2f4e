"""Pieces every agent pod of a BackupPolicy shares (backup Jobs, the WAL shipper, restore Jobs). Pure.

One place for how such a pod is hardened and what it mounts, so the pods cannot drift apart:
a non-root pod with seccomp RuntimeDefault, the policy's placement options, filesystem
destinations, a ``secret://`` key (and what ``encryption.keyRef`` names) and Vault's CA bundle.
"""
from __future__ import annotations

import re

from lifeline.api.backuppolicy import BackupPolicySpec, Destination
from lifeline.messages.destination import AZURE_VARS
from lifeline.sources import PlanError
from lifeline.sources.base import RUN_AS

DESTINATIONS_MOUNT = "/destinations"
KEY_MOUNT = "/etc/lifeline/key"
VAULT_CA_MOUNT = "/etc/lifeline/vault-ca"
GCS_MOUNT = "/etc/lifeline/gcs"  # a gcs destination's key file at <GCS_MOUNT>/<destination>/key.json
GCS_KEY_FILE = "key.json"


def parse_key_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``(scheme, secret name, secret key)``; the name and key only for ``secret://name/key``."""
    scheme = ref.split("://", 1)[0]
    if scheme != "secret":
        return scheme, None, None
    rest = ref.split("://", 1)[1]
    name, _, key = rest.partition("/")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
        raise PlanError("KeysAvailable", "InvalidKeyRef",
                        f"encryption.keyRef {ref!r}: write secret://<secret name>/<key in that secret>, "
                        "for example secret://his-backup-key/key")
    return scheme, name, key


def pod_security_context(spec: BackupPolicySpec) -> dict:
    """Non-root as the policy's user and group (the image's lifeline user unless set)."""
    opts = spec.pod
    return {
        "runAsNonRoot": True, "runAsUser": opts.run_as_user or RUN_AS,
        "runAsGroup": opts.run_as_group if opts.run_as_group is not None else RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def apply_placement(pod: dict, spec: BackupPolicySpec, *, service_account: bool = True) -> None:
    """The policy's ``pod`` options that say where and as whom the pod runs, set only when given
    (``service_account=False``: not the service account, for a pod that needs no token)."""
    opts = spec.pod
    if service_account and opts.service_account_name:
        pod["serviceAccountName"] = opts.service_account_name
    if opts.priority_class_name:
        pod["priorityClassName"] = opts.priority_class_name
    if opts.node_selector:
        pod["nodeSelector"] = dict(opts.node_selector)
    if opts.tolerations:
        pod["tolerations"] = [t.wire() for t in opts.tolerations]


def s3_env_prefix(index: int) -> str:
    return f"LIFELINE_S3_{index}_"


def azure_env_prefix(index: int) -> str:
    return f"LIFELINE_AZURE_{index}_"


def gcs_key_file(dest: Destination) -> str:
    return f"{GCS_MOUNT}/{dest.name}/{GCS_KEY_FILE}"


def credentials_env(index: int, dest: Destination) -> list[dict]:
    """The variables an object store destination's credentials reach the agent by, each from its Secret
    (the i-th destination's under its own prefix; :func:`lifeline.messages.destination.destination_env`
    hands them to that destination's agent alone). S3: both keys, required. Azure: every credential
    Azure's tools read, each optional (the Secret holds an account key, a SAS token or a service
    principal). GCS: none, its key is a file (:func:`add_credentials_volume`)."""
    if dest.s3 is not None:
        return [{"name": s3_env_prefix(index) + var,
                 "valueFrom": {"secretKeyRef": {"name": dest.s3.credentials_secret, "key": key}}}
                for var, key in (("ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
                                 ("SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"))]
    if dest.azure is not None:
        return [{"name": azure_env_prefix(index) + suffix,
                 "valueFrom": {"secretKeyRef": {"name": dest.azure.credentials_secret, "key": key, "optional": True}}}
                for suffix, key in AZURE_VARS.items() if not (suffix == "ACCOUNT_NAME" and dest.azure.account_name)]
    return []


def add_credentials_volume(index: int, dest: Destination, mounts: list[dict], volumes: list[dict]) -> None:
    """A gcs destination's service account key from its Secret, at :func:`gcs_key_file` (read-only,
    readable by the pod's user: the agent reads it where it is, as GOOGLE_APPLICATION_CREDENTIALS)."""
    if dest.gcs is None:
        return
    mounts.append({"name": f"gcs-{index}", "mountPath": f"{GCS_MOUNT}/{dest.name}", "readOnly": True})
    volumes.append({"name": f"gcs-{index}", "secret": {
        "secretName": dest.gcs.credentials_secret, "defaultMode": 0o444,
        "items": [{"key": dest.gcs.credentials_key, "path": GCS_KEY_FILE}]}})


def add_destination_volumes(spec: BackupPolicySpec, mounts: list[dict], volumes: list[dict]) -> None:
    """Every filesystem destination's PVC at ``/destinations/<name>`` (writable: backups and shipping), and
    every gcs destination's key file."""
    for i, dest in enumerate(spec.destinations):
        if dest.filesystem is not None:
            mounts.append({"name": f"dest-{i}", "mountPath": f"{DESTINATIONS_MOUNT}/{dest.name}"})
            volumes.append({"name": f"dest-{i}", "persistentVolumeClaim": {"claimName": dest.filesystem.claim_name}})
        add_credentials_volume(i, dest, mounts, volumes)


def add_key_volumes(spec: BackupPolicySpec, mounts: list[dict], volumes: list[dict], env: list[dict]) -> None:
    """A ``secret://`` key at ``KEY_MOUNT`` and, for a ``vault-*`` key with ``encryption.caBundle``, the
    bundle with ``VAULT_CACERT`` pointing at it."""
    key_scheme, key_secret, key_key = parse_key_ref(spec.encryption.key_ref)
    if key_secret:
        mounts.append({"name": "key", "mountPath": KEY_MOUNT, "readOnly": True})
        # World-readable inside the pod only (the agent copies it to a 0600 file); no fsGroup needed.
        volumes.append({"name": "key", "secret": {"secretName": key_secret, "defaultMode": 0o444,
                                                  "items": [{"key": key_key, "path": key_key}]}})
    ca = spec.encryption.ca_bundle
    if ca is not None and key_scheme.startswith("vault"):
        mounts.append({"name": "vault-ca", "mountPath": VAULT_CA_MOUNT, "readOnly": True})
        item = {"items": [{"key": ca.key, "path": ca.key}]}
        volumes.append({"name": "vault-ca", **({"configMap": {"name": ca.config_map, **item}} if ca.config_map
                                               else {"secret": {"secretName": ca.secret, **item}})})
        env.append({"name": "VAULT_CACERT", "value": f"{VAULT_CA_MOUNT}/{ca.key}"})
