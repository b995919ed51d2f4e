"""Path 2 of issue 9: a production Restore of a point the operator itself recorded (a backup run by
the real Job controller), approved by two people through the operator's admission webhook
(identity from the API server's AdmissionReview: client certificates; rights by RBAC, through a
SubjectAccessReview), run by the real agent: the data restored matches."""
from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import pytest

from lifeline.cli import build_parser
from lifeline.commands import restore as restore_cmd
from lifeline.devstack.install import bind_people
from lifeline.planning import restore_run

from .conftest import CLAIMS, points, policy, recorded, settled

RESTORES = "restores"


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def restore_body(name: str, point: str) -> dict:
    return {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": name},
            "spec": {"recoveryPoint": point, "reason": "INC-4711: table corruption",
                     "target": {"pvc": {"claimName": "pacs-restored"}}}}


@pytest.fixture
def claims():
    """The backup's claims and the one the Restore writes into (made by ``seeded``, all at once)."""
    return (*CLAIMS, "pacs-restored")


@pytest.fixture
def volumes(volumes):  # noqa: F811 - the backup volumes plus the directory behind the Restore's claim
    volumes["pacs-restored"] = volumes["pacs-data"].parent / "pacs-restored"
    volumes["pacs-restored"].mkdir()
    return volumes


@pytest.fixture
def people(kube, tmp_path) -> dict[str, Path]:
    """A kubeconfig per person (client certificates), bound as a hospital binds them (docs/restore.md):
    the DBA group may request, the approver group and one named person (carol) may approve."""
    bind_people(kube.request, kube.namespace)  # alice: DBA and approver; bob: approver; carol: DBA
    kube.seed("rbac.authorization.k8s.io/v1/rolebindings", {
        "metadata": {"name": "carol-approves"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "lifeline-restore-approver"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]})
    return {p: kube.cluster.kubeconfig_for(p, tmp_path / f"kubeconfig-{p}", namespace=kube.namespace)
            for p in ("alice", "bob", "carol")}


async def decide(kube, kubeconfig: Path, verb: str, name: str) -> tuple[int, str]:
    """`lifeline restore approve|reject NAME` as the person of ``kubeconfig``: (exit code, output)."""
    args = build_parser().parse_args(["restore", verb, name, "--kubeconfig", str(kubeconfig), "-n", kube.namespace])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = await restore_cmd._decide(args)
    return code, out.getvalue()


def phase(kube, name: str) -> str | None:
    return ((kube.stored(RESTORES, None, name) or {}).get("status") or {}).get("phase")


async def test_a_recorded_point_restored_after_two_approvals_matches(seeded, kube, people, clock, volumes):
    async with kube.operator(clock=clock):
        kube.create(policy())
        await settled(kube)
        backup = await kube.run_cronjob("pacs-full")
        assert backup.phase == "Succeeded", kube.job_log(backup.job)
        await recorded(kube, backup.job)
        [point] = await kube.wait_for(lambda: points(kube), timeout=20)
        (volumes["pacs-data"] / "study-1.dcm").write_bytes(b"corrupted")  # the incident after the backup

        name = "his-after-corruption"
        made = kube.create(restore_body(name, point["metadata"]["name"]), user="alice")
        assert made["metadata"]["annotations"]["dr.lifeline.io/requested-by"] == "alice", "from the API server"
        await kube.wait_for(lambda: phase(kube, name) == "PendingApproval")
        assert kube.stored("jobs", None, restore_run.job_name(name)) is None, "nothing runs unapproved"
        code, out = await decide(kube, people["alice"], "approve", name)
        assert code != 0 and phase(kube, name) == "PendingApproval", out  # never the requester,
        assert "requested this restore and cannot approve it" in out, out  # though she holds the role
        for person in ("bob", "carol"):
            code, out = await decide(kube, people[person], "approve", name)
            assert code == 0, out
        await kube.wait_for(lambda: phase(kube, name) in ("Running", "Succeeded"))
        approvers = {a.get("user") for a in kube.stored(RESTORES, None, name)["status"].get("approvals") or []}
        assert approvers == {"bob", "carol"}

        result = await kube.finished(restore_run.job_name(name))
        assert result.phase == "Succeeded", kube.job_log(result.job)
        await kube.wait_for(lambda: phase(kube, name) == "Succeeded")
    restored = tree(volumes["pacs-restored"])
    assert restored["series/index.json"] == hashlib.sha256(b'{"studies": 1}').hexdigest()
    assert restored["study-1.dcm"] == hashlib.sha256(b"DICM" + bytes(range(256)) * 400).hexdigest()
    assert set(restored) == {"study-1.dcm", "series/index.json"}
