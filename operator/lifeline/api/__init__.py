"""Pydantic models for every Lifeline kind: the single source of truth for the CRDs."""
from .registry import (BACKUP_POLICY, BY_KIND, BY_PLURAL, FAILOVER_PLAN, KINDS, RECOVERY_POINT, RESTORE, RESTORE_DRILL,
                       KindInfo)

__all__ = ["BACKUP_POLICY", "BY_KIND", "BY_PLURAL", "FAILOVER_PLAN", "KINDS", "KindInfo", "RECOVERY_POINT", "RESTORE",
           "RESTORE_DRILL"]
