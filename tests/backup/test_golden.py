"""Planner golden tests: every example BackupPolicy renders exactly the stored manifests, and
every rendered object is valid Kubernetes 1.30 (strict: unknown fields are errors).

Regenerate after a deliberate change with ``LIFELINE_REGENERATE_GOLDEN=1 pytest tests/backup``
and review the diff by eye.
"""
from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from lifeline.planning import backup, objects_reader, snapshot
from tests.discovery import SERVED

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("backuppolicy-*.yaml"))
FACTS = backup.Facts(agent_image="ghcr.io/lifeline-dr/lifeline:0.1.0", served=SERVED)
REGENERATE = os.environ.get("LIFELINE_REGENERATE_GOLDEN") == "1"


def example(path: Path) -> dict:
    body = yaml.safe_load(path.read_text())
    body["metadata"].update(namespace="hospital", uid="00000000-0000-4000-8000-000000000001", generation=1)
    return body


def render(body: dict) -> list[dict]:
    try:
        docs = backup.plan(body, FACTS)
    except backup.PlanError as exc:
        return [{"planError": {"condition": exc.condition, "reason": exc.reason, "message": exc.message}}]
    docs = docs + [backup.on_demand_job(body, FACTS, "2026-11-23T10:00:00Z")] + objects_reader.plan(body, SERVED)
    if "volumeSnapshot" in body["spec"]["source"]:  # what the operator makes of one trigger Job
        trigger = {"name": "lis-volume-full-29401560", "uid": "t-1", "type": "full", "trigger": "Schedule"}
        snap = snapshot.volume_snapshot(body, trigger)
        ready = dict(snap, status={"readyToUse": True, "restoreSize": "20Gi"})
        source = {"spec": {"storageClassName": "ceph-rbd", "resources": {"requests": {"storage": "20Gi"}}}}
        claim = snapshot.data_claim(body, trigger, ready, source)
        docs += [snap, claim, snapshot.mover_job(body, FACTS, trigger, claim["metadata"]["name"])]
    return docs


def dump(docs: list[dict]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, width=100) for d in docs)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_renders_exactly_the_golden_manifests(path):
    text = dump(render(example(path)))
    golden = GOLDEN / f"{path.stem}.yaml"
    if REGENERATE or not golden.exists():
        golden.write_text(text)
        if not REGENERATE:
            pytest.fail(f"{golden.name} did not exist: written now, review it and commit it")
    assert text == golden.read_text(), f"{path.name} renders differently from {golden.name} (see its docstring)"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_rendered_object_is_valid_kubernetes(path):
    # VolumeSnapshots are a CRD's (external-snapshotter): kubernetes-validate has no schema for them
    docs = [d for d in render(example(path)) if "planError" not in d and d.get("kind") != "VolumeSnapshot"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_the_goldens_cover_every_example():
    assert {p.stem for p in EXAMPLES} == {p.stem for p in GOLDEN.glob("*.yaml")}
    assert len(EXAMPLES) >= 3
