"""After two approvals the Restore runs through the real agent (the Job runner plays kubelet):
the data matches; a non-empty target is refused with nothing written; an agent failure mid-restore
ends Failed with the reason and the claim marked failed, never passed off as good data."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifeline.devstack.job_runner import JobRunner
from lifeline.keys import create_key_file
from lifeline.planning import restore_run
from tests.backup.conftest import policy
from tests.kube_client import Api

from .conftest import restore_body
from .helpers import NS, decide, phase, stored

pytestmark = pytest.mark.asyncio
AGENT = [sys.executable, "-m", "lifeline.agent"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def backed_up(tmp_path, emulator):
    """A real backup of a directory by the agent, catalogued as a RecoveryPoint of a BackupPolicy."""
    vols = {n: tmp_path / "volumes" / n for n in ("pacs-data", "backup-local", "backup-offsite", "pacs-restored")}
    for v in vols.values():
        v.mkdir(parents=True)
    src = vols["pacs-data"]
    (src / "study-1.dcm").write_bytes(b"DICM" + bytes(range(256)) * 4000)
    (src / "series").mkdir()
    (src / "series" / "index.json").write_text('{"studies": 1}')
    key = create_key_file(tmp_path / "kek")
    repo = vols["backup-local"] / "repos" / "pacs"
    subprocess.run([*AGENT, "init", "--repo", f"file://{repo}", "--key", f"file://{key}"], check=True,
                   capture_output=True)
    out = subprocess.run([*AGENT, "backup", str(src), "--repo", f"file://{repo}", "--key", f"file://{key}",
                          "--type", "full", "--json"], check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout)
    for claim in ("pacs-data", "backup-local", "backup-offsite"):
        emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": claim, "namespace": NS},
                                                     "spec": {"accessModes": ["ReadWriteOnce"]}})
    emulator.seed("v1/secrets", {"metadata": {"name": "pacs-key", "namespace": NS},
                                 "data": {"key": base64.b64encode(key.read_bytes()).decode()}})
    body = policy()
    body["metadata"]["namespace"] = NS
    emulator.seed("dr.lifeline.io/v1alpha1/backuppolicies", body)
    emulator.seed("dr.lifeline.io/v1alpha1/recoverypoints", {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint",
        "metadata": {"name": "pacs-20261123-0200", "namespace": NS},
        "spec": {"policyName": "pacs", "type": "full", "sizeBytes": summary.get("size_bytes", 0),
                 "manifestChecksum": summary["manifest_checksum"], "keyRef": "secret://pacs-key/key",
                 "startTime": "2026-11-23T02:00:00Z", "completionTime": "2026-11-23T02:01:00Z",
                 "copies": [{"destination": "local", "repository": "file:///destinations/local/repos/pacs",
                             "snapshotId": summary["point_id"]}]}})
    return vols, repo


async def _request_and_approve(emulator, people, body) -> str:
    alice = Api(people["alice"])
    try:
        await alice.create(body)
    finally:
        alice.client.close()
    name = body["metadata"]["name"]
    await emulator.wait_for(lambda: phase(emulator, name) == "PendingApproval")
    for person in ("bob", "carol"):
        code, out = await decide(people[person], "approve", name)
        assert code == 0, out
    await emulator.wait_for(lambda: phase(emulator, name) == "Running")
    return name


async def test_after_two_approvals_the_data_is_restored(operator, emulator, people, backed_up, kube_url, tmp_path,
                                                      clock):
    vols, _ = backed_up
    name = await _request_and_approve(emulator, people, restore_body())
    job = restore_run.job_name(name)
    # NewClaim: the new claim exists, labelled as being restored, and nothing runs before approval did
    claim = emulator.stored("v1/persistentvolumeclaims", NS, "pacs-restored")
    assert claim["metadata"]["labels"][restore_run.LABEL_STATE] == "restoring"
    async with JobRunner(kube_url, workdir=tmp_path / "pods", volumes=vols, clock=clock) as runner:
        result = await runner.run(NS, job)
    assert result.phase == "Succeeded", result.containers["agent"].log.read_text()[-2000:]
    await emulator.wait_for(lambda: phase(emulator, name) == "Succeeded")
    assert _tree(vols["pacs-restored"]) == _tree(vols["pacs-data"])
    status = stored(emulator, name)["status"]
    assert status["jobName"] == job and status["completionTime"]
    claim = emulator.stored("v1/persistentvolumeclaims", NS, "pacs-restored")
    assert claim["metadata"]["labels"][restore_run.LABEL_STATE] == "verified"  # the switch, after verification
    assert "ownerReferences" not in claim["metadata"]  # deleting the Restore never deletes restored data


async def test_non_empty_target_is_refused(operator, emulator, people, backed_up, kube_url, tmp_path, clock):
    vols, _ = backed_up
    before = _tree(vols["pacs-data"])
    body = restore_body("in-place", strategy="InPlace", target={"pvc": {"claimName": "pacs-data"}})
    name = await _request_and_approve(emulator, people, body)
    async with JobRunner(kube_url, workdir=tmp_path / "pods", volumes=vols, clock=clock) as runner:
        result = await runner.run(NS, restore_run.job_name(name))
    assert result.phase == "Failed" and "agent" not in result.containers  # the agent never started
    await emulator.wait_for(lambda: phase(emulator, name) == "Failed")
    status = stored(emulator, name)["status"]
    assert "TargetNotEmpty" in status["message"] and "overwrite: true" in status["message"]
    assert _tree(vols["pacs-data"]) == before


async def test_agent_failure_mid_restore_fails_cleanly(operator, emulator, people, backed_up, kube_url, tmp_path,
                                                       clock):
    vols, repo = backed_up
    packs = sorted(p for p in (repo / "data").rglob("*") if p.is_file())
    assert packs
    damaged = bytearray(packs[0].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # a flipped byte inside a chunk: authentication fails mid-restore
    packs[0].write_bytes(bytes(damaged))
    name = await _request_and_approve(emulator, people, restore_body("damaged"))
    async with JobRunner(kube_url, workdir=tmp_path / "pods", volumes=vols, clock=clock) as runner:
        result = await runner.run(NS, restore_run.job_name(name))
    assert result.phase == "Failed"
    await emulator.wait_for(lambda: phase(emulator, name) == "Failed")
    status = stored(emulator, name)["status"]
    assert status["reason"] == "RestoreFailed" and "partial restore" in status["message"]
    claim = emulator.stored("v1/persistentvolumeclaims", NS, "pacs-restored")
    assert claim["metadata"]["labels"][restore_run.LABEL_STATE] == "failed"
