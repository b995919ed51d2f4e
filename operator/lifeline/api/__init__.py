"""Pydantic models for every Lifeline kind: the single source of truth for the CRDs."""
from .registry import BY_KIND, BY_PLURAL, KINDS, KindInfo

__all__ = ["BY_KIND", "BY_PLURAL", "KINDS", "KindInfo"]
