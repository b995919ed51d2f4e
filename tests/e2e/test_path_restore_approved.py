"""Path 2 of issue 9: a production Restore of a point the operator itself recorded (a backup run by
the job runner), approved by two people through the operator's admission webhook (identity from the
AdmissionReview, rights by SubjectAccessReview), run by the real agent: the data restored matches."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lifeline.planning import restore_run
from tests.kube_client import Api
from tests.restore.conftest import emulator, fast_env, operator, people, restore_body, webhook_certs  # noqa: F401
from tests.restore.helpers import decide, phase
from tests.restore.helpers import stored as stored_restore

from .conftest import NS, points, policy, recorded, settled


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def volumes(volumes):  # noqa: F811 - the backup volumes plus the claim the Restore creates
    volumes["pacs-restored"] = volumes["pacs-data"].parent / "pacs-restored"
    volumes["pacs-restored"].mkdir()
    return volumes


async def test_a_recorded_point_restored_after_two_approvals_matches(
        operator, emulator, people, api, cluster, runner, volumes, clock):
    await api.create(policy())
    await settled(emulator)
    backup = await runner.trigger(NS, "pacs-full")
    assert backup.phase == "Succeeded", backup.containers["agent"].log.read_text()[-2000:]
    await recorded(emulator, backup.job)
    [point] = await emulator.wait_for(lambda: points(emulator), timeout=20)
    (volumes["pacs-data"] / "study-1.dcm").write_bytes(b"corrupted")  # the incident after the backup

    alice = Api(people["alice"])
    try:
        await alice.create(restore_body(point=point["metadata"]["name"]))
    finally:
        alice.client.close()
    name = "his-after-corruption"
    await emulator.wait_for(lambda: phase(emulator, name) == "PendingApproval")
    assert emulator.stored("batch/v1/jobs", NS, restore_run.job_name(name)) is None, "nothing runs unapproved"
    code, out = await decide(people["alice"], "approve", name)
    assert code != 0 and phase(emulator, name) == "PendingApproval", out  # never the requester
    for person in ("bob", "carol"):
        code, out = await decide(people[person], "approve", name)
        assert code == 0, out
    await emulator.wait_for(lambda: phase(emulator, name) == "Running")
    approvers = {a.get("user") for a in stored_restore(emulator, name)["status"].get("approvals") or []}
    assert approvers == {"bob@hospital.example", "carol@hospital.example"}

    result = await runner.run(NS, restore_run.job_name(name))
    assert result.phase == "Succeeded", result.containers["agent"].log.read_text()[-2000:]
    await emulator.wait_for(lambda: phase(emulator, name) == "Succeeded")
    restored = tree(volumes["pacs-restored"])
    assert restored["series/index.json"] == hashlib.sha256(b'{"studies": 1}').hexdigest()
    assert restored["study-1.dcm"] == hashlib.sha256(b"DICM" + bytes(range(256)) * 400).hexdigest()
    assert set(restored) == {"study-1.dcm", "series/index.json"}
