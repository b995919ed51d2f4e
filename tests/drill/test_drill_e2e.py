"""RestoreDrill end to end on the real API server: the real operator, the real agent in Jobs of the
real Job controller (run by the process kubelet); a backed-up directory restored into a sandbox
namespace, verified, timed, recorded, and the sandbox deleted (emptied by the real namespace
controller) when its TTL has passed on the operator's clock."""
from __future__ import annotations

import filecmp
from pathlib import Path

from lifeline.planning import drill_sandbox
from tests.integration.operator_harness import metric

from .conftest import (
    DRILLS, backed_up, drill, last_run, policy, reconciled_since, run_drill, sandbox_deleted, sandbox_gone,
    wait_event,
)


def restored_dir(kube, sandbox: str) -> Path:
    """The host directory behind the sandbox's ``restored`` claim (the host-path provisioner's volume)."""
    claim = kube.stored("persistentvolumeclaims", sandbox, drill_sandbox.RESTORED_CLAIM)
    volume = kube.stored("persistentvolumes", None, claim["spec"]["volumeName"])
    return Path(volume["spec"]["hostPath"]["path"])


def mirrors(kube, sandbox: str) -> list[dict]:
    return kube.objects("persistentvolumes", namespace=None,
                        selector=f"{drill_sandbox.LABEL_SANDBOX_NAMESPACE}={sandbox}")


