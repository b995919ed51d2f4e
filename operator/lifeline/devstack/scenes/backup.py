"""Demo scene: a BackupPolicy over a local directory, a full and an incremental backup run for real.

With the emulator and the operator already running (``lifeline demo`` starts them), the scene
creates the PVCs and the key Secret a policy needs (their data lives in local directories),
applies a BackupPolicy, shows the CronJobs the operator made of it, runs its full and then its
incremental CronJob through :class:`~lifeline.devstack.job_runner.JobRunner` (the real agent, two
file:// repositories: one "on site", one "off site"), and prints the RecoveryPoints the operator
recorded and the policy's status.
"""
from __future__ import annotations

import base64
from pathlib import Path

from lifeline.api import BY_KIND
from lifeline.keys import create_key_file
from lifeline.planning import conditions

NAMESPACE = "hospital"
POLICY = "icu-trends"
CLAIMS = {"icu-trends-data": "data", "backup-site-a": "site-a", "backup-site-b": "site-b"}


def policy() -> dict:
    return {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": POLICY, "labels": {"app.kubernetes.io/part-of": "icu-monitoring"}},
        "spec": {
            "tier": "C",
            "objectives": {"rpo": "15m"},
            "source": {"pvc": {"claimName": "icu-trends-data"}},
            "schedule": {"full": "0 1 * * *", "incremental": "*/15 * * * *"},
            "destinations": [
                {"name": "site-a", "filesystem": {"claimName": "backup-site-a", "path": "/lifeline/icu-trends"}},
                {"name": "site-b", "offSite": True,
                 "filesystem": {"claimName": "backup-site-b", "path": "/lifeline/icu-trends"}},
            ],
            "retention": {"keepLast": 48, "keepDaily": 14},
            "encryption": {"keyRef": "secret://icu-trends-key/key"},
        },
    }


def _write_ward_data(root: Path, hour: int) -> None:
    ward = root / "ward-3"
    ward.mkdir(parents=True, exist_ok=True)
    for bed in range(1, 9):
        rows = "".join(f"2026-11-23T{hour:02d}:{m:02d}:00Z,bed-{bed},{60 + (bed * m) % 40},{95 + (bed + m) % 5}\n"
                       for m in range(0, 60, 5))
        with open(ward / f"bed-{bed}.csv", "a") as f:
            f.write(rows)


def _stored(emulator, kind: str, name: str):
    return emulator.stored(BY_KIND[kind].resource, NAMESPACE, name)


async def run(emulator, kubeconfig, workdir, say) -> dict:
    from lifeline.devstack.job_runner import JobRunner
    from lifeline.kube import Kube
    from lifeline.printing import table

    workdir = Path(workdir) / "backup-scene"
    volumes = {claim: workdir / "volumes" / d for claim, d in CLAIMS.items()}
    for path in volumes.values():
        path.mkdir(parents=True, exist_ok=True)
    _write_ward_data(volumes["icu-trends-data"], 8)

    # What a platform team has in place before the policy: the PVCs and the key, kept apart.
    if emulator.stored("v1/namespaces", None, NAMESPACE) is None:
        emulator.seed("v1/namespaces", {"metadata": {"name": NAMESPACE}})
    for claim in CLAIMS:
        if emulator.stored("v1/persistentvolumeclaims", NAMESPACE, claim) is None:
            emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": claim, "namespace": NAMESPACE},
                                                         "spec": {"accessModes": ["ReadWriteOnce"]}})
    key = workdir / "kek"
    if not key.exists():
        create_key_file(key)
    if emulator.stored("v1/secrets", NAMESPACE, "icu-trends-key") is None:
        emulator.seed("v1/secrets", {"metadata": {"name": "icu-trends-key", "namespace": NAMESPACE},
                                     "data": {"key": base64.b64encode(key.read_bytes()).decode()}})

    kube = Kube.connect(kubeconfig)
    try:
        await kube.create(BY_KIND["BackupPolicy"], NAMESPACE, policy())
        say(f"\napplied           BackupPolicy {NAMESPACE}/{POLICY}: {volumes['icu-trends-data']} -> "
            "site-a and site-b (off site), RPO 15m")
        await emulator.wait_for(lambda: (o := _stored(emulator, "BackupPolicy", POLICY)) and
                                (o.get("status") or {}).get("cronJobs") and o, timeout=30)
        obj = _stored(emulator, "BackupPolicy", POLICY)
        say("\n$ kubectl get cronjobs -l dr.lifeline.io/policy=" + POLICY)
        say(f"{'NAME':28} {'SCHEDULE':16} {'SUSPEND':8} CONCURRENCY")
        for name in obj["status"]["cronJobs"]:
            cj = emulator.stored("batch/v1/cronjobs", NAMESPACE, name)
            spec = cj["spec"]
            say(f"{name:28} {spec['schedule']:16} {str(spec['suspend']):8} {spec['concurrencyPolicy']}")

        async with JobRunner.from_kubeconfig(kubeconfig, workdir=workdir / "pods", volumes=volumes) as runner:
            runs = []
            for kind, count in (("full", 1), ("incremental", 2)):
                if kind == "incremental":
                    _write_ward_data(volumes["icu-trends-data"], 9)  # an hour of new readings
                result = await runner.trigger(NAMESPACE, f"{POLICY}-{kind}")
                runs.append(result)
                say(f"ran               Job {result.job} ({kind}): {result.phase}")
                if result.phase != "Succeeded":
                    say(result.containers["agent"].log.read_text()[-2000:] if "agent" in result.containers else "")
                    break
                await emulator.wait_for(
                    lambda: (o := _stored(emulator, "BackupPolicy", POLICY)) and
                    (o["status"].get("recoveryPoints") or 0) >= count and
                    (o["status"].get("lastBackup") or {}).get("job") == result.job and
                    o["status"]["lastBackup"].get("outcome") != "Running", timeout=60)
        obj = _stored(emulator, "BackupPolicy", POLICY)
        points = [p for p in await kube.list(BY_KIND["RecoveryPoint"], NAMESPACE)
                  if p["spec"]["policyName"] == POLICY]
    finally:
        kube.close()

    say(f"\n$ kubectl get recoverypoints -l dr.lifeline.io/policy={POLICY}")
    say(table(BY_KIND["RecoveryPoint"], points, namespaced=False))
    say(f"\n$ kubectl get backuppolicy {POLICY}")
    say(table(BY_KIND["BackupPolicy"], [obj], wide=True, namespaced=False))
    status = obj["status"]
    say(f"\nstatus of {POLICY}:")
    for c in status.get("conditions") or []:
        say(f"  {c['type']:22} {c['status']:8} {c['reason']}: {c['message']}")
    last = status.get("lastBackup") or {}
    say(f"  lastBackup             {last.get('type')} {last.get('outcome')} -> {last.get('recoveryPoint')}")
    say(f"  currentRPOSeconds      {status.get('currentRPOSeconds')} of {status.get('rpoTargetSeconds')}")
    for p in points:
        copies = ", ".join(f"{c['destination']}:{c['snapshotId'][:12]}" for c in p["spec"]["copies"])
        say(f"  {p['metadata']['name']}: {p['spec']['type']}, {p['spec']['sizeBytes']} bytes, parent "
            f"{p['spec'].get('parent', '-')}, copies {copies}")
    ready = conditions.find(status.get("conditions"), "Ready") or {}
    return {
        "policy": obj,
        "recoveryPoints": points,
        "jobs": [{"job": r.job, "phase": r.phase} for r in runs],
        "ok": ready.get("status") == "True" and len(points) == 2 and all(r.phase == "Succeeded" for r in runs),
    }
