"""RestoreDrill end to end: the real operator against the emulator, the real agent through the job
runner; a backed-up directory restored into a sandbox, verified, timed, recorded, cleaned up."""
from __future__ import annotations

import filecmp

from lifeline.api import BY_KIND
from tests.integration.operator_harness import metric, running_operator

from .conftest import NS, policy, wait_event

DRILLS = BY_KIND["RestoreDrill"].resource
POLICIES = BY_KIND["BackupPolicy"].resource


def drill(name="pacs-drill", **spec) -> dict:
    body = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill", "metadata": {"name": name},
            "spec": {"policyName": "pacs", "mode": "Once", "point": {"strategy": "Latest"},
                     "verify": {"command": {"image": "busybox:1.36",
                                            "command": ["sh", "-c", "cat $LIFELINE_RESTORED/series/index.json"],
                                            "expectOutput": '{"studies": 1}'}},
                     **spec}}
    return body


def last_run(emulator, name="pacs-drill") -> dict:
    return ((emulator.stored(DRILLS, NS, name) or {}).get("status") or {}).get("lastRun") or {}


async def backed_up(emulator, runner, api, body=None) -> None:
    await api.create(body or policy())
    await emulator.wait_for(lambda: emulator.stored("batch/v1/cronjobs", NS, "pacs-full"), timeout=20)
    result = await runner.trigger(NS, "pacs-full")
    assert result.phase == "Succeeded", result.containers["agent"].log.read_text()[-2000:]
    await emulator.wait_for(lambda: ((emulator.stored(POLICIES, NS, "pacs") or {}).get("status") or {})
                            .get("recoveryPoints"), timeout=20)


async def run_drill(emulator, runner, name="pacs-drill") -> dict:
    run = await emulator.wait_for(lambda: last_run(emulator, name).get("sandbox") and last_run(emulator, name),
                                  timeout=20)
    sandbox = run["sandbox"]
    await runner.run_pending(sandbox)
    await emulator.wait_for(lambda: last_run(emulator, name).get("phase") != "Restoring", timeout=20)
    if last_run(emulator, name).get("phase") == "Verifying":
        await runner.run_pending(sandbox)
    return await emulator.wait_for(lambda: (r := last_run(emulator, name)).get("outcome") not in (None, "Running")
                                   and r, timeout=20)


