"""Control-plane benchmark: 1,000 BackupPolicies applied to a real Kubernetes API server in one go.

    .venv/bin/python bench/control_plane.py            # --policies 1000 --namespaces 10 --json

A real control plane (``lifeline.devstack.cluster``: etcd, kube-apiserver, controller-manager,
scheduler, the process kubelet) and Lifeline installed into it by ``helm install``: the operator
is the chart's Deployment, a process of its own under the kubelet, with the chart's RBAC.
Reported:

- time from the first create until every policy is Ready at generation 1 with its CronJobs
  stored (goal: under 60 s);
- API requests the operator made per policy while doing so, and its writes by kind -- counted
  by the API server itself (its audit log records every request of the operator's ServiceAccount);
- a full resync: the operator's Pod is deleted, the Deployment starts a new one, it lists
  everything again and must write nothing (goal: zero writes);
- the operator's peak memory (VmHWM of its process; goal: under 300 MiB).

Each policy has its own source PVC (no StorageClass: it stays Pending, which is all a policy
needs to see); the destination PVC, the S3 credentials and the key Secret are shared per
namespace, as a platform team would set them up. The emulator-era figures are kept in
docs/performance.md for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from lifeline.devstack import install, live  # noqa: E402
from lifeline.devstack.cluster import Cluster  # noqa: E402
from lifeline.devstack.tools import helm_path, kubectl_path  # noqa: E402

GROUP = "/apis/dr.lifeline.io/v1alpha1"


def policy(i: int) -> dict:
    return {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": f"ward-{i:04d}"},
        "spec": {
            "tier": "C", "objectives": {"rpo": "2h"},
            "source": {"pvc": {"claimName": f"ward-{i:04d}-data"}},
            # hourly: a status legitimately changes when a scheduled time passes (the next expected
            # backup moves on), which must not fall inside the resync being measured
            "schedule": {"full": f"{i % 60} 1 * * *", "incremental": "7 * * * *"},
            "destinations": [
                {"name": "site", "filesystem": {"claimName": "backup-nfs", "path": f"/lifeline/ward-{i:04d}"}},
                {"name": "offsite", "offSite": True, "s3": {"bucket": "hospital-dr", "prefix": f"ward-{i:04d}",
                                                            "credentialsSecret": "offsite-s3"}},
            ],
            "encryption": {"keyRef": "secret://backup-key/key"},
        },
    }


def claim(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def operator_pid(cluster: Cluster, namespace: str) -> int | None:
    pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector="
                                  "app.kubernetes.io%2Fcomponent%3Doperator")["items"]
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for c in (pod.get("status") or {}).get("containerStatuses") or []:
            if c.get("ready") and c.get("containerID", "").startswith("process://"):
                return int(c["containerID"].removeprefix("process://"))
    return None


def peak_kib(pid: int | None) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, TypeError):
        pass
    return 0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)
    except (OSError, TypeError, ValueError):
        return 0.0


def cpu_by_part(cluster: Cluster, operator: int | None) -> dict:
    parts = {name: cpu_seconds(child.pid) for name, child in cluster._children.items()}
    parts["operator"] = cpu_seconds(operator)
    return parts


def ready(cluster: Cluster, cronjobs: int, *, check_cronjobs: bool) -> int:
    """Policies Ready at generation 1 naming all their CronJobs (and, when asked, those CronJobs exist).

    Lists come from the API server's watch cache (resourceVersion=0): the benchmark's own polling
    should cost the server as little as possible, it competes for the same two cores.
    """
    existing = {(c["metadata"]["namespace"], c["metadata"]["name"])
                for c in cluster.request("GET", "/apis/batch/v1/cronjobs?resourceVersion=0", timeout=60)["items"]
                } if check_cronjobs else set()
    done = 0
    for obj in cluster.request("GET", f"{GROUP}/backuppolicies?resourceVersion=0", timeout=60)["items"]:
        st = obj.get("status") or {}
        if st.get("observedGeneration") != 1:
            continue
        cond = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
        names = st.get("cronJobs") or []
        ns = obj["metadata"]["namespace"]
        if cond and cond["status"] == "True" and len(names) == cronjobs and (
                not check_cronjobs or all((ns, n) in existing for n in names)):
            done += 1
    return done


def unchanged(port: int, token: str) -> float:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lifeline_reconciles_total{") and 'kind="BackupPolicy"' in line
               and 'result="unchanged"' in line)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-logs", action="store_true", help="keep the cluster's logs even when all goals are met")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lifeline-bench-"))
    namespaces = [f"wards-{n}" for n in range(args.namespaces)]
    per_ns = args.policies // args.namespaces
    docs = [(namespaces[i % args.namespaces], policy(i)) for i in range(per_ns * args.namespaces)]
    n = len(docs)
    sa = install.OPERATOR_SA
    out: dict = {"policies": n, "namespaces": args.namespaces}
    began = time.monotonic()
    cluster = Cluster(workdir / "cluster", name="bench", audit_reads_of=(sa,), crds=install.CHART / "crds")
    cluster.start()
    try:
        out["cluster_start_seconds"] = round(time.monotonic() - began, 2)
        release = install.install(cluster.kubeconfig, helm_path(), webhook_client_ca=cluster.webhook_client_ca)
        key = base64.b64encode(b"lifeline-key-v1 " + b"0" * 64).decode()
        for ns in namespaces:
            live.namespace(cluster, ns)
            install.grant_tenant(cluster.request, ns)  # what the namespace's admin does: Lifeline may read its Secrets
            cluster.request("POST", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", claim("backup-nfs"))
            cluster.request("POST", f"/api/v1/namespaces/{ns}/secrets",
                            {"metadata": {"name": "backup-key"}, "data": {"key": key}})
            cluster.request("POST", f"/api/v1/namespaces/{ns}/secrets",
                            {"metadata": {"name": "offsite-s3"},
                             "data": {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": key}})
        connector = aiohttp.TCPConnector(ssl=cluster.ssl_context(), limit=32)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def post(path: str, body: dict) -> None:
                async with http.post(cluster.url + path, json=body) as r:
                    assert r.status == 201, await r.text()

            await asyncio.gather(*(post(f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                                        claim(doc["spec"]["source"]["pvc"]["claimName"])) for ns, doc in docs))
            mark = cluster.audit_position()
            cpu0 = cpu_by_part(cluster, operator_pid(cluster, release.namespace))
            t0 = time.monotonic()
            await asyncio.gather(*(post(f"{GROUP}/namespaces/{ns}/backuppolicies", doc) for ns, doc in docs))
            out["create_seconds"] = round(time.monotonic() - t0, 2)
            pid, peak1 = None, 0
            while (done := await asyncio.to_thread(ready, cluster, 3, check_cronjobs=False)) < n or \
                    await asyncio.to_thread(ready, cluster, 3, check_cronjobs=True) < n:
                pid = pid or operator_pid(cluster, release.namespace)
                peak1 = max(peak1, peak_kib(pid))
                if time.monotonic() - t0 > 600:
                    raise SystemExit(f"only {done}/{n} Ready after 600 s; see {workdir}")
                await asyncio.sleep(1.0)
            out["ready_seconds"] = round(time.monotonic() - t0, 2)
        await asyncio.sleep(3)  # the watch events of its own last writes come back and are handled
        pid = pid or operator_pid(cluster, release.namespace)
        peak1 = max(peak1, peak_kib(pid))
        cpu1 = cpu_by_part(cluster, pid)
        out["cpu_seconds_by_part"] = {k: round(cpu1[k] - cpu0.get(k, 0.0), 1) for k in cpu1}
        reqs = cluster.requests(sa, since=mark)
        # reviews (TokenReview, SubjectAccessReview: /metrics asking who calls) are questions, not writes
        writes = [r for r in reqs if r["verb"] in ("create", "update", "patch", "delete")
                  and not r["objectRef"].get("resource", "").endswith("reviews")]
        out["requests_per_policy"] = round(len(reqs) / n, 2)
        out["reads_per_policy"] = round(sum(1 for r in reqs if r["verb"] in ("get", "list")) / n, 2)
        out["writes_per_policy"] = round(len(writes) / n, 2)
        out["writes_by_kind"] = dict(sorted(Counter(
            f"{w['verb']} {w['objectRef'].get('resource')}"
            f"{'/' + w['objectRef']['subresource'] if w['objectRef'].get('subresource') else ''}"
            for w in writes).items()))
        out["failed_requests"] = sum(1 for r in reqs if (r.get("responseStatus") or {}).get("code", 200) >= 400)
        print(f"first run: {json.dumps(out)}", file=sys.stderr, flush=True)

        # a full resync: a new operator Pod lists everything and should write nothing
        kubectl = [str(kubectl_path()), "--kubeconfig", str(cluster.kubeconfig), "-n", release.namespace]
        mark = cluster.audit_position()
        t1 = time.monotonic()
        subprocess.run([*kubectl, "delete", "pod", "-l", "app.kubernetes.io/component=operator", "--wait=true"],
                       check=True, capture_output=True, timeout=120)
        pid2 = None
        token = install.metrics_token(cluster.request, release)
        while (pid2 := operator_pid(cluster, release.namespace)) is None or unchanged(release.health_port, token) < n:
            if time.monotonic() - t1 > 300:
                raise SystemExit(f"resync did not finish in 300 s; see {workdir}")
            await asyncio.sleep(0.25)
        out["resync_seconds"] = round(time.monotonic() - t1, 2)
        await asyncio.sleep(2)
        reqs = cluster.requests(sa, since=mark)
        out["resync_writes"] = sum(1 for r in reqs if r["verb"] in ("create", "update", "patch", "delete")
                                   and not r["objectRef"].get("resource", "").endswith("reviews"))
        out["resync_reads"] = sum(1 for r in reqs if r["verb"] in ("get", "list"))
        peak2 = peak_kib(pid2)
        out.update(peak_rss_mib=round(max(peak1, peak2) / 1024, 1), peak_rss_mib_first=round(peak1 / 1024, 1),
                   peak_rss_mib_resync=round(peak2 / 1024, 1))
    finally:
        cluster.stop()
    out["logs"] = str(workdir)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{n} BackupPolicies in {args.namespaces} namespaces (3 CronJobs each), on Kubernetes v1.35.4, "
              f"the operator installed by helm")
        print(f"  control plane started in    {out['cluster_start_seconds']} s")
        print(f"  all created in              {out['create_seconds']} s")
        print(f"  all Ready with CronJobs in  {out['ready_seconds']} s   (goal < 60 s)")
        print(f"  operator API requests       {out['requests_per_policy']} per policy "
              f"({out['reads_per_policy']} reads, {out['writes_per_policy']} writes; the API server's audit log)")
        for k, v in out["writes_by_kind"].items():
            print(f"      {k:45} {v}")
        print(f"  failed requests             {out['failed_requests']}")
        print("  CPU seconds while doing so  " + ", ".join(f"{k} {v}" for k, v in out["cpu_seconds_by_part"].items()))
        print(f"  full resync (new Pod)       {out['resync_seconds']} s, {out['resync_writes']} writes (goal 0), "
              f"{out['resync_reads']} reads")
        print(f"  operator peak memory        {out['peak_rss_mib']} MiB (first run {out['peak_rss_mib_first']}, "
              f"resync {out['peak_rss_mib_resync']}; goal < 300 MiB)")
        print(f"  logs in {workdir}" + ("" if args.keep_logs else " (removed when every goal is met)"))
    ok = out["ready_seconds"] < 60 and out["resync_writes"] == 0 and 0 < out["peak_rss_mib"] < 300
    if ok and not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
