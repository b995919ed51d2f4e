"""What the restore tests share: people acting through the CLI, the catalogue they restore from,
and the operator's records."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from lifeline.cli import build_parser
from lifeline.commands import restore as restore_cmd
from tests.backup.conftest import events  # noqa: F401 - the restore tests' Events, as the backup tests read them

from .conftest import APPROVERS, REQUESTER

RESTORES = "restores"


async def decide(kubeconfig: Path, verb: str, name: str, namespace: str, comment: str = "") -> tuple[int, str]:
    """`lifeline restore approve|reject NAME` as the person of ``kubeconfig``: (exit code, output)."""
    args = build_parser().parse_args(["restore", verb, name, "--kubeconfig", str(kubeconfig), "-n", namespace,
                                      "--comment", comment])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = await restore_cmd._decide(args)
    return code, out.getvalue()


def stored(kube, name: str) -> dict:
    return kube.stored(RESTORES, None, name)


def phase(kube, name: str) -> str | None:
    return ((stored(kube, name) or {}).get("status") or {}).get("phase")


def catalogue(kube, policy: dict, point: dict) -> dict:
    """A policy and one of its points as the operator catalogued them (created as an admin, through
    the validating webhook: the operator must be running), the point Available."""
    kube.create(policy)
    created = kube.create(point)
    kube.patch("recoverypoints", created["metadata"]["name"], {"status": {"phase": "Available"}}, sub="status")
    return created


async def request_and_approve(kube, people, body) -> str:
    """The requester creates the Restore; the two approvers approve it through the CLI; it runs."""
    kube.create(body, user=REQUESTER)
    name = body["metadata"]["name"]
    await kube.wait_for(lambda: phase(kube, name) == "PendingApproval")
    for person in APPROVERS:
        code, out = await decide(people[person], "approve", name, kube.namespace)
        assert code == 0, out
    await kube.wait_for(lambda: phase(kube, name) in ("Running", "Succeeded", "Failed"))
    return name


def claim_dir(kube, claim: str) -> Path | None:
    """The host directory behind a bound claim (its host-path PersistentVolume)."""
    pvc = kube.stored("persistentvolumeclaims", None, claim) or {}
    volume = (pvc.get("spec") or {}).get("volumeName")
    if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
        return None
    return Path(kube.stored("persistentvolumes", None, volume)["spec"]["hostPath"]["path"])
