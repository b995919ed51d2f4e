#!/usr/bin/env python3
"""SM4-GCM beside AES-256-GCM: what choosing `init --cipher sm4-gcm` costs, in one run.

    .venv/bin/python bench/sm4.py [--mib 256] [--chunk-kib 1024] [--repeat 3] [--e2e-mib 256] [--json]

Rows, for each cipher, in MiB/s (best of --repeat), and the ratio AES / SM4 (how many times
faster AES is):

* ``seal 1 thread`` / ``open 1 thread`` — lifeline's own path (``EpochKeys.seal_chunk`` with
  compression off, ``open_chunk`` with its authentication, and re-hash) on random 1 MiB chunks;
* ``seal N threads`` — the same on every core (a backup seals on a thread pool; both ciphers
  release the GIL);
* ``AEAD only`` — the bare cipher (cryptography's AESGCM, lifeline's SM4GCM wrapper), no hashing;
* ``backup`` / ``restore`` (end to end) — ``lifeline agent backup --stdin`` of --e2e-mib random bytes
  into a fresh file:// repository of each cipher, and ``restore latest --to -`` of it (random data:
  zstd is skipped by its probe, so the cipher's share is the largest it can be). 0 skips them.

The header says whether the CPU has AES-NI and SM4 instructions (x86 ``sm4`` flag, ARMv8 ``sm4``)
and which OpenSSL cryptography links.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from lifeline.repository.crypto import SM4GCM, EpochKeys, cipher_problem  # noqa: E402

MiB = 1 << 20
CIPHERS = ("aes-256-gcm", "sm4-gcm")


def cpu() -> dict:
    flags: set[str] = set()
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    return {"model": model, "cores": os.cpu_count(), "aes_ni": "aes" in flags, "sm4_instructions": "sm4" in flags,
            "vaes": "vaes" in flags, "gfni": "gfni" in flags,
            "crypto": f"cryptography {cryptography.__version__}, {backend.openssl_version_text()}"}


def best(fn, repeat: int) -> float:
    """Seconds of the fastest of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def primitives(mib: int, chunk: int, repeat: int, threads: int) -> dict[str, dict[str, float]]:
    chunks = [os.urandom(chunk) for _ in range(max(1, mib * MiB // chunk))]
    total = len(chunks) * chunk / MiB
    dek = os.urandom(32)
    rows: dict[str, dict[str, float]] = {}
    pool = ThreadPoolExecutor(threads)
    for name in CIPHERS:
        keys = EpochKeys("ab" * 16, dek, cipher=name)
        ids = [keys.chunk_id(c) for c in chunks]
        sealed = [keys.seal_chunk(i, c, compress=False) for i, c in zip(ids, chunks)]
        nonce = os.urandom(12)

        def seal():
            for i, c in zip(ids, chunks):
                keys.seal_chunk(i, c, compress=False)

        def opened():
            for i, b in zip(ids, sealed):
                keys.open_chunk(i, b, chunk)

        def aead():
            for c in chunks:
                keys.aead.encrypt(nonce, c, b"aad")

        def seal_parallel():
            # len(): each sealed blob is dropped at once, as in the other rows (a backup hands it to a
            # pack and lets go); keeping them all would time the kernel's page faults, not the cipher
            list(pool.map(lambda ic: len(keys.seal_chunk(ic[0], ic[1], compress=False)), zip(ids, chunks)))

        assert isinstance(keys.aead, SM4GCM) == (name == "sm4-gcm")
        rows.setdefault("seal 1 thread", {})[name] = total / best(seal, repeat)
        rows.setdefault("open 1 thread (+ BLAKE3 re-hash)", {})[name] = total / best(opened, repeat)
        rows.setdefault(f"seal {threads} threads", {})[name] = total / best(seal_parallel, repeat)
        rows.setdefault("AEAD only, 1 thread", {})[name] = total / best(aead, repeat)
    pool.shutdown()
    return rows


def end_to_end(mib: int, repeat: int) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    agent = [sys.executable, "-m", "lifeline.agent"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LIFELINE_", "AWS_"))},
           "PYTHONPATH": str(ROOT / "operator")}
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-sm4-") as work:
        work = Path(work)
        data = work / "input"
        with open(data, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(MiB))
        key = f"file://{work}/key"
        for name in CIPHERS:
            back, rest = [], []
            for rep in range(repeat):
                repo = f"file://{work}/repo-{name}-{rep}"
                subprocess.run([*agent, "init", "--repo", repo, "--key", key, "--cipher", name]
                               + ([] if (work / "key").exists() else ["--create-key"]),
                               env=env, check=True, capture_output=True)
                with open(data, "rb") as stdin:
                    t = time.perf_counter()
                    subprocess.run([*agent, "backup", "--stdin", "--repo", repo, "--key", key], stdin=stdin,
                                   env=env, check=True, capture_output=True)
                    back.append(time.perf_counter() - t)
                t = time.perf_counter()
                subprocess.run([*agent, "restore", "latest", "--to", "-", "--repo", repo, "--key", key],
                               env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                rest.append(time.perf_counter() - t)
            rows.setdefault(f"backup --stdin {mib} MiB (end to end)", {})[name] = mib / min(back)
            rows.setdefault(f"restore --to - {mib} MiB (end to end)", {})[name] = mib / min(rest)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256, help="MiB sealed per primitive row (default 256)")
    ap.add_argument("--chunk-kib", type=int, default=1024, help="chunk size (default 1024: the average chunk)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per row; the best is reported (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--e2e-mib", type=int, default=256, help="MiB for the end-to-end rows (0 = skip them)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()
    problem = cipher_problem("sm4-gcm")
    if problem:
        print(f"SM4-GCM is not available here: {problem}", file=sys.stderr)
        return 1
    info = cpu()
    print(f"CPU: {info['model']}, {info['cores']} cores; AES-NI: {'yes' if info['aes_ni'] else 'no'}, "
          f"SM4 instructions: {'yes' if info['sm4_instructions'] else 'no (SM4 runs in software)'}; {info['crypto']}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = primitives(args.mib, args.chunk_kib * 1024, args.repeat, args.threads)
    if args.e2e_mib:
        rows.update(end_to_end(args.e2e_mib, args.repeat))
    print(f"\n| row ({args.chunk_kib} KiB chunks) | AES-256-GCM MiB/s | SM4-GCM MiB/s | ratio AES / SM4 |")
    print("|---|---|---|---|")
    for row, r in rows.items():
        a, s = r["aes-256-gcm"], r["sm4-gcm"]
        print(f"| {row} | {a:,.0f} | {s:,.0f} | **{a / s:.1f}** |")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps({"cpu": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
