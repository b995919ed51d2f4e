#!/usr/bin/env python3
"""lifeline agent vs restic, kopia and rustic (the newest of each, built here), same trees, same disk.

    .venv/bin/python bench/agent_vs_peers.py                 # the two default trees, best of 3
    .venv/bin/python bench/agent_vs_peers.py --scale         # plus the 1M-file DICOM-like and 20 GiB trees
    .venv/bin/python bench/agent_vs_peers.py --smoke         # every row on tiny trees, once (a minute or two)

Peers are built (pinned in tools/, only when the pin changed) by ``scripts/build-peers.sh`` into
``.tools/peers/bin``; rustic only with ``--rustic`` (its cold build is long, docs/performance.md) or
once it is built. ``--tools`` picks and orders them; ``restic-deb`` is the Debian restic of
bench/agent_vs_restic.py (0.14), off by default.

Trees (each built once per run, under the work directory):

* ``mixed``  -- the 1 GiB tree of bench/agent_vs_restic.py: ~8,000 files, ~10 % small files up to 60 KB,
  six ~150 MiB files; half compressible log text (~4:1), half random.
* ``small``  -- 200,000 files of 0.5-3 KiB (half log text, half random), 1,000 a directory.
* ``dicom``  (``--scale``) -- 1,000,000 DICOM-like files of 50-500 KiB, one directory per study and a
  sub-directory per series: a DICOM preamble and a header with per-file UIDs, then 12-bit pixel noise
  in 16-bit words (~3/4 entropy). ~262 GiB: needs ~3x that free (the tree, one repository, a restore; 4x with kopia, whose cache grows).
  ``--dicom-shrink N`` divides every file's size by N (N=50: 1-10 KiB, ~5 GiB for a million files): the
  files, directories and names stay, so what a tool keeps per file and per chunk (its index, its trees)
  is measured at full count on a disk that cannot hold the full bytes. Every file is then one chunk; at
  full size the files above 256 KiB may be two. A file keeps its header (~0.6 KiB) whatever N: past
  N=80 the smallest files stop shrinking.
* ``large``  (``--scale``) -- 20 files of 1 GiB, alternately log text and random.

Rows, for every tool, one tool after the other (the order rotates between repeats): the first backup
into a new repository; a second backup after a 1 % change (1 % of the small files rewritten, the rest of
the 1 % as overwritten regions of two large files and an append to a third; the same bytes for every
tool: the change is seeded, and undone after each tool); a full restore into an empty directory, then
compared with the tree (``diff -r``, not timed). Per row: wall time, throughput (tree bytes / wall time),
user and system CPU, peak RSS of the tool's whole process tree (the sum of the VmHWM of the tool's process
and its descendants, sampled every 50 ms; not ``ru_maxrss``, which counts the fork's copy of the harness)
and the repository's size (after each backup). Floors: reading every file of the tree once (a Python
walk that reads each file to the end, one thread; ``tar -cf /dev/null`` is no floor: GNU tar then skips
reading) for a backup, and ``cp -a`` of the tree for a restore.

Fairness: encryption is on for every tool (lifeline AES-256-GCM; restic AES-256-CTR + Poly1305; kopia
AES256-GCM-HMAC-SHA256; rustic as restic) and each keeps its compression default (lifeline zstd-1 with an
incompressibility probe; restic zstd "auto", its fastest level; rustic zstd level 3, and it decrypts and
decompresses each blob again before writing it; kopia **none** -- ``--kopia-compression zstd`` sets a
global policy to compare like with like). Repositories, caches and restores are on the work directory's
disk. kopia's local cache is a second copy of what it reads (its limits are soft: a restore of a 16 GiB
tree grew it past 13 GiB); ``--kopia-cache-limit-mib N`` gives its content and metadata caches a hard
limit of N MiB each, for a tree that would not fit otherwise. Caches: by default warm for all (the
floor read precedes each tool's first backup, so every tool starts from the same page cache); ``--drop-caches`` syncs and drops the page cache before every timed
step, floors included (root; this slows everyone else on a shared machine).

Results: one table (text, and markdown), and bench/results/peers-<UTC time>.json and .md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_vs_restic import TextSource, build_dataset  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
ROOT = Path(__file__).resolve().parent.parent
PEERS_BIN = ROOT / ".tools" / "peers" / "bin"
RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench-password-not-secret"
ALL_TOOLS = ("lifeline", "restic", "kopia", "rustic", "restic-deb")


def say(msg: str) -> None:
    print(msg, flush=True)


# --- trees --------------------------------------------------------------------------------
def build_small(root: Path, nfiles: int) -> int:
    """nfiles files of 512-3072 bytes, 1,000 a directory (100 directories a level-1 directory)."""
    rng = random.Random(11)
    text = TextSource(4)
    pool = [text.block() for _ in range(4)]
    total = 0
    for i in range(nfiles):
        if i % 1000 == 0:
            d = root / f"s{i // 100_000:02d}" / f"d{i // 1000 % 100:02d}"
            d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(512, 3072)
        if i % 2:
            data = os.urandom(n)
        else:
            blk = pool[i % len(pool)]
            k = rng.randrange(len(blk) - n)
            data = blk[k:k + n]
        with open(d / f"f{i:07d}.{'bin' if i % 2 else 'log'}", "wb") as f:
            f.write(data)
        total += n
        if nfiles >= 20_000 and (i + 1) % 50_000 == 0:
            say(f"    small: {i + 1:,} / {nfiles:,} files")
    return total


_NIBBLE = bytes(b & 0x0F for b in range(256))  # keep the low 4 bits: 12-bit pixels in 16-bit words


def _dicom_file(rng: random.Random, study: str, series: int, inst: int, size: int) -> bytes:
    hdr = (b"\0" * 128 + b"DICM" +
           (f"(0002,0010) UI 1.2.840.10008.1.2.1\n(0008,0016) UI 1.2.840.10008.5.1.4.1.1.2\n"
            f"(0008,0018) UI {study}.{series}.{inst}.{rng.getrandbits(48)}\n(0008,0020) DA 2026{rng.randint(1, 12):02d}"
            f"{rng.randint(1, 28):02d}\n(0008,0060) CS CT\n(0010,0010) PN PATIENT^{rng.getrandbits(32):08X}\n"
            f"(0010,0020) LO {rng.getrandbits(40)}\n(0020,000D) UI {study}\n(0020,000E) UI {study}.{series}\n"
            f"(0020,0013) IS {inst}\n(0028,0010) US 512\n(0028,0011) US 512\n(0028,0100) US 16\n"
            f"(0028,0101) US 12\n(7FE0,0010) OW\n").encode())
    hdr += b" " * ((-len(hdr)) % 2)
    n = max(0, size - len(hdr))
    pix = bytearray(os.urandom(n))
    pix[1::2] = pix[1::2].translate(_NIBBLE)
    return hdr + pix


def build_dicom(root: Path, nfiles: int, shrink: int = 1) -> int:
    """nfiles DICOM-like files of 50-500 KiB (each divided by shrink): root/<study UID>/<series>/IM<n>.dcm,
    ~200 images a study."""
    rng = random.Random(13)
    total = i = 0
    while i < nfiles:
        study = f"1.2.826.0.1.3680043.{rng.getrandbits(30)}.{i}"
        for series in range(1, rng.randint(2, 5) + 1):
            d = root / study / f"{series:03d}"
            d.mkdir(parents=True)
            for inst in range(1, rng.randint(20, 120) + 1):
                if i >= nfiles:
                    break
                size = rng.randint(50 * 1024, 500 * 1024) // shrink
                total += (d / f"IM{inst:05d}.dcm").write_bytes(_dicom_file(rng, study, series, inst, size))
                i += 1
                if nfiles >= 20_000 and i % 20_000 == 0:
                    say(f"    dicom: {i:,} / {nfiles:,} files, {total / GiB:.1f} GiB")
    return total


def build_large(root: Path, nfiles: int, file_size: int) -> int:
    """nfiles files of file_size bytes, alternately log text and random."""
    text = TextSource(5)
    root.mkdir(parents=True)
    for j in range(nfiles):
        with open(root / f"{'random' if j % 2 else 'text'}{j:02d}.dat", "wb") as f:
            left = file_size
            while left > 0:
                blk = os.urandom(4 * MiB) if j % 2 else text.block()
                f.write(blk[:left])
                left -= len(blk[:left])
        if file_size >= GiB:
            say(f"    large: {j + 1} / {nfiles} files")
    return nfiles * file_size


def tree_stats(root: Path) -> tuple[int, int]:
    n = size = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            n += 1
            size += os.lstat(os.path.join(dirpath, name)).st_size
    return n, size


# --- the 1 % change, the same for every tool and undone after each -----------------------
@dataclass
class Change:
    """A seeded change of ~1 % of a tree's bytes, applied and undone as often as needed."""
    root: Path
    undo_dir: Path
    ops: list = field(default_factory=list)  # (kind, rel, offset, length, seed); kind: rewrite, region, append
    changed: int = 0

    @classmethod
    def plan(cls, root: Path, undo_dir: Path, seed: int = 99) -> "Change":
        rng = random.Random(seed)
        files = []
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                p = os.path.join(dirpath, name)
                files.append((os.path.relpath(p, root), os.lstat(p).st_size))
        files.sort()
        total = sum(s for _, s in files)
        budget = total // 100
        small = [f for f in files if f[1] < MiB]
        large = [f for f in files if f[1] >= MiB]
        ch = cls(root, undo_dir)
        # 1 % of the small files, whole (the small files' share of the 1 %)
        for rel, size in rng.sample(small, len(small) // 100 if small else 0):
            ch.ops.append(("rewrite", rel, 0, size, rng.getrandbits(32)))
            ch.changed += size
        rest = max(0, budget - ch.changed)
        if large and rest:
            picks = rng.sample(large, min(3, len(large)))
            region = rest // 3
            for rel, size in picks[:2]:
                n = min(region, size)
                ch.ops.append(("region", rel, rng.randrange(0, size - n + 1), n, rng.getrandbits(32)))
                ch.changed += n
            ch.ops.append(("append", picks[-1][0], picks[-1][1], rest - 2 * region if len(picks) > 1 else region,
                           rng.getrandbits(32)))
            ch.changed += ch.ops[-1][3]
        return ch

    def apply(self) -> None:
        """Save what each op overwrites into undo_dir, then write the op's seeded bytes."""
        self.undo_dir.mkdir(parents=True, exist_ok=True)
        with open(self.undo_dir / "undo.bin", "wb") as undo:
            for kind, rel, off, n, seed in self.ops:
                path = self.root / rel
                new = random.Random(seed).randbytes(n)
                if kind == "append":
                    with open(path, "ab") as f:
                        f.write(new)
                    continue
                with open(path, "r+b") as f:
                    f.seek(off)
                    undo.write(f.read(n))
                    f.seek(off)
                    f.write(new)

    def undo(self) -> None:
        with open(self.undo_dir / "undo.bin", "rb") as undo:
            for kind, rel, off, n, _seed in self.ops:
                path = self.root / rel
                if kind == "append":
                    os.truncate(path, off)
                    continue
                with open(path, "r+b") as f:
                    f.seek(off)
                    f.write(undo.read(n))
        (self.undo_dir / "undo.bin").unlink()


# --- running and measuring ----------------------------------------------------------------
def _ppid_map() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                s = f.read()
            out[int(name)] = int(s[s.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return out


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for p, pp in _ppid_map().items():
        kids.setdefault(pp, []).append(p)
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(kids.get(p, ()))
    return found


def _hwm(pids: set[int]) -> int:
    """The sum of each process's own peak RSS (VmHWM: since its exec, so not the fork's copy of us)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
    return total


@dataclass
class Run:
    wall: float
    rss: int
    user: float
    sys: float
    out: bytes


def run(argv: list[str], env: dict | None = None, cwd: Path | None = None, check: bool = True) -> Run:
    """Run argv, timing it, with the peak RSS of its process tree.

    ru_maxrss from wait4 is no good here: it counts the image of this (large) process that the child
    had between fork and exec. So every 50 ms the VmHWM of every process of the tree is read and summed
    (VmHWM only grows, so the last sample before the exit holds the main process's peak; for a tree of
    several processes the sum of their own peaks is an upper bound)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        # the peaks of the known process tree every 50 ms; the tree itself (a scan of all of /proc,
        # which costs a few ms) after 100 ms and then every second
        pids, n = {p.pid}, 0
        while not done.wait(0.05):
            if n % 20 == 1:
                pids = _descendants(p.pid)
            n += 1
            peak[0] = max(peak[0], _hwm(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = bytearray()
    reader = threading.Thread(target=lambda: err.extend(p.stderr.read()), daemon=True)
    reader.start()
    out = p.stdout.read()
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    reader.join()
    code = os.waitstatus_to_exitcode(status)
    if check and code != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:5]))} failed ({code}):\n{bytes(err).decode(errors='replace')[-3000:]}")
    return Run(wall, peak[0], ru.ru_utime, ru.ru_stime, out)


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


READ_TREE = r"""
import os, sys
buf = bytearray(1 << 20); mv = memoryview(buf); n = 0
for dirpath, dirs, files in os.walk(sys.argv[1]):
    for name in files:
        with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
            while True:
                k = f.readinto(mv)
                if not k:
                    break
                n += k
print(n)
"""


# --- the tools ----------------------------------------------------------------------------
class Tool:
    name = ""

    def __init__(self, work: Path):
        self.work = work
        self.repo = work / f"repo-{self.name}"
        self.cache = work / f"cache-{self.name}"

    def available(self) -> str | None:
        """None if it can run, else why not."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def env(self) -> dict:
        return {}

    def reset(self) -> None:
        for d in (self.repo, self.cache):
            shutil.rmtree(d, ignore_errors=True)

    def init(self) -> None:
        raise NotImplementedError

    def backup(self, tree: Path) -> list[str]:
        raise NotImplementedError

    def restore_argv(self, tree: Path, target: Path) -> list[str]:
        raise NotImplementedError

    def restored_root(self, tree: Path, target: Path) -> Path:
        inner = target / str(tree).lstrip("/")
        return inner if inner.is_dir() else target

    def run(self, argv: list[str]) -> Run:
        return run(argv, self.env())


class Lifeline(Tool):
    name = "lifeline"

    def __init__(self, work: Path):
        super().__init__(work)
        self.key = work / "lifeline-key"
        self.py = [sys.executable, "-m", "lifeline.agent"]

    def version(self) -> str:
        import importlib.metadata
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return f"{importlib.metadata.version('lifeline')} ({rev}{'+changes' if dirty else ''})"

    def env(self) -> dict:
        return {"PYTHONPATH": str(ROOT / "operator"), "LIFELINE_REPOSITORY": str(self.repo),
                "LIFELINE_KEY": "file://" + str(self.key)}

    def init(self) -> None:
        self.run(self.py + ["init"] + ([] if self.key.exists() else ["--create-key"]))

    def backup(self, tree: Path) -> list[str]:
        return self.py + ["backup", str(tree), "--json", "--no-progress"]

    def restore_argv(self, tree: Path, target: Path) -> list[str]:
        return self.py + ["restore", "latest", "--to", str(target)]


class Restic(Tool):
    name = "restic"

    def __init__(self, work: Path, binary: Path | None = None):
        super().__init__(work)
        self.bin = str(binary or PEERS_BIN / "restic")

    def available(self) -> str | None:
        return None if os.access(self.bin, os.X_OK) else f"{self.bin} missing (scripts/build-peers.sh restic)"

    def version(self) -> str:
        return subprocess.run([self.bin, "version"], capture_output=True, text=True).stdout.split(" compiled")[0].split()[-1]

    def env(self) -> dict:
        return {"RESTIC_REPOSITORY": str(self.repo), "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(self.cache)}

    def init(self) -> None:
        self.run([self.bin, "init"])

    def backup(self, tree: Path) -> list[str]:
        return [self.bin, "backup", str(tree), "--quiet"]

    def restore_argv(self, tree: Path, target: Path) -> list[str]:
        return [self.bin, "restore", "latest", "--target", str(target)]


class ResticDebian(Restic):
    name = "restic-deb"

    def __init__(self, work: Path):
        super().__init__(work, Path(shutil.which("restic") or "/usr/bin/restic"))

    def available(self) -> str | None:
        return None if os.access(self.bin, os.X_OK) else "no Debian restic (apt-get install -y restic)"


class Kopia(Tool):
    name = "kopia"
    compression = ""
    cache_limit_mib = 0  # 0: kopia's own (soft) cache sizes

    def __init__(self, work: Path):
        super().__init__(work)
        self.bin = str(PEERS_BIN / "kopia")
        self.config = work / "kopia.config"

    def available(self) -> str | None:
        return None if os.access(self.bin, os.X_OK) else f"{self.bin} missing (scripts/build-peers.sh kopia)"

    def version(self) -> str:
        return subprocess.run([self.bin, "--version"], capture_output=True, text=True).stdout.split(" build")[0]

    def env(self) -> dict:
        return {"KOPIA_PASSWORD": PASSWORD, "KOPIA_CONFIG_PATH": str(self.config),
                "KOPIA_CACHE_DIRECTORY": str(self.cache), "KOPIA_LOG_DIR": str(self.work / "kopia-logs"),
                "KOPIA_CHECK_FOR_UPDATES": "false"}

    def reset(self) -> None:
        super().reset()
        for p in (self.config, self.config.with_suffix(".config.kopia-password")):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.work / "kopia-logs", ignore_errors=True)

    def init(self) -> None:
        limits = [f"--content-cache-size-limit-mb={self.cache_limit_mib}",
                  f"--metadata-cache-size-limit-mb={self.cache_limit_mib}"] if self.cache_limit_mib else []
        self.run([self.bin, "repository", "create", "filesystem", f"--path={self.repo}", *limits])
        if self.compression:
            self.run([self.bin, "policy", "set", "--global", f"--compression={self.compression}"])

    def backup(self, tree: Path) -> list[str]:
        return [self.bin, "snapshot", "create", str(tree), "--no-progress"]

    def restore_argv(self, tree: Path, target: Path) -> list[str]:
        snaps = json.loads(self.run([self.bin, "snapshot", "list", str(tree), "--json"]).out)
        return [self.bin, "snapshot", "restore", snaps[-1]["id"], str(target), "--no-progress"]


class Rustic(Tool):
    name = "rustic"

    def __init__(self, work: Path):
        super().__init__(work)
        self.bin = str(PEERS_BIN / "rustic")

    def available(self) -> str | None:
        return None if os.access(self.bin, os.X_OK) else f"{self.bin} missing (scripts/build-peers.sh rustic, or --rustic)"

    def version(self) -> str:
        return subprocess.run([self.bin, "--version"], capture_output=True, text=True).stdout.split()[-1].lstrip("v")

    def env(self) -> dict:
        # an empty HOME-independent profile: no rustic.toml of the machine's user is read
        return {"RUSTIC_REPOSITORY": str(self.repo), "RUSTIC_PASSWORD": PASSWORD, "RUSTIC_CACHE_DIR": str(self.cache),
                "RUSTIC_NO_PROGRESS": "true", "XDG_CONFIG_HOME": str(self.work / "rustic-config")}

    def init(self) -> None:
        self.run([self.bin, "init"])

    def backup(self, tree: Path) -> list[str]:
        return [self.bin, "backup", str(tree)]

    def restore_argv(self, tree: Path, target: Path) -> list[str]:
        return [self.bin, "restore", "latest", str(target)]


TOOL_CLASSES = {"lifeline": Lifeline, "restic": Restic, "kopia": Kopia, "rustic": Rustic, "restic-deb": ResticDebian}


# --- the benchmark ------------------------------------------------------------------------
STEPS = ("first backup", "second backup (1% changed)", "full restore")


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def bench_tree(label: str, tree: Path, size: int, nfiles: int, tools: list[Tool], args, work: Path) -> dict:
    change = Change.plan(tree, work / "undo")
    say(f"  change: {len(change.ops):,} operations, {change.changed / MiB:.1f} MiB "
        f"({100 * change.changed / max(size, 1):.2f} % of the bytes)")
    cold = drop_caches if args.drop_caches else (lambda: None)
    res: dict = {"tree": label, "bytes": size, "files": nfiles, "changed_bytes": change.changed,
                 "floor": {"read": [], "cp -a": []}, "tools": {}}
    target = work / "restore"
    for rep in range(args.repeat):
        order = tools[rep % len(tools):] + tools[:rep % len(tools)]
        for tool in order:
            r = res["tools"].setdefault(tool.name, {s: [] for s in STEPS} | {"repo_bytes": [], "identical": True})
            tool.reset()
            tool.init()
            cold()
            floor = run([sys.executable, "-c", READ_TREE, str(tree)])
            res["floor"]["read"].append(vars(floor) | {"out": None})
            cold()
            b1 = tool.run(tool.backup(tree))
            repo1 = du(tool.repo)
            change.apply()
            try:
                cold()
                b2 = tool.run(tool.backup(tree))
                repo2 = du(tool.repo)
                shutil.rmtree(target, ignore_errors=True)
                argv = tool.restore_argv(tree, target)
                cold()
                rs = tool.run(argv)
                same = subprocess.run(["diff", "-r", "-q", str(tree), str(tool.restored_root(tree, target))],
                                      capture_output=True).returncode == 0
                shutil.rmtree(target, ignore_errors=True)
            finally:
                change.undo()
            for step, rr in zip(STEPS, (b1, b2, rs)):
                r[step].append(vars(rr) | {"out": None})
            r["repo_bytes"].append((repo1, repo2))
            r["identical"] = r["identical"] and same
            tool.reset()
            say(f"  run {rep + 1}/{args.repeat} {tool.name:10} backup {b1.wall:7.2f}s  second {b2.wall:7.2f}s  "
                f"restore {rs.wall:7.2f}s  repo {repo2 / MiB:8.1f} MiB  restore identical: {same}")
        shutil.rmtree(target, ignore_errors=True)
        cold()
        cp = run(["cp", "-a", str(tree), str(target)])
        res["floor"]["cp -a"].append(vars(cp) | {"out": None})
        shutil.rmtree(target, ignore_errors=True)
        say(f"  run {rep + 1}/{args.repeat} floors     read {floor.wall:7.2f}s  cp -a {cp.wall:7.2f}s")
    return res


def best(runs: list[dict]) -> dict:
    b = min(runs, key=lambda r: r["wall"])
    return {"s": b["wall"], "user_s": b["user"], "sys_s": b["sys"], "peak_rss": max(r["rss"] for r in runs),
            "all_s": [r["wall"] for r in runs]}


def summarise(res: dict) -> list[dict]:
    """One row per (step, tool) with the best time and ratios to lifeline (tool / lifeline)."""
    rows = []
    size = res["bytes"]
    floors = {"first backup": ("read the tree", res["floor"]["read"]),
              "full restore": ("cp -a", res["floor"]["cp -a"])}
    for i, step in enumerate(STEPS):
        base = res["tools"].get("lifeline")
        lb = best(base[step]) if base else None
        lrepo = min(b[min(i, 1)] for b in base["repo_bytes"]) if base and i < 2 else None
        entries = [(name, t) for name, t in res["tools"].items()]
        for name, t in entries:
            b = best(t[step])
            repo = min(x[min(i, 1)] for x in t["repo_bytes"]) if i < 2 else None
            rows.append({"tree": res["tree"], "step": step, "tool": name, **b, "MBps": size / b["s"] / 1e6,
                         "time_x_lifeline": b["s"] / lb["s"] if lb else None,
                         "rss_x_lifeline": b["peak_rss"] / lb["peak_rss"] if lb else None,
                         "repo_bytes": repo, "repo_x_lifeline": repo / lrepo if lb and repo and lrepo else None,
                         "restore_identical": t["identical"] if step == "full restore" else None})
        if step in floors:
            fname, fruns = floors[step]
            b = best(fruns)
            rows.append({"tree": res["tree"], "step": step, "tool": f"floor: {fname}", **b,
                         "MBps": size / b["s"] / 1e6, "time_x_lifeline": b["s"] / lb["s"] if lb else None,
                         "rss_x_lifeline": None, "repo_bytes": None, "repo_x_lifeline": None,
                         "restore_identical": None})
    return rows


def _f(v, fmt, none="-"):
    return none if v is None else format(v, fmt)


def _rss_mib(r: dict) -> float | None:
    """Not shown for the floors: cp and the reader are small, and often gone before the first sample."""
    return None if r["tool"].startswith("floor") else r["peak_rss"] / MiB


def table_text(rows: list[dict]) -> str:
    hdr = (f"  {'row':27} {'tool':20} {'time s':>8} {'MB/s':>7} {'×ll':>5} {'CPU user+sys s':>15} "
           f"{'peak RSS MiB':>12} {'×ll':>5} {'repo MiB':>9} {'×ll':>5}")
    out = [hdr, "-" * len(hdr)]
    tree = step = None
    for r in rows:
        if r["tree"] != tree:
            tree, step = r["tree"], None
            out.append(f"{tree}:")
        label = r["step"] if r["step"] != step else ""
        step = r["step"]
        out.append(f"  {label:27} {r['tool']:20} {r['s']:8.2f} {r['MBps']:7.0f} {_f(r['time_x_lifeline'], '5.2f'):>5} "
                   f"{r['user_s']:7.1f} +{r['sys_s']:6.1f} {_f(_rss_mib(r), '12.0f'):>12} {_f(r['rss_x_lifeline'], '5.2f'):>5} "
                   f"{_f(r['repo_bytes'] and r['repo_bytes'] / MiB, '9.1f'):>9} {_f(r['repo_x_lifeline'], '5.2f'):>5}")
    return "\n".join(out)


def table_markdown(rows: list[dict]) -> str:
    out = ["| tree | row | tool | time | throughput | time ×lifeline | CPU user+sys | peak RSS | RSS ×lifeline "
           "| repository | repo ×lifeline |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['tree']} | {r['step']} | {r['tool']} | {r['s']:.2f} s | {r['MBps']:.0f} MB/s | "
                   f"{_f(r['time_x_lifeline'], '.2f')} | {r['user_s']:.1f} + {r['sys_s']:.1f} s | "
                   f"{_f(_rss_mib(r), '.0f')}{'' if r['tool'].startswith('floor') else ' MiB'} | {_f(r['rss_x_lifeline'], '.2f')} | "
                   f"{_f(r['repo_bytes'] and r['repo_bytes'] / MiB, '.1f')}{' MiB' if r['repo_bytes'] else ''} | "
                   f"{_f(r['repo_x_lifeline'], '.2f')} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default="lifeline,restic,kopia,rustic",
                    help=f"comma-separated, from {', '.join(ALL_TOOLS)} (default: the first four; "
                         "rustic is skipped with a note when it is not built and --rustic is not given)")
    ap.add_argument("--rustic", action="store_true", help="build rustic first if needed (a long cold build)")
    ap.add_argument("--no-build", action="store_true", help="do not run scripts/build-peers.sh")
    ap.add_argument("--trees", default="mixed,small", help="comma-separated from mixed, small, dicom, large")
    ap.add_argument("--scale", action="store_true", help="add the dicom and large trees")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny trees (32 MiB mixed, 2,000 small, 300 dicom, 4×64 MiB large), every tree, once")
    ap.add_argument("--size-mib", type=int, default=1024, help="the mixed tree's size (default 1024)")
    ap.add_argument("--small-files", type=int, default=200_000)
    ap.add_argument("--dicom-files", type=int, default=1_000_000)
    ap.add_argument("--dicom-shrink", type=int, default=1, metavar="N",
                    help="divide each DICOM-like file's size by N: the full count of files on a smaller disk")
    ap.add_argument("--large-gib", type=int, default=20, help="the large tree: this many 1 GiB files")
    ap.add_argument("--repeat", type=int, default=3, help="runs; each row reports the best (default 3)")
    ap.add_argument("--drop-caches", action="store_true", help="sync and drop the page cache before every timed step")
    ap.add_argument("--kopia-compression", default="", help="e.g. zstd: a global kopia policy (default: kopia's none)")
    ap.add_argument("--kopia-cache-limit-mib", type=int, default=0, metavar="N",
                    help="a hard limit for kopia's content and metadata caches, N MiB each (default: its soft sizes)")
    ap.add_argument("--dir", help="work directory (default: a new one under the system temp dir); "
                                  "repositories, caches and restores go there, on its disk")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--out", help="JSON results file (default bench/results/peers-<UTC time>.json)")
    args = ap.parse_args()

    trees = [t for t in args.trees.split(",") if t]
    if args.scale:
        trees += [t for t in ("dicom", "large") if t not in trees]
    large_files, large_size = args.large_gib, GiB
    if args.smoke:
        args.size_mib, args.small_files, args.dicom_files, args.repeat = 32, 2000, 300, 1
        large_files, large_size = 4, 64 * MiB
        trees = ["mixed", "small", "dicom", "large"]
    if args.dicom_shrink < 1:
        ap.error("--dicom-shrink must be 1 or more")
    if args.kopia_cache_limit_mib < 0:
        ap.error("--kopia-cache-limit-mib must be 0 (kopia's own sizes) or more")
    for t in trees:
        if t not in ("mixed", "small", "dicom", "large"):
            ap.error(f"unknown tree {t} (mixed, small, dicom, large)")
    names = [t for t in args.tools.split(",") if t]
    for n in names:
        if n not in TOOL_CLASSES:
            ap.error(f"unknown tool {n} (from {', '.join(ALL_TOOLS)})")
    if args.drop_caches and not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        ap.error("--drop-caches needs root (writes /proc/sys/vm/drop_caches)")

    if not args.no_build:
        peers = [n for n in names if n in ("restic", "kopia")]
        if "rustic" in names and (args.rustic or os.access(PEERS_BIN / "rustic", os.X_OK)):
            peers.append("rustic")
        if peers:
            say(f"== building the peers (only what changed): scripts/build-peers.sh {' '.join(peers)}")
            subprocess.run(["bash", str(ROOT / "scripts" / "build-peers.sh"), *peers], check=True)
    Kopia.compression = args.kopia_compression
    Kopia.cache_limit_mib = args.kopia_cache_limit_mib

    work = Path(args.dir or tempfile.mkdtemp(prefix="lifeline-bench-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    tools: list[Tool] = []
    for n in names:
        t = TOOL_CLASSES[n](work)
        why = t.available()
        if why:
            say(f"skipping {n}: {why}")
        else:
            tools.append(t)
    versions = {t.name: t.version() for t in tools}
    say("tools: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    load = os.getloadavg()
    say(f"work dir {work} ({shutil.disk_usage(work).free / GiB:.0f} GiB free), {os.cpu_count()} cores, "
        f"load average {load[0]:.1f}, caches {'dropped before every timed step' if args.drop_caches else 'warm for all'}")

    results = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "versions": versions,
               "cores": os.cpu_count(), "load_average_start": load, "drop_caches": args.drop_caches,
               "repeat": args.repeat, "smoke": args.smoke, "kopia_compression": args.kopia_compression or "none",
               "kopia_cache_limit_mib": args.kopia_cache_limit_mib, "dicom_shrink": args.dicom_shrink,
               "work_dir": str(work), "trees": [], "rows": []}
    ok = True
    try:
        for label in trees:
            tree = work / f"tree-{label}"
            # (a small file takes whole 4 KiB blocks: on average half a block more than its bytes)
            expect = {"mixed": args.size_mib * MiB, "small": args.small_files * 4096,
                      "dicom": args.dicom_files * (275 * 1024 // args.dicom_shrink + 2048),
                      "large": large_files * large_size}[label]
            # the tree, one repository, one restore; kopia stores it uncompressed and its cache grows
            # by what a restore reads (a 16 GiB tree filled 61 GiB): one tree more when kopia runs,
            # or its two caches' hard limits
            need = 3 * expect + GiB
            if any(t.name == "kopia" for t in tools):
                need += 2 * args.kopia_cache_limit_mib * MiB if args.kopia_cache_limit_mib else expect
            free = shutil.disk_usage(work).free
            if need > free:
                say(f"== {label}: skipped, needs ~{need / GiB:.0f} GiB free (tree, one repository, one restore, kopia's cache), "
                    f"{free / GiB:.0f} GiB free in {work}")
                results["trees"].append({"tree": label, "skipped": f"needs ~{need / GiB:.0f} GiB free"})
                continue
            t0 = time.perf_counter()
            say(f"== {label}: building the tree")
            if label == "mixed":
                build_dataset(tree, args.size_mib)
            elif label == "small":
                build_small(tree, args.small_files)
            elif label == "dicom":
                build_dicom(tree, args.dicom_files, args.dicom_shrink)
            else:
                build_large(tree, large_files, large_size)
            nfiles, size = tree_stats(tree)
            shrunk = f", sizes 1/{args.dicom_shrink}" if label == "dicom" and args.dicom_shrink > 1 else ""
            name = f"{label} ({size / MiB:,.0f} MiB, {nfiles:,} files{shrunk})"
            say(f"== {name}: built in {time.perf_counter() - t0:.1f} s")
            res = bench_tree(name, tree, size, nfiles, tools, args, work)
            shutil.rmtree(tree, ignore_errors=True)
            rows = summarise(res)
            results["trees"].append(res)
            results["rows"] += rows
            ok = ok and all(t["identical"] for t in res["tools"].values())
            say("\n" + table_text(rows) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()
    say("== all trees\n" + table_text(results["rows"]))
    say("\n×ll = the tool's figure / lifeline's (time: > 1 means lifeline is faster; RSS and repository: > 1 means "
        f"lifeline uses less). Best of {args.repeat}; peak RSS is the largest of any run, of the tool's process tree. "
        "Repository size after the first backup (first-backup row) and after both (second-backup row).")
    say("\nmarkdown:\n" + table_markdown(results["rows"]))
    out = Path(args.out) if args.out else RESULTS / f"peers-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}{'-smoke' if args.smoke else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    load_end = results["load_average_end"]
    out.with_suffix(".md").write_text(
        f"# bench/agent_vs_peers.py, {results['started']}{' (SMOKE: tiny trees)' if args.smoke else ''}\n\n"
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; {os.cpu_count()} cores; load average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end; "
        f"best of {args.repeat}; caches {'dropped before every timed step' if args.drop_caches else 'warm for all'}; "
        f"kopia compression {args.kopia_compression or 'none (its default)'}"
        + (f"; kopia's caches limited to {args.kopia_cache_limit_mib} MiB each" if args.kopia_cache_limit_mib else "")
        + ".\n\n"
        + table_markdown(results["rows"]) + "\n")
    say(f"\nJSON: {out}\nmarkdown: {out.with_suffix('.md')}")
    if not ok:
        say("a restore differed from its tree (see the runs above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
