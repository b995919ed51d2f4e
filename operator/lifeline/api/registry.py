"""Every kind Lifeline serves, with what the CRD and the operator need to know of it.

Adding a kind means adding one entry here; the CRD generator, the operator's
handlers, the CLI and the tests all read this list.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from lifeline import GROUP, VERSION

from . import backuppolicy, failoverplan, recoverypoint, restore, restoredrill

_READY = '.status.conditions[?(@.type=="Ready")].status'
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    printer_columns: tuple[dict, ...] = field(default=())

    group: str = GROUP
    version: str = VERSION

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def resource(self) -> str:
        """``group/version/plural``, the key kopf uses."""
        return f"{self.group}/{self.version}/{self.plural}"


KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind="BackupPolicy",
        plural="backuppolicies",
        short_names=("bp", "bkp"),
        spec_model=backuppolicy.BackupPolicySpec,
        status_model=backuppolicy.BackupPolicyStatus,
        description="What to protect, when, where to, for how long, and with which key.",
        printer_columns=(
            {"name": "Tier", "type": "string", "jsonPath": ".spec.tier"},
            {"name": "Last Success", "type": "date", "jsonPath": ".status.lastSuccessfulBackupTime"},
            {"name": "RPO", "type": "integer", "jsonPath": ".status.currentRPOSeconds",
             "description": "Seconds since the last successful backup."},
            {"name": "Points", "type": "integer", "jsonPath": ".status.recoveryPoints", "priority": 1},
            {"name": "Ready", "type": "string", "jsonPath": _READY},
            _AGE,
        ),
    ),
    KindInfo(
        kind="RecoveryPoint",
        plural="recoverypoints",
        short_names=("rp",),
        spec_model=recoverypoint.RecoveryPointSpec,
        status_model=recoverypoint.RecoveryPointStatus,
        description="One completed backup: the catalogue that drills, restores and retention read.",
        printer_columns=(
            {"name": "Policy", "type": "string", "jsonPath": ".spec.policyName"},
            {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
            {"name": "Size", "type": "integer", "jsonPath": ".spec.sizeBytes", "format": "int64"},
            {"name": "Completed", "type": "date", "jsonPath": ".spec.completionTime"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            _AGE,
        ),
    ),
    KindInfo(
        kind="RestoreDrill",
        plural="restoredrills",
        short_names=("drill",),
        spec_model=restoredrill.RestoreDrillSpec,
        status_model=restoredrill.RestoreDrillStatus,
        description="A rehearsal: restore a point into a sandbox, verify it, measure it against the RTO.",
        printer_columns=(
            {"name": "Policy", "type": "string", "jsonPath": ".spec.policyName"},
            {"name": "Last Outcome", "type": "string", "jsonPath": ".status.lastRun.outcome"},
            {"name": "Restore Seconds", "type": "number", "jsonPath": ".status.lastRun.totalSeconds"},
            {"name": "RTO Met", "type": "boolean", "jsonPath": ".status.lastRun.rtoMet"},
            {"name": "Next Run", "type": "date", "jsonPath": ".status.nextRunTime", "priority": 1},
            {"name": "Ready", "type": "string", "jsonPath": _READY},
            _AGE,
        ),
    ),
    KindInfo(
        kind="Restore",
        plural="restores",
        short_names=("rst",),
        spec_model=restore.RestoreSpec,
        status_model=restore.RestoreStatus,
        description="A production restore; runs only after two distinct approvers agree.",
        printer_columns=(
            {"name": "Point", "type": "string", "jsonPath": ".spec.recoveryPoint"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Approvals", "type": "integer", "jsonPath": ".spec.requiredApprovals", "priority": 1},
            {"name": "Requested By", "type": "string", "jsonPath": ".status.requestedBy", "priority": 1},
            {"name": "Ready", "type": "string", "jsonPath": _READY},
            _AGE,
        ),
    ),
    KindInfo(
        kind="FailoverPlan",
        plural="failoverplans",
        short_names=("fp",),
        spec_model=failoverplan.FailoverPlanSpec,
        status_model=failoverplan.FailoverPlanStatus,
        description="Active/standby sites with health checks and fenced, automatic or manual failover.",
        printer_columns=(
            {"name": "Mode", "type": "string", "jsonPath": ".spec.mode", "priority": 1},
            {"name": "Active Site", "type": "string", "jsonPath": ".status.activeSite"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Last Failover", "type": "date", "jsonPath": ".status.lastFailoverTime"},
            {"name": "Ready", "type": "string", "jsonPath": _READY},
            _AGE,
        ),
    ),
)

BY_KIND = {k.kind: k for k in KINDS}
BY_PLURAL = {k.plural: k for k in KINDS}
# Each kind by name, for the modules that handle one: a typo fails at import, not at a lookup.
BACKUP_POLICY = BY_KIND["BackupPolicy"]
RECOVERY_POINT = BY_KIND["RecoveryPoint"]
RESTORE_DRILL = BY_KIND["RestoreDrill"]
RESTORE = BY_KIND["Restore"]
FAILOVER_PLAN = BY_KIND["FailoverPlan"]
