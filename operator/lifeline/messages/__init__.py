"""The messages between the operator and the agents its Jobs run, as typed models. Pydantic only.

Two directions, one vocabulary:

- operator -> agent: the job plan (:mod:`.plans`) in the ``LIFELINE_JOB_PLAN`` variable;
- agent -> operator: the summary (:mod:`.summaries`) in the container's termination message,
  written and read by :mod:`.termination` only.

Every message carries ``v`` (1). Each side validates what it receives: the agent refuses a bad
plan (exit :data:`EXIT_BAD_PLAN`), the operator turns a bad summary into a sentence for the status.
Not under :mod:`lifeline.api`: an agent imports this, and the API's models pull in the CRD
machinery a Job does not need. docs/operator.md ("What the agent tells the operator") has the shapes.
"""
from .plans import (EXIT_BAD_PLAN, PLAN_ENV, BackupPlan, BandwidthPlan, CataloguePlan, DestinationPlan, FingerprintPlan, ImmutablePlan, JobPlan,
                    KeyPlan, MaintenancePlan, PrunePlan, RestorePlan, RestoreTargetPlan, RetentionPlan, ResourcePlan, ResourcesPlan, ShredCopyPlan, ShredPlan,
                    SourcePlan, StreamPlan, read_plan)
from .summaries import (CATALOGUE_LINE, BackupSummary, CatalogueSummary, CopyShredded, CopyStored, DestinationFailed, FingerprintResult, PruneReport,
                        MaintenanceSummary, Repacked, RestoreSummary, ShredSummary, Summary, VerifyReport)
from .termination import DEFAULT_TERMINATION_LOG, MAX_MESSAGE, Reading, read_summary, render
from .wire import VERSION, UnreadableMessage

__all__ = [
    "CATALOGUE_LINE", "CataloguePlan", "CatalogueSummary", "MaintenancePlan", "MaintenanceSummary", "Repacked",
    "BackupPlan", "BackupSummary", "BandwidthPlan", "ImmutablePlan", "CopyShredded", "CopyStored", "DEFAULT_TERMINATION_LOG", "DestinationFailed",
    "DestinationPlan", "EXIT_BAD_PLAN", "FingerprintPlan", "FingerprintResult", "JobPlan", "KeyPlan", "MAX_MESSAGE",
    "PLAN_ENV", "PruneReport", "PrunePlan", "Reading", "ResourcePlan", "ResourcesPlan", "RestorePlan",
    "RestoreSummary", "RestoreTargetPlan", "RetentionPlan", "ShredCopyPlan", "ShredPlan", "ShredSummary",
    "SourcePlan", "StreamPlan", "Summary", "UnreadableMessage", "VERSION", "VerifyReport", "read_plan",
    "read_summary", "render",
]
