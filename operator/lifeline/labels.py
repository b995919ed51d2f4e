"""Every label, annotation and finalizer key Lifeline reads or writes.

One named constant per key, so that a key is spelled once: the modules that write a key and the
ones that read it (and the tests) import it from here. Keys of Lifeline's own are under
``dr.lifeline.io/``; the ``app.kubernetes.io/`` ones are Kubernetes' recommended labels, which
Lifeline sets on everything it creates; the last few of each group are Kubernetes' own keys that
Lifeline reads or sets. The CRD API group (``dr.lifeline.io/v1alpha1``) is not here: that is
:data:`lifeline.API_VERSION`.

This module imports nothing from Lifeline: anything may import it.
"""

# ---- labels ------------------------------------------------------------------------------------

# backups
LABEL_POLICY = "dr.lifeline.io/policy"  # a policy's CronJobs, Jobs, Deployments, RecoveryPoints: its name (label-safe)
LABEL_BACKUP_TYPE = "dr.lifeline.io/backup-type"  # a backup Job: full, incremental or differential
LABEL_CATALOGUE = "dr.lifeline.io/catalogue"  # a catalogue Job: the policy whose points it lists (not its Job)
LABEL_TRIGGER = "dr.lifeline.io/trigger"  # a Job started by a backup-now request: "on-demand"
# restores
LABEL_RESTORE = "dr.lifeline.io/restore"  # a Restore's Job and claims: the Restore's name (label-safe)
LABEL_RESTORE_STATE = "dr.lifeline.io/restore-state"  # a restore's target claim: restoring, verified or failed
# drills
LABEL_SANDBOX = "dr.lifeline.io/sandbox"  # "true" on a drill's sandbox namespace: the only namespaces Lifeline deletes
LABEL_DRILL = "dr.lifeline.io/drill"  # everything made for a drill run: the RestoreDrill's name (label-safe)
LABEL_DRILL_NAMESPACE = "dr.lifeline.io/drill-namespace"  # ... and the RestoreDrill's namespace
LABEL_DRILL_RUN = "dr.lifeline.io/drill-run"  # ... and the run it belongs to
LABEL_SANDBOX_NAMESPACE = "dr.lifeline.io/sandbox-namespace"  # a read-only mirror volume: the sandbox it serves
# shredding
LABEL_SHRED_FOR = "dr.lifeline.io/shred-for"  # a shred Job: the RecoveryPoint it shreds (label-safe)

# Kubernetes' recommended labels, on every object Lifeline creates
LABEL_APP_NAME = "app.kubernetes.io/name"  # "lifeline"
LABEL_APP_INSTANCE = "app.kubernetes.io/instance"  # the policy, restore, drill or point it is for
LABEL_APP_COMPONENT = "app.kubernetes.io/component"  # what it does: backup, prune, restore, shred, ...
LABEL_APP_MANAGED_BY = "app.kubernetes.io/managed-by"  # "lifeline"
LABEL_APP_PART_OF = "app.kubernetes.io/part-of"  # "lifeline"

# Kubernetes' own labels
LABEL_JOB_NAME = "job-name"  # set by the Job controller on a Job's pods: the Job's name
JOB_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")  # ... the Job's uid (new key, old key)
LABEL_POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"  # a sandbox namespace: its Pod Security level

# ---- annotations -------------------------------------------------------------------------------

