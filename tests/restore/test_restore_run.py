"""After two approvals the Restore runs through the real agent (a Pod of the real Job controller):
the data matches; a non-empty target is refused with nothing written; an agent failure mid-restore
ends Failed with the reason and the claim marked failed, never passed off as good data."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifeline.keys import create_key_file
from lifeline.planning import restore_run
from tests.backup.conftest import policy

from .conftest import restore_body
from .helpers import catalogue, claim_dir, phase, request_and_approve, stored

pytestmark = pytest.mark.asyncio
AGENT = [sys.executable, "-m", "lifeline.agent"]


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def backed_up(tmp_path, kube):
    """A real backup of a directory by the agent, on claims of the test's namespace."""
    vols = {n: tmp_path / "volumes" / n for n in ("pacs-data", "backup-local", "backup-offsite")}
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
    for claim, path in vols.items():
        kube.claim(claim, path)
    kube.secret("pacs-key", {"key": key.read_bytes()})
    point = {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint", "metadata": {"name": "pacs-20261123-0200"},
        "spec": {"policyName": "pacs", "type": "full", "sizeBytes": summary.get("size_bytes", 0),
                 "manifestChecksum": summary["manifest_checksum"], "keyRef": "secret://pacs-key/key",
                 "startTime": "2026-11-23T02:00:00Z", "completionTime": "2026-11-23T02:01:00Z",
                 "copies": [{"destination": "local", "repository": "file:///destinations/local/repos/pacs",
                             "snapshotId": summary["point_id"]}]}}
    return vols, repo, point


def containers_run(kube, job: str) -> dict[str, int]:
    """Exit codes of the Job's pod's containers that ran."""
    [pod] = kube.objects("pods", selector=f"job-name={job}")[-1:]
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    return {c["name"]: c["state"]["terminated"]["exitCode"] for c in statuses if "terminated" in c["state"]}


async def test_after_two_approvals_the_data_is_restored(kube, operator, people, backed_up):
    vols, _, point = backed_up
    catalogue(kube, policy(), point)
    name = await request_and_approve(kube, people, restore_body())
    job = restore_run.job_name(name)
    # NewClaim: the new claim exists, labelled as being restored, and nothing runs before approval did
    claim = kube.stored("persistentvolumeclaims", None, "pacs-restored")
    assert claim["metadata"]["labels"][restore_run.LABEL_STATE] in ("restoring", "verified")
    result = await kube.finished(job)
    assert result.phase == "Succeeded", kube.job_log(job)
    await kube.wait_for(lambda: phase(kube, name) == "Succeeded")
    assert _tree(claim_dir(kube, "pacs-restored")) == _tree(vols["pacs-data"])
    status = stored(kube, name)["status"]
    assert status["jobName"] == job and status["completionTime"]
    claim = kube.stored("persistentvolumeclaims", None, "pacs-restored")
    assert claim["metadata"]["labels"][restore_run.LABEL_STATE] == "verified"  # the switch, after verification
    assert "ownerReferences" not in claim["metadata"]  # deleting the Restore never deletes restored data


async def test_non_empty_target_is_refused(kube, operator, people, backed_up):
    vols, _, point = backed_up
    catalogue(kube, policy(), point)
    before = _tree(vols["pacs-data"])
    body = restore_body("in-place", strategy="InPlace", target={"pvc": {"claimName": "pacs-data"}})
    name = await request_and_approve(kube, people, body)
    job = restore_run.job_name(name)
    result = await kube.finished(job)
    assert result.phase == "Failed" and "agent" not in containers_run(kube, job)  # the agent never started
    await kube.wait_for(lambda: phase(kube, name) == "Failed")
    status = stored(kube, name)["status"]
    assert "TargetNotEmpty" in status["message"] and "overwrite: true" in status["message"]
    assert _tree(vols["pacs-data"]) == before


async def test_agent_failure_mid_restore_fails_cleanly(kube, operator, people, backed_up):
    vols, repo, point = backed_up
    catalogue(kube, policy(), point)
    packs = sorted(p for p in (repo / "data").rglob("*") if p.is_file())
    assert packs
    damaged = bytearray(packs[0].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # a flipped byte inside a chunk: authentication fails mid-restore
    packs[0].write_bytes(bytes(damaged))
    name = await request_and_approve(kube, people, restore_body("damaged"))
    result = await kube.finished(restore_run.job_name(name))
    assert result.phase == "Failed"
    await kube.wait_for(lambda: phase(kube, name) == "Failed")
    status = stored(kube, name)["status"]
    assert status["reason"] == "RestoreFailed" and "partial restore" in status["message"]
    claim = kube.stored("persistentvolumeclaims", None, "pacs-restored")
    assert claim["metadata"]["labels"][restore_run.LABEL_STATE] == "failed"
