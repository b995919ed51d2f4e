"""A namespace of 2,000 Kubernetes objects backed up and restored, on a real API server.

    .venv/bin/python bench/objects.py            # --objects 2000 --json

A real control plane (``lifeline.devstack.cluster``, no kubelet needed) holds a namespace of
ConfigMaps, Secrets, Services, Deployments (no replicas) and ServiceAccounts. Rows:

- write out: the resources source's first step (``lifeline.agent.objects.write_objects``, as the
  backup Job runs it) against the floor a platform team's script would use, one
  ``kubectl get <every kind> -o json``;
- backup: ``lifeline agent backup`` of the written tree into a local repository;
- restore: ``lifeline agent restore`` of the point, then ``lifeline agent objects-restore`` into a
  mapped namespace (a server-side dry run of every object, then the writes), against the floor of
  ``kubectl create -f`` of the same prepared documents (no dry run, no per-object report).

Reported: seconds, API requests and requests per object (counted by wrapping the client's calls),
and each Lifeline row's ratio to its floor (> 1: Lifeline is slower).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from lifeline.agent import objects, objects_restore  # noqa: E402
from lifeline.api.backuppolicy import ResourcesSource  # noqa: E402
from lifeline.devstack import live  # noqa: E402
from lifeline.devstack.cluster import Cluster  # noqa: E402
from lifeline.devstack.tools import kubectl_path  # noqa: E402
from lifeline.kube import Kube  # noqa: E402
from lifeline.messages import ResourcePlan, ResourcesPlan  # noqa: E402
from lifeline.sources.resources import OWNED_BY_CONTROLLERS, selection  # noqa: E402

NS, COPY, PEER = "his", "his-restored", "his-kubectl"
MIX = (("configmaps", 0.4), ("secrets", 0.3), ("services", 0.15), ("deployments", 0.1), ("serviceaccounts", 0.05))


def manifest(kind: str, i: int) -> tuple[str, dict]:
    labels = {"app.kubernetes.io/part-of": "his", "ward": f"w{i % 40}"}
    meta = {"name": f"his-{kind[:-1]}-{i:05d}", "labels": labels}
    if kind == "configmaps":
        return "/api/v1", {"metadata": meta, "data": {"settings.ini": f"[ward]\nbeds={i % 30}\n" * 8}}
    if kind == "secrets":
        return "/api/v1", {"metadata": meta, "stringData": {"password": f"pw-{i:08d}"}}
    if kind == "services":
        return "/api/v1", {"metadata": meta, "spec": {"selector": labels, "ports": [{"port": 80}]}}
    if kind == "serviceaccounts":
        return "/api/v1", {"metadata": meta}
    return "/apis/apps/v1", {"metadata": meta, "spec": {
        "replicas": 0, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "his:1"}]}}}}


class Counting:
    """The Kubernetes client's ``call_api``, counted."""

    def __init__(self, client):
        self.client, self.calls = client, 0

    def call_api(self, *args, **kwargs):
        self.calls += 1
        return self.client.call_api(*args, **kwargs)


async def populate(cluster: Cluster, n: int) -> int:
    connector = aiohttp.TCPConnector(ssl=cluster.ssl_context(), limit=32)
    made = 0
    async with aiohttp.ClientSession(connector=connector) as http:
        async def post(prefix: str, kind: str, body: dict) -> None:
            async with http.post(f"{cluster.url}{prefix}/namespaces/{NS}/{kind}", json=body) as r:
                assert r.status == 201, await r.text()

        jobs = []
        for kind, share in MIX:
            for i in range(int(n * share)):
                prefix, body = manifest(kind, i)
                jobs.append(post(prefix, kind, body))
        made = len(jobs)
        await asyncio.gather(*jobs)
    return made


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, round(time.monotonic() - t0, 2)


def agent(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.agent", *args], env=env, capture_output=True, text=True,
                          check=True, timeout=1800)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lifeline-bench-objects-"))
    cluster = Cluster(work / "cluster", name="bench-objects", kubelet=False, cronjobs=False)
    cluster.start()
    out: dict = {}
    try:
        config = str(cluster.kubeconfig)
        os.environ["KUBECONFIG"] = config  # the writer uses the caller's credentials, as a Job uses its own
        env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
        for ns in (NS, COPY, PEER):
            live.namespace(cluster, ns)
        out["objects"] = asyncio.run(populate(cluster, args.objects))

        served = asyncio.run(Kube.connect(config).discover())
        chosen, _ = selection(ResourcesSource(), served)
        plan = ResourcesPlan(namespace=NS, resources=[
            ResourcePlan(api_version=r.api_version, plural=r.plural, kind=r.kind,
                         owned=(r.group, r.plural) in OWNED_BY_CONTROLLERS or None) for r in chosen])
        tree = work / "tree"
        reader = objects_restore.connect(config)
        reader.client = Counting(reader.client)
        written, seconds = timed(lambda: objects.write_objects(plan, tree, reader))
        calls = reader.client.calls
        out["write_out"] = {"seconds": seconds, "objects": written.objects, "kinds": len(written.kinds),
                            "requests": calls, "requests_per_object": round(calls / written.objects, 3)}
        kinds = ",".join(r.name for r in chosen)
        _, floor = timed(lambda: subprocess.run([str(kubectl_path()), "--kubeconfig", config, "get", kinds, "-n", NS,
                                                 "-o", "json"], capture_output=True, check=True, timeout=600))
        out["write_out"].update(floor_kubectl_get_seconds=floor, ratio=round(seconds / floor, 2))

        repo, key = work / "repo", work / "key"
        agent("init", "--repo", f"file://{repo}", "--key", f"file://{key}", "--create-key", env=env)
        backed, seconds = timed(lambda: agent("backup", str(tree), "--repo", f"file://{repo}", "--key",
                                              f"file://{key}", "--json", "--no-progress", env=env))
        point = json.loads(backed.stdout)
        out["backup"] = {"seconds": seconds, "stored_bytes": point["stored_bytes"], "files": point["files"]}

        restored = work / "restored"
        _, seconds = timed(lambda: agent("restore", point["point_id"], "--to", str(restored), "--repo",
                                         f"file://{repo}", "--key", f"file://{key}", env=env))
        out["restore_tree_seconds"] = seconds
        api = objects_restore.connect(config)
        api.client = Counting(api.client)
        docs = objects_restore.prepared(objects_restore.read_tree(restored), {NS: COPY})
        outcomes, seconds = timed(lambda: objects_restore.restore_objects(docs, api))
        failed = [o for o in outcomes if o.outcome == "failed"]
        assert not failed, failed[:3]
        calls = api.client.calls
        out["objects_restore"] = {"seconds": seconds, "requests": calls,
                                  "requests_per_object": round(calls / len(docs), 3)}
        peer = work / "peer"
        peer.mkdir()
        for i, doc in enumerate(objects_restore.prepared(objects_restore.read_tree(restored), {NS: PEER})):
            (peer / f"{i:05d}.json").write_text(json.dumps(doc.body))
        _, floor = timed(lambda: subprocess.run([str(kubectl_path()), "--kubeconfig", config, "create", "-f",
                                                 str(peer)], capture_output=True, check=True, timeout=1800))
        out["objects_restore"].update(floor_kubectl_create_seconds=floor, ratio=round(seconds / floor, 2))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for row, figures in out.items():
            print(f"{row:>22}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
