"""Demo scene: a BackupPolicy over a local directory, a full and an incremental backup run for real.

With the emulator and the operator already running (``lifeline demo`` starts them), the scene
creates the PVCs and the key Secret a policy needs (their data lives in local directories),
applies a BackupPolicy, shows the CronJobs the operator made of it, runs its full and then its
incremental CronJob through :class:`~lifeline.devstack.job_runner.JobRunner` (the real agent, two
file:// repositories: one "on site", one "off site"), and prints the RecoveryPoints the operator
recorded and the policy's status. The key is a Vault transit key when ``lifeline dev up`` runs
OpenBao (``VAULT_ADDR`` set), else a local key in a Secret.

Then the hospital scenario's policies (``examples/hospital/``, applied by ``lifeline dev up``):
the HIS database (``pg_dump`` against the local PostgreSQL) and the PACS images, each a full
backup, a change (new patients, a new study), and an incremental -- to both destinations.
Every figure printed is read back from what the operator recorded or timed around the Job.
"""
from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

from lifeline.api import BY_KIND
from lifeline.keys import create_key_file
from lifeline.planning import conditions

NAMESPACE = "hospital"
POLICY = "icu-trends"
CLAIMS = {"icu-trends-data": "data", "backup-site-a": "site-a", "backup-site-b": "site-b"}
VAULT_KEY_REF = "vault-transit://lifeline-icu-trends?mount=transit"
SECRET_KEY_REF = "secret://icu-trends-key/key"


def key_ref() -> str:
    """Vault's transit key when this process has a Vault address (the operator reads the same env)."""
    return VAULT_KEY_REF if os.environ.get("VAULT_ADDR") else SECRET_KEY_REF


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
            "encryption": {"keyRef": key_ref()},
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


async def _backup(runner, emulator, policy_name: str, kind: str, count: int, say) -> dict | None:
    """Run the policy's ``kind`` CronJob as a Job; wait for the operator to record the point; its figures."""
    began = time.monotonic()
    result = await runner.trigger(NAMESPACE, f"{policy_name}-{kind}")
    seconds = time.monotonic() - began
    say(f"ran               Job {result.job} ({kind}): {result.phase} in {seconds:.2f}s")
    if result.phase != "Succeeded":
        agent = result.containers.get("agent")
        say(agent.log.read_text()[-2000:] if agent else result.message)
        return None
    obj = await emulator.wait_for(
        lambda: (o := _stored(emulator, "BackupPolicy", policy_name)) and
        (o["status"].get("recoveryPoints") or 0) >= count and
        (o["status"].get("lastBackup") or {}).get("job") == result.job and
        o["status"]["lastBackup"].get("outcome") != "Running" and o, timeout=60)
    name = obj["status"]["lastBackup"].get("recoveryPoint")
    point = await emulator.wait_for(lambda: _stored(emulator, "RecoveryPoint", name), timeout=30) if name else None
    spec = (point or {}).get("spec") or {}
    return {"policy": policy_name, "type": kind, "job": result.job, "phase": result.phase,
            "seconds": round(seconds, 3), "bytes": spec.get("sizeBytes", 0), "point": name,
            "destinations": [c["destination"] for c in spec.get("copies") or []],
            "key": obj["spec"]["encryption"]["keyRef"].split(":", 1)[0]}


