"""Demo scene: a restore drill of the backup scene's policy, timed against its RTO.

Runs after :mod:`lifeline.devstack.scenes.backup` (whose ``icu-trends`` policy has two recovery
points in local repositories). It applies a RestoreDrill (mode Once, the latest point, a file-count
check as the verify command); the operator picks the point and creates the sandbox, the restore
Job and then the verify Job, which the real Job controller and the process kubelet run (the agent
restores into the sandbox's claim, the repository read through a read-only copy of its volume). The
scene prints the
sandbox, the run as `lifeline drill report` shows it, and the measured restore, verify and total
time against the RTO.
"""
from __future__ import annotations

from lifeline.api import RESTORE_DRILL as INFO
from lifeline.devstack import live
from lifeline.kube import Kube
from lifeline.printing import describe_drill_run, drill_table

from . import backup as backup_scene

NAMESPACE = backup_scene.NAMESPACE
DRILL = "icu-trends-demo-drill"


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


def _drill(cluster) -> dict:
    return live.stored(cluster, "RestoreDrill", NAMESPACE, DRILL) or {}


def _last(cluster) -> dict:
    return (_drill(cluster).get("status") or {}).get("lastRun") or {}


async def run(stack, say) -> dict:
    cluster = stack.cluster
    kube = Kube.connect(stack.kubeconfig)
    try:
        await kube.create(INFO, NAMESPACE, restore_drill())
    finally:
        kube.close()
    say(f"\napplied           RestoreDrill {NAMESPACE}/{DRILL}: restore the latest point of "
        f"{backup_scene.POLICY} into a sandbox, expect 8 files in ward-3")
    started = await live.until(lambda: (r := _last(cluster)).get("sandbox") and r, 60, "the drill to start")
    sandbox = started["sandbox"]
    quota = live.get(cluster, f"/api/v1/namespaces/{sandbox}/resourcequotas/drill")
    deny = live.get(cluster, f"/apis/networking.k8s.io/v1/namespaces/{sandbox}/networkpolicies/default-deny")
    say(f"sandbox           namespace {sandbox} for point {started.get('recoveryPoint')}: "
        f"quota {'pods=' + quota['spec']['hard']['pods'] if quota else 'MISSING'}, "
        f"NetworkPolicy {'default-deny (no egress)' if deny else 'MISSING'}")
    final = await live.until(lambda: (r := _last(cluster)).get("outcome") not in (None, "Running") and r,
                             300, "the drill to finish", interval=0.5)
    for job in ("restore", "verify"):
        found = live.get(cluster, f"/apis/batch/v1/namespaces/{sandbox}/jobs/{job}")
        if found:
            say(f"ran               Job {sandbox}/{job}: {live.job_end(found)}")
    history = (_drill(cluster).get("status") or {}).get("history") or []
    say(f"\n$ lifeline drill report {DRILL}")
    say(drill_table(history))
    say(f"\ndrill             {describe_drill_run(final)}")
    if final.get("outcome") != "Succeeded":
        say(f"                  {final.get('message')}")
    keys = ("restoreSeconds", "verifySeconds", "totalSeconds", "rtoSeconds", "rtoMet", "bytesRestored", "outcome",
            "reason", "message")
    return {**{k: final.get(k) for k in keys}, "sandbox": sandbox, "ok": final.get("outcome") == "Succeeded"}
