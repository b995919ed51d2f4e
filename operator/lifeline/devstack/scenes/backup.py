"""Demo scene: a BackupPolicy over a local directory, a full and an incremental backup run for real.

With the cluster and the operator already running (``lifeline dev up`` starts them), the scene
creates the PVCs and the key Secret a policy needs (their data lives in host directories behind
PersistentVolumes), applies a BackupPolicy, shows the CronJobs the operator made of it, starts its
full and then its incremental CronJob as ``kubectl create job --from=cronjob/...`` does (the real
Job controller, scheduler and process kubelet run the agent into two file:// repositories: one
"on site", one "off site"), and prints the RecoveryPoints the operator recorded and the policy's
status. The key is a Vault transit key when ``lifeline dev up`` runs
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
from pathlib import Path

from lifeline.api import BY_KIND
from lifeline.devstack import live, stack as devstack
from lifeline.kube import Kube
from lifeline.labels import ANN_JOB, LABEL_APP_PART_OF, LABEL_POLICY
from lifeline.keys import create_key_file
from lifeline.planning import conditions
from lifeline.printing import table

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
        "metadata": {"name": POLICY, "labels": {LABEL_APP_PART_OF: "icu-monitoring"}},
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


def _stored(cluster, kind: str, name: str):
    return live.stored(cluster, kind, NAMESPACE, name)


def _point_of(cluster, job: str) -> dict | None:
    points = cluster.request("GET", live.lifeline_path("RecoveryPoint", NAMESPACE))["items"]
    return next((p for p in points if (p["metadata"].get("annotations") or {}).get(ANN_JOB) == job
                 and (p.get("status") or {}).get("phase") == "Available"), None)


def _made_by(points: list[dict], runs: list[dict]) -> list[dict]:
    jobs = {r["job"] for r in runs}
    return [p for p in points if (p["metadata"].get("annotations") or {}).get(ANN_JOB) in jobs]


async def _backup(cluster, policy_name: str, kind: str, count: int, say) -> dict | None:
    """Start the policy's ``kind`` CronJob now; wait for the operator to record the point; its figures."""
    job, phase, seconds = await live.run_cronjob(cluster, NAMESPACE, f"{policy_name}-{kind}")
    say(f"ran               Job {job} ({kind}): {phase} in {seconds:.2f}s")
    if phase != "Succeeded":
        say(await asyncio.to_thread(live.job_log, cluster, NAMESPACE, job))
        return None
    # The point this Job made (the real CronJob controller may start scheduled Jobs meanwhile).
    point = await live.until(lambda: _point_of(cluster, job), 90, f"the RecoveryPoint of Job {job}")
    obj = _stored(cluster, "BackupPolicy", policy_name)
    name = point["metadata"]["name"]
    spec = (point or {}).get("spec") or {}
    return {"policy": policy_name, "type": kind, "job": job, "phase": phase,
            "seconds": round(seconds, 3), "bytes": spec.get("sizeBytes", 0), "point": name,
            "destinations": [c["destination"] for c in spec.get("copies") or []],
            "key": obj["spec"]["encryption"]["keyRef"].split(":", 1)[0]}