async def test_directory_drill_restores_verifies_measures_and_cleans_up(seeded, kube, volumes, clock):
    async with kube.operator(clock=clock) as ctx:
        await backed_up(kube)
        before = len(kube.writes)
        kube.create(drill())
        run = await run_drill(kube)
        assert run["outcome"] == "Succeeded", run
        assert run["reason"] == "Verified"
        assert run["verifyOutput"] == '{"studies": 1}'
        assert run["restoreSeconds"] > 0 and run["verifySeconds"] > 0
        assert run["totalSeconds"] >= run["restoreSeconds"] + run["verifySeconds"] - 0.01
        assert run["rtoSeconds"] == 1800 and run["rtoMet"] is True
        assert run["bytesRestored"] == sum(p.stat().st_size for p in volumes["pacs-data"].rglob("*") if p.is_file())
        # the backup finished after the clock's (frozen) start: the point is no older than "now"
        assert run["pointAgeSeconds"] == 0 and run["rpoMet"] is True
        sandbox = run["sandbox"]
        cmp = filecmp.dircmp(volumes["pacs-data"], restored_dir(kube, sandbox))
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files

        ns = kube.stored("namespaces", None, sandbox)
        assert ns["metadata"]["labels"]["dr.lifeline.io/sandbox"] == "true"
        quota = kube.stored("v1/resourcequotas", sandbox, "drill")
        assert quota["spec"]["hard"]["pods"] == "10"
        deny = kube.stored("networking.k8s.io/v1/networkpolicies", sandbox, "default-deny")
        assert deny["spec"]["podSelector"] == {} and "Egress" in deny["spec"]["policyTypes"]
        assert "egress" not in deny["spec"]
        # the repository reaches the sandbox as a read-only mirror of the claim's volume, never deleted with it
        [mirror] = mirrors(kube, sandbox)
        source = kube.stored("persistentvolumeclaims", None, "backup-local")["spec"]["volumeName"]
        assert mirror["metadata"]["annotations"][drill_sandbox.ANN_MIRROR] == source
        assert mirror["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert mirror["spec"]["accessModes"] == ["ReadOnlyMany"] and mirror["status"]["phase"] == "Bound"

        status = kube.stored(DRILLS, None, "pacs-drill")["status"]
        assert [r["name"] for r in status["history"]] == [run["name"]]
        await wait_event(kube, "pacs-drill", "DrillSucceeded")
        labels = dict(namespace=kube.namespace, name="pacs-drill", policy="pacs", tier="B")
        assert metric(ctx, "lifeline_drill_success", **labels) == 1
        assert metric(ctx, "lifeline_drill_rto_met", **labels) == 1
        assert metric(ctx, "lifeline_drill_duration_seconds", **labels) == run["totalSeconds"]
        assert metric(ctx, "lifeline_drill_runs_total", **labels, outcome="Succeeded") == 1
        assert metric(ctx, "lifeline_drill_max_interval_seconds", **labels) == 93 * 86400

        # the sandbox stays until its TTL (1h by default) has passed on the injected clock
        clock.advance(3599)
        await reconciled_since(kube)
        assert "deletionTimestamp" not in kube.stored("namespaces", None, sandbox)["metadata"]
        clock.advance(2)
        await kube.wait_for(lambda: last_run(kube).get("sandboxDeleted") is True, timeout=20)
        await kube.wait_for(lambda: sandbox_gone(kube, sandbox), timeout=60, interval=0.2)
        await kube.wait_for(lambda: mirrors(kube, sandbox) == [], timeout=20)
        assert Path(mirror["spec"]["hostPath"]["path"]).is_dir(), "the repository stays where it was"

        # nothing outside the sandbox was written but the drill's own status and Events (and the
        # backup's own bookkeeping), besides the sandbox namespace and its mirror volume themselves
        outside = [(w.method, w.resource, w.name) for w in kube.writes[before:]
                   if w.namespace != sandbox and not (w.resource == "namespaces" and w.name == sandbox)
                   and w.resource not in ("restoredrills", "events")
                   and not (w.resource == "backuppolicies" and w.subresource == "status")
                   and not (w.resource == "jobs" and (w.name or "").startswith("pacs-full-"))]
        assert sorted(outside) == [("DELETE", "persistentvolumes", mirror["metadata"]["name"]),
                                   ("POST", "persistentvolumes", mirror["metadata"]["name"])], outside
        assert kube.count_writes("namespaces", name=sandbox, method="POST") == 1
        assert kube.stored("namespaces", None, kube.namespace) is not None


async def test_corrupted_chunk_fails_the_drill_with_the_reason_and_keeps_nothing_outside(seeded, kube, volumes,
                                                                                         clock):
    async with kube.operator(clock=clock):
        await backed_up(kube)
        for pack in (volumes["backup-local"] / "repos" / "pacs").rglob("*"):
            if pack.is_file() and "/data/" in str(pack):
                blob = bytearray(pack.read_bytes())
                blob[len(blob) // 2] ^= 0xFF  # one flipped bit inside a chunk
                pack.write_bytes(bytes(blob))
        kube.create(drill(sandbox={"ttl": "10m"}))
        run = await run_drill(kube)
        assert run["outcome"] == "Failed"
        assert run["reason"] == "DamagedData", run
        assert "damaged" in run["message"]
        await wait_event(kube, "pacs-drill", "DrillFailed")
        # failed drills are cleaned up too (keepOnFailure is off)
        clock.advance(601)
        await kube.wait_for(lambda: last_run(kube).get("sandboxDeleted") is True, timeout=20)
        assert sandbox_deleted(kube, run["sandbox"])


async def test_a_drill_slower_than_the_rto_records_rto_not_met(seeded, kube, clock):
    async with kube.operator(clock=clock):
        await backed_up(kube, policy(objectives={"rpo": "15m", "rto": "1ms"}))
        kube.create(drill())
        run = await run_drill(kube)
        assert run["outcome"] == "Succeeded" and run["rtoSeconds"] == 0.001
        assert run["rtoMet"] is False
        assert "longer than the RTO" in run["message"]


async def test_wrong_output_fails_the_drill_with_the_reason(seeded, kube, clock):
    async with kube.operator(clock=clock):
        await backed_up(kube)
        body = drill()
        body["spec"]["verify"]["command"]["expectOutput"] = '{"studies": 2}'
        kube.create(body)
        run = await run_drill(kube)
        assert (run["outcome"], run["reason"]) == ("Failed", "UnexpectedOutput")
        assert "expected '{\"studies\": 2}'" in run["message"]