async def test_directory_drill_restores_verifies_measures_and_cleans_up(emulator, kubeconfig, api, cluster, runner,
                                                                      volumes, clock):
    async with running_operator(kubeconfig, emulator, clock=clock) as ctx:
        await backed_up(emulator, runner, api)
        before = len(emulator.writes)
        await api.create(drill())
        run = await run_drill(emulator, runner)
        assert run["outcome"] == "Succeeded", run
        assert run["reason"] == "Verified"
        assert run["verifyOutput"] == '{"studies": 1}'
        assert run["restoreSeconds"] > 0 and run["verifySeconds"] > 0
        assert run["totalSeconds"] >= run["restoreSeconds"] + run["verifySeconds"] - 0.01
        assert run["rtoSeconds"] == 1800 and run["rtoMet"] is True
        assert run["bytesRestored"] == sum(p.stat().st_size for p in volumes["pacs-data"].rglob("*") if p.is_file())
        assert run["pointAgeSeconds"] == 0 and run["rpoMet"] is True
        sandbox = run["sandbox"]
        restored = runner.workdir / "claims" / sandbox / "restored"
        cmp = filecmp.dircmp(volumes["pacs-data"], restored)
        assert not cmp.left_only and not cmp.right_only and not cmp.diff_files

        ns = emulator.stored("v1/namespaces", None, sandbox)
        assert ns["metadata"]["labels"]["dr.lifeline.io/sandbox"] == "true"
        quota = emulator.stored("v1/resourcequotas", sandbox, "drill")
        assert quota["spec"]["hard"]["pods"] == "10"
        deny = emulator.stored("networking.k8s.io/v1/networkpolicies", sandbox, "default-deny")
        assert deny["spec"]["podSelector"] == {} and "Egress" in deny["spec"]["policyTypes"]
        assert "egress" not in deny["spec"]

        status = emulator.stored(DRILLS, NS, "pacs-drill")["status"]
        assert [r["name"] for r in status["history"]] == [run["name"]]
        await wait_event(emulator, "pacs-drill", "DrillSucceeded")
        labels = dict(namespace=NS, name="pacs-drill", policy="pacs", tier="B")
        assert metric(ctx, "lifeline_drill_success", **labels) == 1
        assert metric(ctx, "lifeline_drill_rto_met", **labels) == 1
        assert metric(ctx, "lifeline_drill_duration_seconds", **labels) == run["totalSeconds"]
        assert metric(ctx, "lifeline_drill_runs_total", **labels, outcome="Succeeded") == 1
        assert metric(ctx, "lifeline_drill_max_interval_seconds", **labels) == 93 * 86400

        # the sandbox stays until its TTL (1h by default) has passed on the injected clock
        clock.advance(3599)
        await emulator.wait_for(lambda: emulator.count_writes(subresource="status", since=before) >= 1)
        assert emulator.stored("v1/namespaces", None, sandbox) is not None
        clock.advance(2)
        await emulator.wait_for(lambda: emulator.stored("v1/namespaces", None, sandbox) is None, timeout=20)
        await emulator.wait_for(lambda: last_run(emulator).get("sandboxDeleted") is True, timeout=20)

        # nothing outside the sandbox was written but the drill's own status and Events
        outside = [(w.method, w.path) for w in emulator.writes[before:]
                   if f"/namespaces/{sandbox}" not in w.path and not w.path.endswith(f"/namespaces/{sandbox}")
                   and "/restoredrills" not in w.path and "/events" not in w.path
                   and "/backuppolicies/pacs/status" not in w.path and "/jobs/pacs-full-" not in w.path]
        assert outside == [("POST", "/api/v1/namespaces")], outside  # the sandbox's own creation
        assert emulator.stored("v1/namespaces", None, NS) is not None


async def test_corrupted_chunk_fails_the_drill_with_the_reason_and_keeps_nothing_outside(
        emulator, kubeconfig, api, cluster, runner, volumes, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await backed_up(emulator, runner, api)
        for pack in (volumes["backup-local"] / "repos" / "pacs").rglob("*"):
            if pack.is_file() and "/data/" in str(pack):
                blob = bytearray(pack.read_bytes())
                blob[len(blob) // 2] ^= 0xFF  # one flipped bit inside a chunk
                pack.write_bytes(bytes(blob))
        await api.create(drill(sandbox={"ttl": "10m"}))
        run = await run_drill(emulator, runner)
        assert run["outcome"] == "Failed"
        assert run["reason"] == "DamagedData", run
        assert "damaged" in run["message"]
        await wait_event(emulator, "pacs-drill", "DrillFailed")
        # failed drills are cleaned up too (keepOnFailure is off)
        clock.advance(601)
        await emulator.wait_for(lambda: emulator.stored("v1/namespaces", None, run["sandbox"]) is None, timeout=20)


async def test_a_drill_slower_than_the_rto_records_rto_not_met(emulator, kubeconfig, api, cluster, runner, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await backed_up(emulator, runner, api, policy(objectives={"rpo": "15m", "rto": "1ms"}))
        await api.create(drill())
        run = await run_drill(emulator, runner)
        assert run["outcome"] == "Succeeded" and run["rtoSeconds"] == 0.001
        assert run["rtoMet"] is False
        assert "longer than the RTO" in run["message"]


async def test_wrong_output_fails_the_drill_with_the_reason(emulator, kubeconfig, api, cluster, runner, clock):
    async with running_operator(kubeconfig, emulator, clock=clock):
        await backed_up(emulator, runner, api)
        body = drill()
        body["spec"]["verify"]["command"]["expectOutput"] = '{"studies": 2}'
        await api.create(body)
        run = await run_drill(emulator, runner)
        assert (run["outcome"], run["reason"]) == ("Failed", "UnexpectedOutput")
        assert "expected '{\"studies\": 2}'" in run["message"]
