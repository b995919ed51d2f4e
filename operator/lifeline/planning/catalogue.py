"""A policy's destinations -> the RecoveryPoints a cluster lost. Pure.

RecoveryPoints live beside their policy; when its namespace is deleted (the disaster the objects
restore is for) or a cluster is rebuilt, the points are gone from the API while the repositories
still hold every backup. Applying the policy again (by hand or from Git) and asking for adoption
(annotation ``dr.lifeline.io/adopt-points=<any new value>``, or ``lifeline points adopt``) runs one
catalogue Job: the agent lists the policy's points in each destination, opening each with the key
(so a point that does not authenticate is never adopted), one log line a point
(:data:`lifeline.messages.CATALOGUE_LINE`). The operator reads them and makes the RecoveryPoints it
does not have, as a backup Job would have made them:

- copies of one backup Job (the agent tags every copy ``run=<id>``) become one point; a copy written
  before that tag existed is a point of its own;
- a copy whose ``snapshotId`` a RecoveryPoint already records is left alone (adoption may run again);
- the name is the one a backup would have had (``<policy>-<start>``), the parent the point whose copy
  is the parent copy, and ``tags.adopted`` says where it came from.

The operator trusts the listing no more than it trusts a backup Job's summary: a restore checks the
manifest checksum and authenticates every chunk whatever a RecoveryPoint says.
"""
from __future__ import annotations

import json

from lifeline import API_VERSION
from lifeline.clock import parse_time
from lifeline.labels import ANN_ADOPT_POINTS, ANN_POLICY, LABEL_CATALOGUE
from lifeline.messages import CATALOGUE_LINE
from lifeline.objects import owner_reference, short_hash

from . import backup
from .backup_points import point_name

COMPONENT = "catalogue"
TTL = 7 * 86400  # a finished catalogue Job stays a week for `kubectl logs`
RUN_TAG = "run="


def job_name(policy: str, request: str) -> str:
    return backup.child_name(policy, f"adopt-{short_hash(request, 8)}", backup.JOB_NAME_MAX)


def request_of(policy_body: dict) -> str | None:
    return ((policy_body.get("metadata") or {}).get("annotations") or {}).get(ANN_ADOPT_POINTS) or None


def job(policy_body: dict, facts: backup.Facts, request: str) -> dict:
    """The catalogue Job an adoption request runs: the policy's prune pod, listing instead of pruning.

    It carries its own label, not the policy's: the BackupPolicy controller's backup and prune records
    never see it."""
    spec = backup.parse_spec(policy_body)
    meta = policy_body["metadata"]
    policy = meta["name"]
    template = backup.job_template(policy_body, spec, facts, "catalogue", None, None)
    lbl = {k: v for k, v in template["metadata"]["labels"].items() if k != backup.LABEL_POLICY}
    lbl[LABEL_CATALOGUE] = backup.label_value(policy)
    template["spec"]["template"]["metadata"]["labels"] = dict(lbl)
    return json.loads(json.dumps({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(policy, request), "namespace": meta.get("namespace", ""), "labels": lbl,
                     "annotations": {ANN_POLICY: policy, ANN_ADOPT_POINTS: request},
                     "ownerReferences": [owner_reference(policy_body)]},
        "spec": {**template["spec"], "backoffLimit": 0, "ttlSecondsAfterFinished": TTL},
    }))


def listed(log: str) -> list[dict]:
    """The points a catalogue Job's log lists (lines that are not whole JSON objects are skipped)."""
    out = []
    for line in log.splitlines():
        if not line.startswith(CATALOGUE_LINE):
            continue
        try:
            row = json.loads(line[len(CATALOGUE_LINE):])
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("point_id") and row.get("destination") and row.get("manifest_checksum"):
            out.append(row)
    return out


def _run_of(row: dict) -> str:
    tags = [t for t in row.get("tags") or [] if isinstance(t, str) and t.startswith(RUN_TAG)]
    return tags[0] if tags else f"copy={row['destination']}/{row['point_id']}"