# backups
ANN_POLICY = "dr.lifeline.io/policy"  # a policy's Jobs, snapshots and points: its full name (a label value stops at 63)
ANN_SPEC_HASH = "dr.lifeline.io/spec-hash"  # a CronJob or Deployment Lifeline manages: the hash of what it wrote
ANN_ADOPT_POINTS = "dr.lifeline.io/adopt-points"  # a BackupPolicy: a request to adopt its destinations' points
ANN_BACKUP_NOW = "dr.lifeline.io/backup-now"  # a BackupPolicy: a request for a backup now (a new value, a new Job)
ANN_BACKUP_NOW_TYPE = "dr.lifeline.io/backup-now-type"  # ... and the type of that backup
# a resources BackupPolicy: the author the kinds in ANN_CHECKED_KINDS were checked for (the webhook's alone)
ANN_CHECKED_FOR = "dr.lifeline.io/checked-for"
# ... and the seal over that record, the policy's namespace, name and spec (the webhook's alone)
ANN_CHECKED_SEAL = "dr.lifeline.io/checked-kinds-seal"
# a resources BackupPolicy: a request to check the kinds again, for whoever writes it (consumed by the webhook)
ANN_CHECK_KINDS = "dr.lifeline.io/check-kinds"
ANN_RECORDED = "dr.lifeline.io/recorded"  # a finished Job: its outcome is recorded (the point it made, or the outcome)
ANN_RESULT = "dr.lifeline.io/result"  # a finished Job: the recorded outcome (JSON)
ANN_JOB = "dr.lifeline.io/job"  # a RecoveryPoint: the Job that made it
ANN_JOB_UID = "dr.lifeline.io/job-uid"  # ... and that Job's uid
ANN_TRIGGER_JOB = "dr.lifeline.io/trigger-job"  # a VolumeSnapshot, its claim and data-mover Job: the trigger Job
ANN_VOLUME_SNAPSHOT = "dr.lifeline.io/volume-snapshot"  # a data-mover Job and its claim: the VolumeSnapshot they read
ANN_HOOKS = "dr.lifeline.io/hooks"  # a snapshot trigger Job: "pre" once pre-hooks ran, "post" once post-hooks ran
# restores
ANN_APPROVE = "dr.lifeline.io/approve"  # a Restore: a person approves (consumed by the webhook)
ANN_REJECT = "dr.lifeline.io/reject"  # a Restore: a person rejects (consumed by the webhook)
ANN_REQUESTED_BY = "dr.lifeline.io/requested-by"  # a Restore: who asked for it (the webhook's alone)
# a Restore: the requester's teams an approval policy keeps apart (the webhook's alone)
ANN_REQUESTED_BY_TEAMS = "dr.lifeline.io/requested-by-teams"
ANN_APPROVALS = "dr.lifeline.io/approvals"  # a Restore: the approval decisions (the webhook's alone)
ANN_APPROVALS_SEAL = "dr.lifeline.io/approvals-seal"  # a Restore: the seal over those records (the webhook's alone)
# an objects Restore: the kinds its requester was checked for at creation, "configmaps,deployments.apps"
# ("" when none were: no point or policy then); under the seal above (the webhook's alone). A resources
# BackupPolicy: the kinds its author was checked for when its spec was written, under ANN_CHECKED_SEAL
ANN_CHECKED_KINDS = "dr.lifeline.io/checked-kinds"
ANN_RESTORED_FROM = "dr.lifeline.io/restored-from"  # a restored claim: the RecoveryPoint it holds
# drills
ANN_RUN_NOW = "dr.lifeline.io/run-now"  # a RestoreDrill: a request for a run now (a new value, a new run)
ANN_DRILL = "dr.lifeline.io/drill"  # everything made for a drill run: the RestoreDrill's namespace/name in full
ANN_RECOVERY_POINT = "dr.lifeline.io/recovery-point"  # a sandbox namespace: the RecoveryPoint restored there
ANN_MIRROR_OF = "dr.lifeline.io/mirror-of"  # a read-only mirror volume or claim: the volume or claim it mirrors
ANN_COPIED_FROM = "dr.lifeline.io/copied-from"  # a Secret copied into a sandbox: its namespace/name
# shredding (deletionPolicy Shred)
ANN_SHRED_REQUEST = "dr.lifeline.io/shred-request"  # a RecoveryPoint: a person asks for a shred, and why
ANN_SHRED_APPROVE = "dr.lifeline.io/shred-approve"  # a RecoveryPoint: another person approves it
ANN_SHRED_REQUESTED_BY = "dr.lifeline.io/shred-requested-by"  # who asked (the webhook's alone)
ANN_SHRED_REASON = "dr.lifeline.io/shred-reason"  # why (the webhook's alone)
ANN_SHRED_APPROVALS = "dr.lifeline.io/shred-approvals"  # the approvals (the webhook's alone)
ANN_SHRED_SEAL = "dr.lifeline.io/shred-seal"  # the seal over those records (the webhook's alone)
ANN_SHRED_PLAN = "dr.lifeline.io/shred-plan"  # a RecoveryPoint to shred on deletion: the shred plan
ANN_SHRED_ATTEMPT = "dr.lifeline.io/shred-attempt"  # a RecoveryPoint and its shred Job: the attempt number
ANN_SHRED_RETRY_AFTER = "dr.lifeline.io/shred-retry-after"  # a RecoveryPoint: no new shred attempt before then
ANN_SHRED_POINT = "dr.lifeline.io/recoverypoint"  # a shred Job: the RecoveryPoint's full name
# failover
ANN_FAILOVER_REQUEST = "dr.lifeline.io/request"  # a FailoverPlan: a person's request (approve, back, switch)
ANN_FENCED = "dr.lifeline.io/fenced"  # a fenced workload: when it was fenced
ANN_ACTIVE_SITE = "dr.lifeline.io/active-site"  # a switched Service: the site it now sends traffic to

# Kubernetes' own annotations
ANN_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"  # kubectl apply's copy (dropped when kept)
ANN_DEFAULT_SNAPSHOT_CLASS = "snapshot.storage.kubernetes.io/is-default-class"  # "true": the default snapshot class

# ---- finalizers --------------------------------------------------------------------------------

FINALIZER_SHRED = "dr.lifeline.io/shred"  # a RecoveryPoint whose key is destroyed before it goes (deletionPolicy Shred)
