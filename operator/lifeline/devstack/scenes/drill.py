"""Demo scene: a restore drill of the backup scene's policy, timed against its RTO.

Runs after :mod:`lifeline.devstack.scenes.backup` (whose ``icu-trends`` policy has two recovery
points in local repositories). It applies a RestoreDrill (mode Once, the latest point, a file-count
check as the verify command); the operator picks the point and creates the sandbox, the restore
Job and then the verify Job, which :class:`~lifeline.devstack.job_runner.JobRunner` runs for real
(the agent restores into a fresh directory standing in for the sandbox PVC). The scene prints the
sandbox, the run as `lifeline drill report` shows it, and the measured restore, verify and total
time against the RTO.
"""
from __future__ import annotations

from pathlib import Path

from lifeline.api import BY_KIND

from . import backup as backup_scene

NAMESPACE = backup_scene.NAMESPACE
DRILL = "icu-trends-demo-drill"
INFO = BY_KIND["RestoreDrill"]


def restore_drill() -> dict:
    return {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RestoreDrill",
        "metadata": {"name": DRILL},
        "spec": {
            "policyName": backup_scene.POLICY, "mode": "Once", "point": {"strategy": "Latest"},
            "sandbox": {"ttl": "10m"},
            "verify": {"timeout": "1m", "command": {
                "image": "busybox:1.36", "command": ["sh", "-c", "ls $LIFELINE_RESTORED/ward-3 | wc -l"],
                "expectOutput": "8"}},
        },
    }


def _last(emulator) -> dict:
    return ((emulator.stored(INFO.resource, NAMESPACE, DRILL) or {}).get("status") or {}).get("lastRun") or {}


async def run(emulator, kubeconfig, workdir, say) -> dict:
    from lifeline.commands.drill import describe, table
    from lifeline.devstack.job_runner import JobRunner
    from lifeline.kube import Kube

    root = Path(workdir)
    # the backup scene's repositories, where the sandbox's mirror claims of the same names point
    volumes = {claim: root / "backup-scene" / "volumes" / d for claim, d in backup_scene.CLAIMS.items()}
    kube = Kube.connect(kubeconfig)
    try:
        await kube.create(INFO, NAMESPACE, restore_drill())
    finally:
        kube.close()
    say(f"\napplied           RestoreDrill {NAMESPACE}/{DRILL}: restore the latest point of "
        f"{backup_scene.POLICY} into a sandbox, expect 8 files in ward-3")
    started = await emulator.wait_for(lambda: (r := _last(emulator)).get("outcome") and r, timeout=30)
    if started.get("sandbox"):
        sandbox = started["sandbox"]
        quota = emulator.stored("v1/resourcequotas", sandbox, "drill")
        deny = emulator.stored("networking.k8s.io/v1/networkpolicies", sandbox, "default-deny")
        say(f"sandbox           namespace {sandbox} for point {started.get('recoveryPoint')}: "
            f"quota {'pods=' + quota['spec']['hard']['pods'] if quota else 'MISSING'}, "
            f"NetworkPolicy {'default-deny (no egress)' if deny else 'MISSING'}")
        async with JobRunner.from_kubeconfig(kubeconfig, workdir=root / "drill-scene" / "pods",
                                             volumes=volumes) as runner:
            for _ in range(2):  # the restore Job, then (once the operator made it) the verify Job
                for result in await runner.run_pending(sandbox):
                    say(f"ran               Job {sandbox}/{result.job}: {result.phase}")
                await emulator.wait_for(lambda: _last(emulator).get("phase") != "Restoring", timeout=30)
                if _last(emulator).get("phase") != "Verifying":
                    break
    final = await emulator.wait_for(lambda: (r := _last(emulator)).get("outcome") not in (None, "Running") and r,
                                    timeout=30)
    history = ((emulator.stored(INFO.resource, NAMESPACE, DRILL) or {}).get("status") or {}).get("history") or []
    say(f"\n$ lifeline drill report {DRILL}")
    say(table(history))
    say(f"\ndrill             {describe(final)}")
    if final.get("outcome") != "Succeeded":
        say(f"                  {final.get('message')}")
    keys = ("restoreSeconds", "verifySeconds", "totalSeconds", "rtoSeconds", "rtoMet", "bytesRestored", "outcome",
            "reason")
    return {**{k: final.get(k) for k in keys}, "ok": final.get("outcome") == "Succeeded"}