async def run(stack, say) -> dict:
    cluster, state = stack.cluster, Path(stack.state)
    workdir = state / "backup-scene"
    volumes = {claim: workdir / "volumes" / d for claim, d in CLAIMS.items()}
    _write_ward_data(volumes["icu-trends-data"], 8)

    # What a platform team has in place before the policy: the PVCs and the key, kept apart.
    for claim, path in volumes.items():
        await asyncio.to_thread(live.host_claim, cluster, NAMESPACE, claim, path)
    if key_ref() == SECRET_KEY_REF:
        key = workdir / "kek"
        if not key.exists():
            create_key_file(key)
        await asyncio.to_thread(live.create, cluster, f"/api/v1/namespaces/{NAMESPACE}/secrets", {
            "metadata": {"name": "icu-trends-key"}, "data": {"key": base64.b64encode(key.read_bytes()).decode()}})

    kube = Kube.connect(stack.kubeconfig)
    runs: list[dict] = []
    try:
        await kube.create(BY_KIND["BackupPolicy"], NAMESPACE, policy())
        say(f"\napplied           BackupPolicy {NAMESPACE}/{POLICY}: {volumes['icu-trends-data']} -> "
            f"site-a and site-b (off site), RPO 15m, key {key_ref()}")
        obj = await live.until(lambda: (o := _stored(cluster, "BackupPolicy", POLICY)) and
                               (o.get("status") or {}).get("cronJobs") and o, 30, f"{POLICY}'s CronJobs")
        say(f"\n$ kubectl get cronjobs -l {LABEL_POLICY}={POLICY}")
        say(f"{'NAME':28} {'SCHEDULE':16} {'SUSPEND':8} CONCURRENCY")
        for name in obj["status"]["cronJobs"]:
            cj = await asyncio.to_thread(live.get, cluster, f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs/{name}")
            spec = cj["spec"]
            say(f"{name:28} {spec['schedule']:16} {str(spec['suspend']):8} {spec['concurrencyPolicy']}")

        for kind, count in (("full", 1), ("incremental", 2)):
            if kind == "incremental":
                _write_ward_data(volumes["icu-trends-data"], 9)  # an hour of new readings
            done = await _backup(cluster, POLICY, kind, count, say)
            if done is None:
                break
            runs.append(done)
        obj = _stored(cluster, "BackupPolicy", POLICY)
        points = _made_by(await kube.list(BY_KIND["RecoveryPoint"], NAMESPACE), runs)
        hospital = await _hospital(stack, kube, say)
    finally:
        kube.close()

    say(f"\n$ kubectl get recoverypoints -l {LABEL_POLICY}={POLICY}")
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


async def _hospital(stack, kube, say) -> dict:
    """Full, change, incremental for each hospital BackupPolicy ``lifeline dev up`` applied."""
    cluster = stack.cluster
    facts = devstack.read_facts(stack.state)
    names = [m["name"] for m in facts.get("hospital") or [] if m["kind"] == "BackupPolicy"
             and _stored(cluster, "BackupPolicy", m["name"]) is not None]
    out = {"runs": [], "points": [], "ok": True}
    if not names:
        return out
    pg = facts.get("postgres")
    volumes = {claim: Path(path) for claim, path in facts["volumes"].items()}
    say(f"\nhospital          policies {', '.join(names)}: full, then a change, then incremental, each to "
        "on-site and off-site")
    for name in names:
        for kind, count in (("full", 1), ("incremental", 2)):
            if kind == "incremental":
                say("change            " + await asyncio.to_thread(_change, name, pg, volumes))
            done = await _backup(cluster, name, kind, count, say)
            if done is None:
                out["ok"] = False
                break
            out["runs"].append(done)
            say(f"                  -> {done['point']}: {done['bytes']} bytes, copies on "
                f"{', '.join(done['destinations'])}, key {done['key']}")
        ready = conditions.find((_stored(cluster, "BackupPolicy", name).get("status") or {})
                                .get("conditions"), "Ready") or {}
        out["ok"] = out["ok"] and ready.get("status") == "True" and all(
            len(r["destinations"]) == 2 for r in out["runs"] if r["policy"] == name)
    out["points"] = _made_by(await kube.list(BY_KIND["RecoveryPoint"], NAMESPACE), out["runs"])
    return out


def _change(policy_name: str, pg: dict | None, volumes: dict[str, Path]) -> str:
    """What happens at the hospital between the full and the incremental backup."""
    if pg and policy_name == "his-patients":
        server = devstack.connect_postgres(pg)
        server.psql("his", devstack.his_rows(pg["patients"] + 1, 25))
        total = server.psql("his", "SELECT count(*) FROM patients").strip()
        return f"25 patients admitted to the HIS database (now {total})"
    root = volumes[devstack.PACS_CLAIM]
    number = len(list((root / "studies").iterdir())) + 1
    study = devstack.write_pacs_study(root, number)
    return f"a new PACS study {study.name} ({len(list(study.iterdir()))} images)"
