"""The operator's Prometheus metrics, in one registry so tests can read them cleanly."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from lifeline import __version__


class OperatorMetrics:
    """Metrics of one operator instance (one registry each, so two in a test do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        info = Info("lifeline_build", "Version of the running Lifeline operator.", registry=self.registry)
        info.info({"version": __version__})
        self.reconciles = Counter(
            "lifeline_reconciles",
            "Reconciles handled, by kind and result (written, unchanged, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.spec_valid = Gauge(
            "lifeline_spec_valid",
            "1 when the object's spec passes validation, 0 when it does not.",
            ["kind", "namespace", "name"],
            registry=self.registry,
        )
        # FailoverPlan (lifeline.failover): one series set per plan.
        plan = ["namespace", "name"]
        check = ["namespace", "name", "site", "check"]
        self.failover_phase = Gauge(
            "lifeline_failover_phase", "1 for the phase each FailoverPlan is in, 0 for the others.",
            [*plan, "phase"], registry=self.registry)
        self.failover_transitions = Counter(
            "lifeline_failover_transitions",
            "State machine transitions (SiteDegraded, FailingOver, FailoverComplete, FailbackComplete, ...).",
            [*plan, "transition"], registry=self.registry)
        self.failover_achieved_rto = Gauge(
            "lifeline_failover_achieved_rto_seconds",
            "Achieved RTO of the last completed failover: standby healthy minus the first failed check.",
            plan, registry=self.registry)
        self.failover_recommended = Gauge(
            "lifeline_failover_recommended",
            "1 while a breached failover waits for `lifeline failover approve` (Manual mode, cap reached).",
            plan, registry=self.registry)
        self.failover_fenced_unverified = Gauge(
            "lifeline_failover_fenced_unverified",
            "1 while an old primary could not be reached to fence it (it is fenced when it answers).",
            plan, registry=self.registry)
        self.failover_checks = Counter(
            "lifeline_failover_checks", "Health check results, by result (success, failure).",
            [*check, "result"], registry=self.registry)
        self.failover_check_healthy = Gauge(
            "lifeline_failover_check_healthy", "1 when the check's last probe passed, 0 when it failed.",
            check, registry=self.registry)
        self.failover_check_latency = Histogram(
            "lifeline_failover_check_latency_seconds", "How long each health probe took.",
            check, registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.failover_rounds = Counter(
            "lifeline_failover_probe_rounds", "Probe rounds each FailoverPlan's loop has completed.",
            plan, registry=self.registry)
        self._per_plan = (self.failover_phase, self.failover_transitions, self.failover_achieved_rto,
                          self.failover_recommended, self.failover_fenced_unverified, self.failover_checks,
                          self.failover_check_healthy, self.failover_check_latency, self.failover_rounds)
        # BackupPolicy (lifeline.controllers.backuppolicy): labels start with namespace, policy.
        policy = ["namespace", "policy", "tier"]
        dest = [*policy, "destination"]
        self.backup_last_success = Gauge(
            "lifeline_backup_last_success_timestamp_seconds",
            "Completion time of the last backup that reached the destination (Unix seconds).",
            dest, registry=self.registry)
        self.backup_duration = Histogram(
            "lifeline_backup_duration_seconds", "How long the agent took to back up to one destination.",
            [*dest, "type"], registry=self.registry,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400))
        self.backup_bytes = Counter(
            "lifeline_backup_bytes", "Bytes backups newly stored at a destination (after dedup and compression).",
            dest, registry=self.registry)
        self.backup_source_bytes = Counter(
            "lifeline_backup_source_bytes", "Bytes backups read from the source.", policy, registry=self.registry)
        self.backup_failures = Counter(
            "lifeline_backup_failures",
            "Failed backups, by destination ('' when the whole Job failed before reaching one) and reason.",
            [*dest, "reason"], registry=self.registry)
        self.rpo_seconds = Gauge(
            "lifeline_rpo_seconds", "Age of the data in the newest recovery point (the RPO right now).",
            policy, registry=self.registry)
        self.rpo_target = Gauge(
            "lifeline_rpo_target_seconds", "The policy's recovery point objective.", policy, registry=self.registry)
        self.rpo_achievable = Gauge(
            "lifeline_rpo_achievable", "1 when the schedules can meet the RPO, 0 when their longest gap exceeds it.",
            policy, registry=self.registry)
        self.backup_schedule_gap = Gauge(
            "lifeline_backup_schedule_gap_seconds", "Longest gap between two scheduled backups of the policy.",
            policy, registry=self.registry)
        self.backup_condition = Gauge(
            "lifeline_backup_condition", "1 when the BackupPolicy's condition of that type is True, else 0.",
            ["namespace", "name", "type"], registry=self.registry)
        # the maintenance CronJob (repack): what it left at each destination
        self.maintenance_last_success = Gauge(
            "lifeline_maintenance_last_success_timestamp_seconds",
            "Completion time of the last maintenance (repack) that succeeded at the destination (Unix seconds).",
            dest, registry=self.registry)
        self.repository_bytes = Gauge(
            "lifeline_repository_bytes", "Bytes of the destination's repository (packs and index) after its latest "
            "maintenance.", dest, registry=self.registry)
        self.maintenance_freed_bytes = Counter(
            "lifeline_maintenance_freed_bytes", "Bytes maintenance (repack) freed at a destination.",
            dest, registry=self.registry)
        self._per_policy = (self.backup_last_success, self.backup_duration, self.backup_bytes,
                            self.backup_source_bytes, self.backup_failures, self.rpo_seconds, self.rpo_target,
                            self.rpo_achievable, self.backup_schedule_gap, self.backup_condition,
                            self.maintenance_last_success, self.repository_bytes, self.maintenance_freed_bytes)

        # RestoreDrill (lifeline.controllers.restoredrill): one series set per drill.
        drill = ["namespace", "name", "policy", "tier"]
        self.drill_last_run = Gauge(
            "lifeline_drill_last_run_timestamp_seconds", "When the drill's last run finished (Unix seconds).",
            drill, registry=self.registry)
        self.drill_last_success = Gauge(
            "lifeline_drill_last_success_timestamp_seconds", "When the drill last succeeded (Unix seconds).",
            drill, registry=self.registry)
        self.drill_success = Gauge(
            "lifeline_drill_success", "1 when the drill's last run succeeded, 0 when it failed.",
            drill, registry=self.registry)
        self.drill_rto_met = Gauge(
            "lifeline_drill_rto_met", "1 when the last run's total time was within the RTO, else 0.",
            drill, registry=self.registry)
        self.drill_duration = Gauge(
            "lifeline_drill_duration_seconds", "Total time of the last run: restore plus verification.",
            drill, registry=self.registry)
        self.drill_rto_target = Gauge(
            "lifeline_drill_rto_target_seconds", "The policy's recovery time objective.", drill, registry=self.registry)
        self.drill_max_interval = Gauge(
            "lifeline_drill_max_interval_seconds",
            "The longest the drill may go without a run (the tier's rhythm): alert when the last run is older.",
            drill, registry=self.registry)
        self.drill_runs = Counter(
            "lifeline_drill_runs", "Finished drill runs, by outcome (Succeeded, Failed).", [*drill, "outcome"],
            registry=self.registry)
        self._per_drill = (self.drill_last_run, self.drill_last_success, self.drill_success, self.drill_rto_met,
                           self.drill_duration, self.drill_rto_target, self.drill_max_interval, self.drill_runs)

        # Everything this operator audits, counted: the anomaly alerts (a restore at night, a burst of
        # restores, a shred or an approval out of hours) watch these.
        self.audited = Counter(
            "lifeline_audited_actions", "Actions written to the audit trail, by action, outcome and namespace.",
            ["action", "outcome", "namespace"], registry=self.registry)
        self.audited_elsewhere = Counter(
            "lifeline_audited_elsewhere", "Records other writers (the CLI: key rotation, lifeline keys shred) added "
            "to the audit log since the operator started, by action, outcome and namespace.",
            ["action", "outcome", "namespace"], registry=self.registry)

        # Notices to people (lifeline.observability.notifier), by target and outcome.
        self.notifications = Counter(
            "lifeline_notifications", "Notices posted to notification targets, by outcome (sent, failed, "
            "unknown-target).", ["target", "outcome"], registry=self.registry)

        # Restore (lifeline.controllers.restore): 1 for the current phase, 0 for the others.
        self.restore_phase = Gauge(
            "lifeline_restore_phase", "1 for the Restore's current phase, 0 for every other phase.",
            ["namespace", "name", "phase"], registry=self.registry)

    def count_audited(self, record: dict) -> None:
        """An audit sink: one more of this record's action and outcome."""
        namespace = (record.get("subject") or {}).get("namespace") or ""
        self.audited.labels(record["action"], record["outcome"], namespace).inc()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop the series of a deleted object so dashboards do not show ghosts."""
        try:
            self.spec_valid.remove(kind, namespace, name)
        except KeyError:
            pass
        per_object = {"FailoverPlan": self._per_plan, "Restore": (self.restore_phase,),
                      "RestoreDrill": self._per_drill, "BackupPolicy": self._per_policy}
        for metric in per_object.get(kind, ()):
            for labels in list(metric._metrics):  # prometheus_client keeps children by label values
                if labels[:2] == (namespace, name):
                    metric.remove(*labels)