async def run(emulator, kubeconfig, workdir, say) -> dict:
    from lifeline.devstack.job_runner import JobRunner
    from lifeline.kube import Kube
    from lifeline.printing import table

    state = Path(workdir)
    workdir = state / "backup-scene"
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
    if key_ref() == SECRET_KEY_REF:
        key = workdir / "kek"
        if not key.exists():
            create_key_file(key)
        if emulator.stored("v1/secrets", NAMESPACE, "icu-trends-key") is None:
            emulator.seed("v1/secrets", {"metadata": {"name": "icu-trends-key", "namespace": NAMESPACE},
                                         "data": {"key": base64.b64encode(key.read_bytes()).decode()}})

    kube = Kube.connect(kubeconfig)
    runs: list[dict] = []
    try:
        await kube.create(BY_KIND["BackupPolicy"], NAMESPACE, policy())
        say(f"\napplied           BackupPolicy {NAMESPACE}/{POLICY}: {volumes['icu-trends-data']} -> "
            f"site-a and site-b (off site), RPO 15m, key {key_ref()}")
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
            for kind, count in (("full", 1), ("incremental", 2)):
                if kind == "incremental":
                    _write_ward_data(volumes["icu-trends-data"], 9)  # an hour of new readings
                done = await _backup(runner, emulator, POLICY, kind, count, say)
                if done is None:
                    break
                runs.append(done)
        obj = _stored(emulator, "BackupPolicy", POLICY)
        points = [p for p in await kube.list(BY_KIND["RecoveryPoint"], NAMESPACE)
                  if p["spec"]["policyName"] == POLICY]
        hospital = await _hospital(emulator, kube, state, say)
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
    icu_ok = ready.get("status") == "True" and len(points) == 2 and len(runs) == 2
    return {
        "policy": obj,
        "recoveryPoints": points + hospital["points"],
        "runs": runs + hospital["runs"],
        "jobs": [{"job": r["job"], "phase": r["phase"]} for r in runs + hospital["runs"]],
        "ok": icu_ok and hospital["ok"],
    }


async def _hospital(emulator, kube, state: Path, say) -> dict:
    """Full, change, incremental for each hospital BackupPolicy ``lifeline dev up`` applied."""
    from lifeline.devstack import stack as devstack
    from lifeline.devstack.job_runner import JobRunner
    facts = devstack.read_facts(state)
    names = [m["name"] for m in facts.get("hospital") or [] if m["kind"] == "BackupPolicy"
             and _stored(emulator, "BackupPolicy", m["name"]) is not None]
    out = {"runs": [], "points": [], "ok": True}
    if not names:
        return out
    pg = facts.get("postgres")
    env, extra_path = {}, []
    if pg:  # the local runner stands in for the cluster's DNS: his-db.hospital.svc is this server
        env = {"PGHOST": pg["host"], "PGPORT": str(pg["port"])}
        extra_path = [pg["bin"]]
    volumes = {claim: Path(path) for claim, path in facts["volumes"].items()}
    say(f"\nhospital          policies {', '.join(names)}: full, then a change, then incremental, each to "
        "on-site and off-site")
    async with JobRunner.from_kubeconfig(facts["kubeconfig"], workdir=state / "hospital-pods", volumes=volumes,
                                         env=env, extra_path=extra_path) as runner:
        for name in names:
            for kind, count in (("full", 1), ("incremental", 2)):
                if kind == "incremental":
                    say("change            " + await asyncio.to_thread(_change, name, pg, volumes))
                done = await _backup(runner, emulator, name, kind, count, say)
                if done is None:
                    out["ok"] = False
                    break
                out["runs"].append(done)
                say(f"                  -> {done['point']}: {done['bytes']} bytes, copies on "
                    f"{', '.join(done['destinations'])}, key {done['key']}")
            ready = conditions.find((_stored(emulator, "BackupPolicy", name).get("status") or {})
                                    .get("conditions"), "Ready") or {}
            out["ok"] = out["ok"] and ready.get("status") == "True" and all(
                len(r["destinations"]) == 2 for r in out["runs"] if r["policy"] == name)
    out["points"] = [p for p in await kube.list(BY_KIND["RecoveryPoint"], NAMESPACE)
                     if p["spec"]["policyName"] in names]
    return out


def _change(policy_name: str, pg: dict | None, volumes: dict[str, Path]) -> str:
    """What happens at the hospital between the full and the incremental backup."""
    from lifeline.devstack import stack as devstack

    if pg and policy_name == "his-patients":
        server = devstack.connect_postgres(pg)
        server.psql("his", devstack.his_rows(pg["patients"] + 1, 25))
        total = server.psql("his", "SELECT count(*) FROM patients").strip()
        return f"25 patients admitted to the HIS database (now {total})"
    root = volumes[devstack.PACS_CLAIM]
    number = len(list((root / "studies").iterdir())) + 1
    study = devstack.write_pacs_study(root, number)
    return f"a new PACS study {study.name} ({len(list(study.iterdir()))} images)"
