"""Adoption on the real control plane: a policy's RecoveryPoints are lost with its namespace (here: the
policy and its points deleted), the policy is applied again, and `lifeline backup adopt` makes the
points again from what the destinations hold -- as the backup Jobs had recorded them, nothing
else: a point planted in the bucket that does not open with the key is not adopted."""
from __future__ import annotations

import asyncio
import json
import secrets
import struct
import sys

import pytest

from lifeline.labels import LABEL_CATALOGUE, LABEL_POLICY

from .conftest import events, points, policy, settled

pytestmark = pytest.mark.slow
KEPT = ("type", "copies", "sizeBytes", "files", "chunks", "manifestChecksum", "keyRef", "startTime", "completionTime",
        "parent")


async def adopt(kube, name: str = "pacs") -> tuple[int, str]:
    """``lifeline backup adopt NAME --wait 60`` as the admin; (exit code, what it printed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifeline.cli", "backup", "adopt", name, "--wait", "60", "-n", kube.namespace,
        "--kubeconfig", str(kube.cluster.kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode, out.decode()


def plant_forged_point(repository) -> str:
    """A point object whose clear header was edited (a bigger size, a new id): what someone with write
    access to the bucket could put there. Its sealed tree no longer matches: it must not be adopted."""
    real = sorted((repository / "points").iterdir())[0]
    data = real.read_bytes()
    (hlen,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[12:12 + hlen])
    forged_id = secrets.token_hex(16)
    header.update(id=forged_id, size_bytes=header["size_bytes"] * 10)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    (repository / "points" / forged_id).write_bytes(data[:8] + struct.pack("<I", len(text)) + text + data[12 + hlen:])
    return forged_id


async def test_a_lost_catalogue_is_adopted_again_from_the_destinations(kube, seeded, volumes, clock):
    body = policy()
    async with kube.operator(clock=clock):
        kube.create(body)
        await settled(kube, "pacs", generation=1)
        for cron in ("pacs-full", "pacs-incremental"):
            run = await kube.run_cronjob(cron)
            assert run.phase == "Succeeded", kube.job_log(run.job)
        recorded = await kube.wait_for(lambda: len(points(kube)) == 2 and points(kube), timeout=20)
        assert recorded[1]["spec"]["parent"] == recorded[0]["metadata"]["name"]
        forged = plant_forged_point(volumes["backup-local"] / "repos" / "pacs")

        # The namespace's catalogue is lost: the policy and its points are gone; the repositories stay.
        kube.delete("backuppolicies", "pacs")
        for point in recorded:
            kube.delete("recoverypoints", point["metadata"]["name"])
        await kube.wait_for(lambda: not points(kube) and not kube.stored("backuppolicies", None, "pacs"))

        kube.create(policy())  # applied again, by hand or from Git
        code, said = await adopt(kube)
        assert code == 0, said
        assert "adopted 2 points" in said and "listed: 2 in local, 2 in offsite" in said, said
        assert "not listed: local: 1 points unreadable" in said, said
        adopted = points(kube)
        assert [p["metadata"]["name"] for p in adopted] == [p["metadata"]["name"] for p in recorded]
        for before, after in zip(recorded, adopted):
            assert {k: before["spec"].get(k) for k in KEPT} == {k: after["spec"].get(k) for k in KEPT}
            assert after["spec"]["tags"] == {"adopted": "catalogue"}
        assert forged not in json.dumps(adopted), "a point that does not open with the key is never adopted"
        [event] = events(kube, "pacs", "PointsAdopted")
        assert "adopted 2 points" in event["message"]

        # Asking again adopts nothing twice.
        code, said = await adopt(kube)
        assert code == 0 and "adopted 0 points" in said, said
        assert len(points(kube)) == 2
        # Its Jobs are the policy's children, never read as its backups (they carry no policy label).
        catalogue_jobs = kube.objects("batch/v1/jobs", selector=LABEL_CATALOGUE)
        assert len(catalogue_jobs) == 2 and all(LABEL_POLICY not in j["metadata"]["labels"] for j in catalogue_jobs)
