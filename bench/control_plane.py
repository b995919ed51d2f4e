"""Control-plane benchmark: 1,000 BackupPolicies applied to the API emulator in one go.

    .venv/bin/python bench/control_plane.py            # --policies 1000 --namespaces 10 --json

The emulator runs in this process; the operator runs as its own process (``lifeline operator``),
as in a pod, so its memory is its own. Reported:

- time from the first create until every policy is Ready at generation 1 with its CronJobs
  stored (goal: under 60 s);
- API requests the operator made per policy while doing so (reads and writes, watches included),
  and the writes by kind;
- a full resync: the operator is restarted, lists everything again and must write nothing
  (goal: zero writes); the reads it made are reported too;
- the operator's peak memory (VmHWM of its process; goal: under 300 MiB).

The emulator picks the reaction for each request in constant time
(``lifeline.devstack.request_dispatch``); kmock's own dispatch re-filters the whole request
log per request, which made this benchmark quadratic.

Each policy has its own source PVC; the destination PVC, the S3 credentials and the key Secret
are shared per namespace, as a platform team would set them up.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))

from lifeline.api import BY_KIND  # noqa: E402
from lifeline.devstack.children import free_port  # noqa: E402
from lifeline.devstack.emulator import make_emulator, serve, write_kubeconfig  # noqa: E402

PLURAL = BY_KIND["BackupPolicy"]


def policy(i: int) -> dict:
    return {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": {"name": f"ward-{i:04d}"},
        "spec": {
            "tier": "C",
            "source": {"pvc": {"claimName": f"ward-{i:04d}-data"}},
            "schedule": {"full": f"{i % 60} 1 * * *", "incremental": "*/5 * * * *"},
            "destinations": [
                {"name": "site", "filesystem": {"claimName": "backup-nfs", "path": f"/lifeline/ward-{i:04d}"}},
                {"name": "offsite", "offSite": True, "s3": {"bucket": "hospital-dr", "prefix": f"ward-{i:04d}",
                                                            "credentialsSecret": "offsite-s3"}},
            ],
            "encryption": {"keyRef": "secret://backup-key/key"},
        },
    }


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, *(["-m", "cProfile", "-o", str(log) + ".prof"] if os.environ.get("LIFELINE_BENCH_PROFILE")
                               else []),
             "-m", "lifeline.cli", "operator", "-A", "--kubeconfig", str(kubeconfig),
             "--health-host", "127.0.0.1", "--health-port", str(self.port), "--log-format", "plain"],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})
        self.peak_kib = 0

    def sample(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
        except OSError:
            pass
        return self.peak_kib

    async def metric(self, http: aiohttp.ClientSession, name: str, **labels) -> float:
        try:
            async with http.get(f"http://127.0.0.1:{self.port}/metrics") as r:
                text = await r.text()
        except aiohttp.ClientError:
            return 0.0
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{"):
                got = ",".join(sorted(line[len(name) + 1: line.index("}")].split(",")))
                if got == want:
                    total += float(line.rsplit(" ", 1)[1])
        return total

    async def stop(self) -> None:
        self.sample()
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(300):
            if self.proc.poll() is not None:
                return
            self.sample()
            await asyncio.sleep(0.1)
        self.proc.kill()


def ready(emulator, cronjobs: int) -> int:
    """Policies Ready at generation 1 whose CronJobs are all stored (read in place: no copies)."""
    import kmock

    policies, cjs = kmock.resource(PLURAL.resource), kmock.resource("batch/v1/cronjobs")
    done = 0
    for (_, ns, _), obj in emulator._objects_of(policies):
        st = obj.get("status") or {}
        if st.get("observedGeneration") != 1:
            continue
        cond = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
        names = st.get("cronJobs") or []
        if cond and cond["status"] == "True" and len(names) == cronjobs and all(
                emulator._live((cjs, ns, n)) is not None for n in names):
            done += 1
    return done


def requests_since(emulator, since: int) -> list:
    return list(emulator)[since:]


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-logs", action="store_true", help="keep the operators' logs even when all goals are met")
    args = ap.parse_args()

    namespaces = [f"wards-{n}" for n in range(args.namespaces)]
    per_ns = args.policies // args.namespaces
    emulator = make_emulator()
    key = base64.b64encode(b"lifeline-key-v1 " + b"0" * 64).decode()
    for ns in namespaces:
        emulator.seed("v1/namespaces", {"metadata": {"name": ns}})
        emulator.seed("v1/persistentvolumeclaims", {"metadata": {"name": "backup-nfs", "namespace": ns}})
        emulator.seed("v1/secrets", {"metadata": {"name": "backup-key", "namespace": ns}, "data": {"key": key}})
        emulator.seed("v1/secrets", {"metadata": {"name": "offsite-s3", "namespace": ns},
                                     "data": {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": key}})
    docs = [(namespaces[i % args.namespaces], policy(i)) for i in range(per_ns * args.namespaces)]
    for ns, doc in docs:
        emulator.seed("v1/persistentvolumeclaims",
                      {"metadata": {"name": doc["spec"]["source"]["pvc"]["claimName"], "namespace": ns}})
    n = len(docs)
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-bench-", dir=os.environ.get("LIFELINE_BENCH_DIR")))
    out: dict = {"policies": n, "namespaces": args.namespaces}
    async with serve(emulator) as url, aiohttp.ClientSession() as http:
        kubeconfig = write_kubeconfig(url, workdir / "kubeconfig")
        op = OperatorProcess(kubeconfig, workdir / "operator-1.log")
        # wait until it watches the policies (its readiness probe says so)
        for _ in range(600):
            try:
                async with http.get(f"http://127.0.0.1:{op.port}/readyz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)

        base = len(list(emulator))
        writes0 = len(emulator.writes)
        t0 = time.monotonic()
        sem = asyncio.Semaphore(32)

        async def create(ns, doc):
            async with sem:
                async with http.post(f"{url}/apis/dr.lifeline.io/v1alpha1/namespaces/{ns}/backuppolicies",
                                     json=doc) as r:
                    assert r.status == 201, await r.text()

        await asyncio.gather(*(create(ns, doc) for ns, doc in docs))
        created = time.monotonic() - t0
        while (done := ready(emulator, 3)) < n:
            op.sample()
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"only {done}/{n} Ready after 600 s; see {workdir}/operator-1.log")
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - t0
        # let the watch events of its own writes come back and be handled
        await asyncio.sleep(3)
        reqs = [r for r in requests_since(emulator, base)]
        mine = n  # the benchmark's own POSTs
        operator_reqs = len(reqs) - mine
        writes = emulator.writes[writes0:]
        kinds = Counter(f"{w.method} {w.resource.plural if w.resource else '?'}{'/' + w.subresource if w.subresource else ''}"
                        for w in writes)
        kinds[f"POST {PLURAL.plural}"] -= mine
        out["requests_by_kind"] = dict(Counter(
            f"{r.method.value} {r.resource.plural if r.resource else r.url.path}"
            f"{'/' + r.subresource if r.subresource else ''}{' watch' if r.params.get('watch') else ''}"
            for r in reqs).most_common(12))
        out.update(create_seconds=round(created, 2), ready_seconds=round(elapsed, 2),
                   requests_per_policy=round(operator_reqs / n, 2),
                   reads_per_policy=round(sum(1 for r in reqs if r.method.value == "GET") / n, 2),
                   writes_per_policy=round((len(writes) - mine) / n, 2),
                   writes_by_kind={k: v for k, v in sorted(kinds.items()) if v},
                   failed_writes=sum(1 for w in writes if (w.status or 500) >= 400))
        await op.stop()
        peak1 = op.peak_kib
        print(f"first run: {json.dumps(out)}", file=sys.stderr, flush=True)

        # a full resync: a new operator process lists everything and should write nothing
        base, writes0 = len(list(emulator)), len(emulator.writes)
        op2 = OperatorProcess(kubeconfig, workdir / "operator-2.log")
        t1 = time.monotonic()
        while await op2.metric(http, "lifeline_reconciles_total", kind="BackupPolicy", result="unchanged") < n:
            op2.sample()
            if time.monotonic() - t1 > 300:
                raise SystemExit(f"resync did not finish in 300 s; see {workdir}/operator-2.log")
            await asyncio.sleep(0.25)
        resync = time.monotonic() - t1
        await asyncio.sleep(2)
        reqs = requests_since(emulator, base)
        out.update(resync_seconds=round(resync, 2), resync_writes=len(emulator.writes) - writes0,
                   resync_reads=sum(1 for r in reqs if r.method.value == "GET"
                                    and r.params.get("watch") not in ("true", "True", "1")),
                   resync_requests=len(reqs))
        await op2.stop()
        out.update(peak_rss_mib=round(max(peak1, op2.peak_kib) / 1024, 1),
                   peak_rss_mib_first=round(peak1 / 1024, 1), peak_rss_mib_resync=round(op2.peak_kib / 1024, 1))
    out["logs"] = str(workdir)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{n} BackupPolicies in {args.namespaces} namespaces (3 CronJobs each), operator in its own process")
        print(f"  all created in              {out['create_seconds']} s")
        print(f"  all Ready with CronJobs in  {out['ready_seconds']} s   (goal < 60 s)")
        print(f"  operator API requests       {out['requests_per_policy']} per policy "
              f"({out['reads_per_policy']} reads, {out['writes_per_policy']} writes)")
        for k, v in out["writes_by_kind"].items():
            print(f"      {k:45} {v}")
        print(f"  failed writes               {out['failed_writes']}")
        print(f"  full resync (restart)       {out['resync_seconds']} s, {out['resync_writes']} writes (goal 0), "
              f"{out['resync_reads']} reads, {out['resync_requests']} requests in all")
        print(f"  operator peak memory        {out['peak_rss_mib']} MiB (first run {out['peak_rss_mib_first']}, "
              f"resync {out['peak_rss_mib_resync']}; goal < 300 MiB)")
        print(f"  logs in {workdir}" + ("" if args.keep_logs else " (removed when every goal is met)"))
    ok = out["ready_seconds"] < 60 and out["resync_writes"] == 0 and out["peak_rss_mib"] < 300
    if ok and not args.keep_logs:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
