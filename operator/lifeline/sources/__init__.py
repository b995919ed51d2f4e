"""Backup sources, one room each: everything the rest of the house asks of a kind of source.

A BackupPolicy's ``spec.source`` names exactly one kind; :func:`room_of` gives the room that
answers for it (:class:`~lifeline.sources.base.SourceRoom`). The backup planner, the status
planner, restores and drills ask the room instead of branching on the kind, and the job plan
names the source with the API's word. Adding a kind: its model in
:mod:`lifeline.api.backuppolicy`, one module here and its line in :data:`ROOMS`, docs and tests
(docs/architecture.md, "How to add a source kind").
"""
from __future__ import annotations

from lifeline.api.backuppolicy import BackupPolicySpec

from . import command, continuous, pvc, resources, volume_snapshot
from .base import Availability, BackupPod, PlanError, Ref, Seen, SourceRoom

ROOMS: dict[str, SourceRoom] = {r.kind: r for r in (pvc.ROOM, volume_snapshot.ROOM, command.ROOM, continuous.ROOM,
                                                    resources.ROOM)}


def room_of(spec: BackupPolicySpec) -> SourceRoom:
    """The room of the one source kind the policy sets."""
    return next(r for r in ROOMS.values() if r.settings(spec) is not None)


__all__ = ["ROOMS", "Availability", "BackupPod", "PlanError", "Ref", "Seen", "SourceRoom", "room_of"]
