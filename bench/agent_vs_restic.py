#!/usr/bin/env python3
"""lifeline agent vs restic on the same ~1 GiB dataset, same disk, one command.

    .venv/bin/python bench/agent_vs_restic.py [--size-mib 1024] [--keep] [--profile]

Rows: first backup, second backup after a 1 % change, full restore. For each: wall
time, throughput (dataset bytes / wall time), ratio lifeline/restic (> 1 means
lifeline is faster), peak RSS of the process (from wait4's rusage), repository
size. The dataset is many small files plus a few large ones, half compressible
text, half random. Both tools read a warm page cache (no cache dropping: this is a
shared machine), write their repository to the same disk, and use all cores.

``--profile`` also runs one lifeline backup in-process under cProfile and prints
where the main thread spends time, and measures the per-core speed of each
primitive (FastCDC, keyed BLAKE3, zstd, AES-256-GCM) to compare with the
AES-GCM ceiling from ``openssl speed``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
RESTIC = shutil.which("restic") or "/usr/bin/restic"


# --- dataset ------------------------------------------------------------------------------
def _log_block(rng: random.Random, size: int) -> bytes:
    wards = [b"ICU-1", b"ICU-2", b"ER", b"CARDIO", b"NEURO", b"PEDS", b"ONC"]
    lines = []
    n = 0
    while n < size:
        line = b"2026-11-%02dT%02d:%02d:%02d.%03dZ INFO ward=%s patient=%08d hr=%d spo2=%d bp=%d/%d msg=%s\n" % (
            rng.randint(1, 30), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999),
            rng.choice(wards), rng.randint(0, 99999999), rng.randint(40, 180), rng.randint(80, 100),
            rng.randint(80, 200), rng.randint(40, 120), rng.choice([b"ok", b"alarm silenced", b"sensor reattached",
                                                                     b"medication given", b"nurse call"]))
        lines.append(line)
        n += len(line)
    return b"".join(lines)[:size]


class TextSource:
    """Distinct compressible blocks fast: one log block, its digits permuted per block."""

    def __init__(self, seed: int = 1):
        self.rng = random.Random(seed)
        self.base = _log_block(self.rng, 4 * MiB)

    def block(self) -> bytes:
        digits = list(b"0123456789")
        self.rng.shuffle(digits)
        table = bytes.maketrans(b"0123456789", bytes(digits))
        # rotate too, so equal permutations still give different blocks
        k = self.rng.randrange(len(self.base))
        return (self.base[k:] + self.base[:k]).translate(table)


def build_dataset(root: Path, size_mib: int) -> int:
    text = TextSource()
    rng = random.Random(7)
    root.mkdir(parents=True)
    total = 0
    small_budget = size_mib * MiB // 10  # ~10 % in many small files
    pool = [text.block() for _ in range(8)]
    i = 0
    while total < small_budget:
        d = root / "small" / f"d{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.choice([0, 100, 1500, 4000, 9000, 20000, 60000])
        if i % 2:
            data = os.urandom(n)
        else:
            blk = pool[i % len(pool)]
            k = rng.randrange(len(blk) - n)
            data = blk[k:k + n]
        (d / f"file{i:05d}.{'bin' if i % 2 else 'log'}").write_bytes(data)
        total += n
        i += 1
    big = size_mib * MiB - total
    per = big // 6
    (root / "large").mkdir()
    for j in range(6):
        with open(root / "large" / f"{'random' if j % 2 else 'text'}{j}.dat", "wb") as f:
            left = per
            while left > 0:
                blk = os.urandom(4 * MiB) if j % 2 else text.block()
                f.write(blk[:left])
                left -= len(blk[:left])
        total += per
    return total


def change_one_percent(root: Path, size: int) -> int:
    """Rewrite ~1 % of the bytes: some small files, regions of two large files, an append."""
    rng = random.Random(99)
    budget = size // 100
    changed = 0
    smalls = sorted((root / "small").rglob("*"))
    smalls = [p for p in smalls if p.is_file()]
    for p in rng.sample(smalls, max(1, len(smalls) // 100)):
        n = p.stat().st_size
        p.write_bytes(os.urandom(n))
        changed += n
    rest = max(0, budget - changed)
    for name in ("large/random1.dat", "large/text2.dat"):
        with open(root / name, "r+b") as f:
            f.seek(rng.randrange(0, (root / name).stat().st_size - rest // 3))
            f.write(os.urandom(rest // 3))
        changed += rest // 3
    with open(root / "large/text0.dat", "ab") as f:
        f.write(TextSource(3).block()[: rest // 3])
    changed += rest // 3
    return changed


# --- running ------------------------------------------------------------------------------
def run_rusage(argv: list[str], env: dict | None = None) -> tuple[float, int, bytes]:
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _pid, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({p.returncode}):\n{err.decode()[-2000:]}")
    return dt, ru.ru_maxrss * 1024, out, ru.ru_utime, ru.ru_stime


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def openssl_aes_gcm() -> float | None:
    """GB/s per core for AES-256-GCM at 16 KiB blocks, from `openssl speed`."""
    try:
        out = subprocess.run(["openssl", "speed", "-elapsed", "-seconds", "1", "-bytes", "16384",
                              "-evp", "aes-256-gcm"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        if line.lower().startswith("aes-256-gcm"):
            val = line.split()[-1].rstrip("k")
            return float(val) * 1000 / 1e9
    return None


def primitives() -> dict:
    """Single-thread MB/s of each step of the backup pipeline on 1 MiB chunks."""
    import blake3
    import pyfastcdc
    import zstandard
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    rnd = os.urandom(64 * MiB)
    txt = b"".join(TextSource(5).block() for _ in range(16))
    res = {}
    for name, data in (("random", rnd), ("text", txt)):
        mv = memoryview(data)
        t = time.perf_counter()
        cuts = [(c.offset, c.length) for c in pyfastcdc.FastCDC(1 << 20, min_size=256 << 10,
                                                                 max_size=4 << 20, seed=3).cut_buf(data)]
        res[f"fastcdc {name}"] = len(data) / (time.perf_counter() - t) / 1e6
        key = os.urandom(32)
        t = time.perf_counter()
        for o, n in cuts:
            blake3.blake3(mv[o:o + n], key=key).digest()
        res[f"blake3 keyed {name}"] = len(data) / (time.perf_counter() - t) / 1e6
        z = zstandard.ZstdCompressor(level=1)
        t = time.perf_counter()
        comp = [z.compress(mv[o:o + n]) for o, n in cuts]
        res[f"zstd-1 {name}"] = len(data) / (time.perf_counter() - t) / 1e6
        res[f"zstd-1 ratio {name}"] = sum(map(len, comp)) / len(data)
        a = AESGCM(key)
        t = time.perf_counter()
        for o, n in cuts:
            a.encrypt(b"\0" * 12, mv[o:o + n], b"aad")
        res[f"aes-256-gcm {name}"] = len(data) / (time.perf_counter() - t) / 1e6
        d = zstandard.ZstdDecompressor()
        t = time.perf_counter()
        for c in comp:
            d.decompress(c)
        res[f"unzstd {name}"] = len(data) / (time.perf_counter() - t) / 1e6
    return res


def profile_backup(dataset: Path, work: Path) -> str:
    import cProfile
    import io
    import pstats

    sys.path.insert(0, str(ROOT / "operator"))
    from lifeline.agent.backup import dir_source, run_backup
    from lifeline.keys import LocalKeyFileProvider, create_key_file
    from lifeline.repository import Repository, open_backend

    key = create_key_file(work / "prof-key")
    repo = Repository.init(open_backend(str(work / "prof-repo"), create=True), "file://" + str(key))
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    run_backup(repo, LocalKeyFileProvider(key), dir_source(str(dataset)), kind="full")
    prof.disable()
    wall = time.perf_counter() - t
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(14)
    return f"in-process full backup: {wall:.2f} s wall\n" + s.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", help="work directory (default: a temp dir on the same disk as /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--profile", action="store_true", help="profile lifeline and time the primitives")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    ap.add_argument("--repeat", type=int, default=3, help="runs; each row reports the best (default 3)")
    args = ap.parse_args()
    if not os.path.exists(RESTIC):
        print("restic not found: install it with `apt-get install -y restic` (Debian package)", file=sys.stderr)
        return 1
    work = Path(args.dir or tempfile.mkdtemp(prefix="lifeline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "data"
        t = time.perf_counter()
        size = build_dataset(data, args.size_mib)
        nfiles = sum(1 for p in data.rglob("*") if p.is_file())
        print(f"dataset: {size / MiB:.0f} MiB in {nfiles} files (built in {time.perf_counter() - t:.1f} s), "
              f"{os.cpu_count()} cores, work dir {work}")

        py = [sys.executable, "-m", "lifeline.agent"]
        key = work / "key"
        results: dict[str, dict] = {}
        changed = lstored = 0
        same = True
        cp_times: list[float] = []
        for rep in range(args.repeat):
            for d in ("repo-lifeline", "repo-restic", "restic-cache"):
                shutil.rmtree(work / d, ignore_errors=True)
            env_l = {"PYTHONPATH": str(ROOT / "operator"), "LIFELINE_REPOSITORY": str(work / "repo-lifeline"),
                     "LIFELINE_KEY": "file://" + str(key)}
            env_r = {"RESTIC_REPOSITORY": str(work / "repo-restic"), "RESTIC_PASSWORD": "bench-password",
                     "RESTIC_CACHE_DIR": str(work / "restic-cache")}
            run_rusage(py + ["init"] + ([] if key.exists() else ["--create-key"]), env_l)
            run_rusage([RESTIC, "init"], env_r)

            def row(name, lt, rt, nbytes):
                r = results.setdefault(name, {"row": name, "bytes": nbytes, "lifeline_s": [], "restic_s": [],
                                              "lifeline_rss": 0, "restic_rss": 0, "cpu": {}})
                if not r["lifeline_s"] or lt[0] < min(r["lifeline_s"]):
                    r["cpu"]["lifeline"] = (lt[3], lt[4])
                if not r["restic_s"] or rt[0] < min(r["restic_s"]):
                    r["cpu"]["restic"] = (rt[3], rt[4])
                r["lifeline_s"].append(lt[0])
                r["restic_s"].append(rt[0])
                r["lifeline_rss"] = max(r["lifeline_rss"], lt[1])
                r["restic_rss"] = max(r["restic_rss"], rt[1])
                r["lifeline_repo_MiB"] = du(work / "repo-lifeline") / MiB
                r["restic_repo_MiB"] = du(work / "repo-restic") / MiB

            # alternate who goes first, so neither always gets the warmer cache
            order = (0, 1) if rep % 2 == 0 else (1, 0)

            def both(largv, rargv):
                out = [None, None]
                for who in order:
                    out[who] = run_rusage(largv, env_l) if who == 0 else run_rusage(rargv, env_r)
                return out

            lt, rt = both(py + ["backup", str(data), "--json"], [RESTIC, "backup", str(data), "--quiet"])
            row("first backup", lt, rt, size)
            changed = change_one_percent(data, size)
            lt, rt = both(py + ["backup", str(data), "--json"], [RESTIC, "backup", str(data), "--quiet"])
            row("second backup (1% changed)", lt, rt, size)
            lstored = json.loads(lt[2])["stored_bytes"]
            lout, rout = work / "restore-lifeline", work / "restore-restic"
            lt, rt = both(py + ["restore", "latest", "--to", str(lout)],
                          [RESTIC, "restore", "latest", "--target", str(rout)])
            row("full restore", lt, rt, size)
            # the floor for a restore on this disk: copying the plain files
            cp_t = run_rusage(["cp", "-r", str(data), str(work / "restore-cp")])
            cp_times.append(cp_t[0])
            shutil.rmtree(work / "restore-cp", ignore_errors=True)
            same = same and subprocess.run(["diff", "-r", "-q", str(data), str(lout)],
                                           capture_output=True).returncode == 0
            shutil.rmtree(lout, ignore_errors=True)
            shutil.rmtree(rout, ignore_errors=True)
            print(f"  run {rep + 1}/{args.repeat}: " + ", ".join(
                f"{r['row'].split(' (')[0]} {r['lifeline_s'][-1]:.2f}s vs {r['restic_s'][-1]:.2f}s"
                for r in results.values()), flush=True)
        rows = []
        for r in results.values():
            lbest, rbest = min(r["lifeline_s"]), min(r["restic_s"])
            rows.append({"row": r["row"], "bytes": r["bytes"], "lifeline_s": lbest, "restic_s": rbest,
                         "lifeline_MBps": r["bytes"] / lbest / 1e6, "restic_MBps": r["bytes"] / rbest / 1e6,
                         "ratio": rbest / lbest, "lifeline_peak_rss_MiB": r["lifeline_rss"] / MiB,
                         "restic_peak_rss_MiB": r["restic_rss"] / MiB, "lifeline_repo_MiB": r["lifeline_repo_MiB"],
                         "restic_repo_MiB": r["restic_repo_MiB"], "lifeline_all_s": r["lifeline_s"],
                         "restic_all_s": r["restic_s"],
                         "lifeline_cpu_user_sys_s": r["cpu"]["lifeline"], "restic_cpu_user_sys_s": r["cpu"]["restic"]})

        ceiling = openssl_aes_gcm()
        cores = os.cpu_count() or 1
        print()
        hdr = (f"{'row':34} {'lifeline':>17} {'restic':>17} {'ratio':>6}  {'peak RSS (MiB)':>15}  "
               f"{'repo MiB':>13}  {'% of AES ceiling':>16}")
        print(hdr)
        print("-" * len(hdr))
        for r in rows:
            pct = f"{100 * r['lifeline_MBps'] / (ceiling * 1000 * cores):.1f}%" if ceiling else "n/a"
            print(f"{r['row']:34} {r['lifeline_MBps']:7.0f} MB/s {r['lifeline_s']:5.2f}s "
                  f"{r['restic_MBps']:7.0f} MB/s {r['restic_s']:5.2f}s {r['ratio']:6.2f}  "
                  f"{r['lifeline_peak_rss_MiB']:6.0f} / {r['restic_peak_rss_MiB']:<6.0f}  "
                  f"{r['lifeline_repo_MiB']:5.0f} / {r['restic_repo_MiB']:<5.0f}  {pct:>16}")
        print(f"\nreference: `cp -r` of the dataset on the same disk (the floor for a restore): "
              f"{min(cp_times):.2f} s = {size / min(cp_times) / 1e6:.0f} MB/s (runs: "
              + ", ".join(f"{t:.2f}" for t in cp_times) + ")")
        print("\nCPU seconds (user + sys) of the best run:")
        for r in rows:
            lu, ls = r["lifeline_cpu_user_sys_s"]
            ru_, rs = r["restic_cpu_user_sys_s"]
            print(f"  {r['row']:34} lifeline {lu:5.2f} + {ls:5.2f}   restic {ru_:5.2f} + {rs:5.2f}")
        print(f"\nbest of {args.repeat} runs; ratio = restic time / lifeline time (> 1: lifeline faster). lifeline stored "
              f"{lstored / MiB:.1f} MiB for the {changed / MiB:.1f} MiB change. Restore identical: {same}.")
        if ceiling:
            print(f"AES-256-GCM ceiling (openssl speed, 16 KiB): {ceiling:.2f} GB/s per core, "
                  f"{ceiling * cores:.2f} GB/s on {cores} cores.")
        if args.profile:
            print("\nprimitives, one thread, MB/s:")
            for k, v in primitives().items():
                print(f"  {k:28} {v:8.2f}")
            print()
            print(profile_backup(data, work))
        if args.json:
            print(json.dumps({"rows": rows, "cp_r_s": cp_times, "aes_gcm_GBps_per_core": ceiling, "dataset_bytes": size,
                              "files": nfiles, "restore_identical": same}, indent=1))
        return 0 if same else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
