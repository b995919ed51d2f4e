"""Restore: a real restore into a real target, behind two-person approval."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .common import DNSLabel, DNSName, Model, OneOf, StatusBase

TARGET_KINDS = ("pvc", "command", "objects")
# Point-in-time targets: an RFC 3339 time (with a zone) or the word latest.
TargetTime = Annotated[str, Field(pattern=r"^(latest|[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                                          r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2}))$")]


class PVCTarget(Model):
    claim_name: DNSName = Field(description="PVC to restore into (or to create, with strategy NewClaim).")
    path: str = Field("/", description="Directory inside the volume.")
    storage_class_name: DNSName | None = None
    size: str | None = Field(None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")


class CommandTarget(Model):
    """Pipe the point's byte stream into a command, such as ``pg_restore -d his``."""

    image: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)


class SecretKey(Model):
    name: DNSName = Field(description="A Secret in the Restore's namespace.")
    key: str = Field("kubeconfig", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class ObjectsTarget(Model):
    """Put a resources point's Kubernetes objects back through an API server (docs/kubernetes-objects.md).

    The point's namespace maps to ``target.namespace`` (the Restore's own when left out); every
    object passes the server's dry run before anything is written, and nothing there is deleted."""

    existing: Literal["Skip", "Update"] = Field(
        "Skip", description="An object that exists already: leave it (Skip) or replace it at its live version (Update).")
    with_data: bool = Field(
        True, description="A claim restored here whose data a pvc policy of this namespace protects gets that "
                          "data (the policy's newest point at or before this one), before any workload starts.")
    kubeconfig_secret: SecretKey | None = Field(
        None, description="Another cluster (the standby site): a kubeconfig in a Secret of this namespace; the "
                          "restore acts there with that kubeconfig's identity, never the operator's.")


class Target(OneOf):
    one_of, choice = TARGET_KINDS, "target"

    namespace: DNSLabel | None = Field(None, description="Target namespace; the Restore's own when left out.")
    pvc: PVCTarget | None = None
    command: CommandTarget | None = None
    objects: ObjectsTarget | None = None


class RestoreSpec(Model):
    """What to restore where; immutable once created (approvals are given for exactly this)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "spec is immutable: delete this Restore and create a new one"}]})

    recovery_point: DNSName = Field(description="RecoveryPoint to restore.")
    destination: DNSLabel | None = Field(None, description="Which copy to read; the first reachable when left out.")
    target: Target
    strategy: Literal["InPlace", "NewClaim"] = Field(
        "NewClaim", description="NewClaim restores beside the old claim and switches only after verification."
    )
    overwrite: bool = Field(False, description="Allow restoring into a target that already holds data.")
    reason: str = Field(min_length=1, description="Why this restore is needed; recorded in the audit trail.")
    notify: list[DNSLabel] = Field(
        default_factory=list, max_length=10,
        description="Notification targets (defined by the admin in the chart's notifications.targets) told "
                    "about this restore: requested (approvers are wanted), started, succeeded, failed or rejected.")
    required_approvals: int = Field(2, ge=2, le=5, description="Distinct approvers needed; never fewer than two.")
    target_time: TargetTime | None = Field(
        None, description="Point-in-time restore (policies with a continuous source only): an RFC 3339 time or "
                          "'latest'. The agent restores the newest base backup that finished before it and "
                          "replays the shipped WAL up to it; recoveryPoint then names any point of that policy.")

    @model_validator(mode="after")
    def _pitr_into_a_directory(self):
        if self.target_time is not None and self.target.pvc is None:
            raise ValueError("targetTime restores a PostgreSQL data directory: give target.pvc, not target.command")
        return self


class Approval(Model):
    user: str = Field(description="Identity from the API server's admission request.")
    time: datetime
    decision: Literal["Approved", "Rejected"]
    comment: str | None = None
    groups: list[str] | None = Field(None, description="The approver's groups that an approval policy asks for.")


class ObjectFailure(Model):
    kind: str
    name: str = Field(description="namespace/name, or the name of a cluster-scoped object.")
    message: str = Field(description="The API server's words.")


class ObjectsOutcome(Model):
    counts: dict[str, int] = Field(default_factory=dict,
                                   description="Objects by outcome: created, updated, skipped, failed.")
    failures: list[ObjectFailure] = Field(default_factory=list, max_length=50,
                                          description="The objects that failed, with the server's reason (the "
                                                      "first 50; the restore Job's log lists every object).")
    claims_with_data: list[str] = Field(default_factory=list,
                                        description="Claims whose data was restored with them.")


class RestoreStatus(StatusBase):
    phase: Literal["PendingApproval", "Approved", "Running", "Succeeded", "Failed", "Rejected"] | None = None
    requested_by: str | None = None
    approvals: list[Approval] = Field(default_factory=list)
    approval_policy: str | None = Field(None, description="The admin's approval policy this Restore is held to.")
    missing_groups: list[str] = Field(default_factory=list,
                                      description="Groups of which an approval is still needed.")
    start_time: datetime | None = None
    completion_time: datetime | None = None
    bytes_restored: int | None = Field(None, ge=0)
    reason: str | None = Field(None, description="Why the Restore is in its phase, one CamelCase word.")
    message: str | None = Field(None, description="What happened and what to do next, for a person.")
    job_name: str | None = Field(None, description="The restore Job.")
    objects: ObjectsOutcome | None = Field(None, description="An objects restore: what became of its objects.")