def adopt(policy_body: dict, rows: list[dict], existing: list[tuple[str, list[str]]]) -> list[dict]:
    """The RecoveryPoints to create for ``rows`` (listed copies) that ``existing`` points, as
    (name, snapshot ids of its copies), do not record."""
    meta = policy_body["metadata"]
    policy, namespace = meta["name"], meta.get("namespace", "")
    spec = backup.parse_spec(policy_body)
    destinations = {d.name for d in spec.destinations}
    by_snapshot: dict[str, str | None] = {sid: name for name, ids in existing for sid in ids}
    known = set(by_snapshot)
    runs: dict[str, list[dict]] = {}
    for row in rows:
        if row["destination"] in destinations and row["point_id"] not in known:
            runs.setdefault(_run_of(row), []).append(row)
    taken = {name for name, _ in existing}
    retain = (policy_body.get("spec") or {}).get("deletionPolicy", "Retain") not in ("Delete", "Shred")
    made: list[dict] = []
    ordered = sorted(runs.values(), key=lambda copies: min(str(c.get("start_time") or "") for c in copies))
    for copies in ordered:  # oldest first: a parent is named before its children
        copies.sort(key=lambda c: c["destination"])
        for c in copies:
            by_snapshot[c["point_id"]] = None  # named below
        first = copies[0]
        start = parse_time(min(str(c.get("start_time")) for c in copies))
        types = {c.get("type") for c in copies}
        type_ = first.get("type") if len(types) == 1 else "incremental"
        name = point_name(policy, start, taken, str(type_))
        taken.add(name)
        for c in copies:
            by_snapshot[c["point_id"]] = name
        parent = next((by_snapshot.get(c.get("parent_id")) for c in copies if by_snapshot.get(c.get("parent_id"))), None)
        point_spec: dict = {
            "policyName": policy, "type": type_,
            "copies": [_copy(c, type_) for c in copies],
            "sizeBytes": int(first.get("size_bytes") or 0),
            "manifestChecksum": first["manifest_checksum"],
            "keyRef": _key_ref(first.get("key_ref"), spec.encryption.key_ref),
            "startTime": min(str(c.get("start_time")) for c in copies),
            "completionTime": max(str(c.get("completion_time")) for c in copies),
            "tags": {"adopted": "catalogue"},
        }
        if first.get("files") is not None:
            point_spec["files"] = int(first["files"])
        if first.get("chunks_total") is not None:
            point_spec["chunks"] = {"total": int(first["chunks_total"]), "new": int(first.get("chunks_new") or 0)}
        if parent and parent != name:
            point_spec["parent"] = parent
        point_meta: dict = {"name": name, "namespace": namespace,
                            "labels": backup.labels(policy, "recovery-point", str(type_)),
                            "annotations": {ANN_POLICY: policy}}
        if not retain:  # as a backup's point: owned by the policy unless its points outlive it
            point_meta["ownerReferences"] = [{**owner_reference(policy_body), "controller": False}]
        made.append({"apiVersion": API_VERSION, "kind": "RecoveryPoint", "metadata": point_meta, "spec": point_spec})
    return made


def _key_ref(recorded: str | None, policy_ref: str) -> str:
    """The key the point was made with: the repository's record, unless that is the Job's own copy of a
    Secret's key (a file:// path inside the pod), which the policy names as secret://."""
    return recorded if recorded and not recorded.startswith("file://") else policy_ref


def _copy(row: dict, type_) -> dict:
    out = {"destination": row["destination"], "repository": row.get("repository") or "",
           "snapshotId": row["point_id"], "storedBytes": int(row.get("stored_bytes") or 0),
           "manifestChecksum": row["manifest_checksum"]}
    if row.get("type") != type_:
        out["type"] = row.get("type")
    if row.get("parent_id"):
        out["parentSnapshotId"] = row["parent_id"]
    return out
