"""RecoveryPoint: one completed backup, as the catalogue that drills and restores read."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .common import DNSLabel, DNSName, KeyRef, Model, StatusBase

BackupType = Literal["full", "incremental", "differential"]


class PointCopy(Model):
    """Where one copy of the point lives."""

    destination: DNSLabel = Field(description="Destination name from the policy.")
    repository: str = Field(min_length=1, description="Repository URL, without credentials.")
    snapshot_id: str = Field(min_length=1, description="Id of the point's manifest in that repository.")
    stored_bytes: int | None = Field(None, ge=0, description="Bytes newly written to this repository.")
    type: BackupType | None = Field(None, description="Type this copy was taken as, when it differs from the point's.")
    parent_snapshot_id: str | None = Field(None, description="Id of this copy's parent in the same repository.")
    manifest_checksum: str | None = Field(
        None, pattern=r"^(sha256|blake3):[0-9a-f]{64}$", description="Checksum of this copy's manifest."
    )


class ChunkCounts(Model):
    total: int = Field(ge=0, description="Chunks the point refers to.")
    new: int = Field(ge=0, description="Chunks this point added to the repository.")


class RecoveryPointSpec(Model):
    """Facts about a finished backup; written once by Lifeline, never by hand."""

    policy_name: DNSName = Field(description="BackupPolicy that made this point.")
    type: BackupType
    parent: DNSName | None = Field(None, description="Point this one is relative to (incremental/differential).")
    copies: list[PointCopy] = Field(min_length=1, description="Every destination that holds the point.")
    size_bytes: int = Field(ge=0, description="Logical size of the data in the point.")
    files: int | None = Field(None, ge=0, description="Files in the point (directory sources).")
    chunks: ChunkCounts | None = None
    manifest_checksum: str = Field(
        pattern=r"^(sha256|blake3):[0-9a-f]{64}$", description="Checksum of the manifest, algorithm-prefixed."
    )
    key_ref: KeyRef = Field(description="Reference to the key-encryption key; never key material.")
    start_time: datetime
    completion_time: datetime
    tags: dict[str, str] = Field(default_factory=dict)


class RecoveryPointStatus(StatusBase):
    phase: Literal["Available", "Damaged", "Shredded", "Pruned"] | None = Field(
        None, description="Available until verify finds damage, its key is shredded, or prune removes it."
    )
    last_verified_time: datetime | None = None
