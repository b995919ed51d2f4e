#!/usr/bin/env python3
"""Peak memory (and time) of lifeline's agent on a tree of many small files (issue #19: memory).

    .venv/bin/python bench/memory.py                      # 200,000 files of 0.5-3 KiB
    .venv/bin/python bench/memory.py --files 50000        # smaller
    .venv/bin/python bench/memory.py --files 1000000 --dir /tmp/llmem    # a million (~4 GiB on disk)
    .venv/bin/python bench/memory.py --files 50000 --trace                # where the memory goes
    .venv/bin/python bench/memory.py --baseline /tmp/base/operator --repeat 3   # before/after, alternately
    .venv/bin/python bench/memory.py --tree mixed --change --baseline /tmp/base/operator --repeat 3

Trees (built once, kept in ``--dir`` and reused while it holds that tree):

* ``small`` (default): the small tree of bench/agent_vs_peers.py, ``--files`` files of 512-3,072 bytes,
  half log text, half random, 1,000 a directory;
* ``mixed``: the ~1 GiB tree of bench/agent_vs_restic.py (``--mixed-mib``): ~8,000 files, six ~150 MiB.

Rows, for lifeline (``python -m lifeline.agent``) in a new repository: the first backup, an incremental
backup with nothing changed, with ``--change`` one after a seeded 1 % change (bench/agent_vs_peers.py's,
undone afterwards), and a full restore into an empty directory (checked with ``diff -r`` unless
``--no-diff``). Per row: wall time, user + sys CPU and peak RSS: the sum of the VmHWM of the process and
its descendants, sampled every 50 ms (as bench/agent_vs_peers.py measures it). ``--repeat N``: each row's
best time and highest peak over N runs. ``--baseline DIR`` runs another lifeline too, alternately with this
one (DIR is its ``operator`` directory, e.g. from ``git archive HEAD operator | tar -x -C /tmp/base``).
``--restic`` adds restic 0.19.1 (``.tools/peers/bin/restic``, built by scripts/build-peers.sh).

``--trace`` runs each lifeline row once more under tracemalloc (one frame a trace; slower, and the traced
process uses more memory than the untraced one) and prints the 25 source lines holding the most memory at
the largest sample, taken every 0.25 s. ``--json`` prints the rows as JSON too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_vs_peers import ROOT, Change, Lifeline, Restic, build_small, run  # noqa: E402
from agent_vs_restic import build_dataset  # noqa: E402

MiB = 1 << 20
FIRST, SAME, CHANGED, RESTORE = ("first backup", "incremental, nothing changed", "incremental, 1 % changed",
                                 "full restore")

# Runs `python -m lifeline.agent <argv>` under tracemalloc; at exit prints the top lines of the snapshot
# taken when the traced memory was at its highest (sampled every 0.25 s).
TRACED = r"""
import atexit, os, runpy, sys, threading, time, tracemalloc
tracemalloc.start(1)
best = {"size": 0, "snap": None, "t": 0.0}
t0 = time.time()
stop = threading.Event()

def watch():
    while not stop.wait(0.25):
        cur, _peak = tracemalloc.get_traced_memory()
        if cur > best["size"] * 1.03:
            snap = tracemalloc.take_snapshot()
            best.update(size=cur, snap=snap, t=time.time() - t0)

def report():
    stop.set()
    cur, peak = tracemalloc.get_traced_memory()
    out = sys.stderr
    print(f"TRACE peak traced {peak / 2**20:.1f} MiB; largest sample {best['size'] / 2**20:.1f} MiB "
          f"at {best['t']:.1f} s", file=out)
    if best["snap"] is not None:
        snap = best["snap"].filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        for s in snap.statistics("lineno")[:25]:
            f = s.traceback[0]
            print(f"TRACE {s.size / 2**20:8.1f} MiB {s.count:>9,} blocks  {f.filename.split('/operator/')[-1]}:{f.lineno}",
                  file=out)

threading.Thread(target=watch, daemon=True).start()
atexit.register(report)
sys.argv = ["lifeline.agent"] + sys.argv[1:]
runpy.run_module("lifeline.agent", run_name="__main__")
"""


class Agent(Lifeline):
    """lifeline from a given ``operator`` directory (this checkout's by default)."""

    def __init__(self, work: Path, operator: Path, name: str):
        self.name = name
        super().__init__(work)
        self.key = work / "lifeline-key"  # one key for every lifeline measured
        self.operator = operator

    def env(self) -> dict:
        return {**super().env(), "PYTHONPATH": str(self.operator)}


def say(msg: str) -> None:
    print(msg, flush=True)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_for(work: Path, args) -> Path:
    label = f"small-{args.files}" if args.tree == "small" else f"mixed-{args.mixed_mib}"
    tree, marker = work / label, work / f"{label}.done"
    if not marker.exists():
        shutil.rmtree(tree, ignore_errors=True)
        t0 = time.time()
        say(f"building {label} in {tree} ...")
        size = build_small(tree, args.files) if args.tree == "small" else build_dataset(tree, args.mixed_mib)
        marker.write_text(str(size))
        say(f"  built: {size / MiB:.0f} MiB in {time.time() - t0:.0f} s")
    return tree


def _row(tool, label: str, r, la: str, **extra) -> dict:
    say(f"  {tool.name:9} {label:30} {r.wall:7.2f} s  {r.user:6.1f}+{r.sys:5.1f} CPU-s  "
        f"peak RSS {r.rss / MiB:7.1f} MiB  (load {la})" + "".join(f"  {k}: {v}" for k, v in extra.items()))
    return {"tool": tool.name, "row": label, "s": r.wall, "user_s": r.user, "sys_s": r.sys, "peak_rss": r.rss,
            "load_before": la, **extra}


def run_rows(tool, tree: Path, target: Path, args, change: Change | None) -> list[dict]:
    tool.reset()
    tool.init()
    rows = []
    steps = [(FIRST, None), (SAME, None)] + ([(CHANGED, change)] if change is not None else [])
    for label, ch in steps:
        if ch is not None:
            ch.apply()
        try:
            la = loadavg()
            rows.append(_row(tool, label, run(tool.backup(tree), tool.env()), la))
        finally:
            if ch is not None:
                ch.undo()
    shutil.rmtree(target, ignore_errors=True)
    la = loadavg()
    argv = tool.restore_argv(tree, target)
    if change is not None and isinstance(tool, Agent):  # the point of the unchanged tree
        points = json.loads(run(tool.py + ["points", "--json"], tool.env()).out)["points"]
        argv[argv.index("latest")] = sorted(points, key=lambda p: p["start_time"])[-2]["point_id"]
    elif change is not None and isinstance(tool, Restic):  # likewise: restic's snapshot before the change
        snaps = json.loads(run([tool.bin, "snapshots", "--json"], tool.env()).out)
        argv[argv.index("latest")] = sorted(snaps, key=lambda s: s["time"])[-2]["id"]
    r = run(argv, tool.env())
    extra = {}
    if not args.no_diff:
        extra["identical"] = subprocess.run(["diff", "-r", "-q", str(tree), str(tool.restored_root(tree, target))],
                                            capture_output=True).returncode == 0
    rows.append(_row(tool, RESTORE, r, la, **extra))
    shutil.rmtree(target, ignore_errors=True)
    tool.reset()
    return rows


def trace_rows(tool: Agent, tree: Path, target: Path) -> None:
    """Each lifeline row once more, under tracemalloc: where the memory is at the peak."""
    tool.reset()
    tool.init()
    traced = [sys.executable, "-c", TRACED]
    argvs = [(FIRST, tool.backup(tree)), (SAME, tool.backup(tree)), (RESTORE, tool.restore_argv(tree, target))]
    shutil.rmtree(target, ignore_errors=True)
    for label, argv in argvs:
        p = subprocess.run(traced + argv[3:], env={**os.environ, **tool.env()}, capture_output=True)
        say(f"--- traced: {label} (exit {p.returncode})")
        for line in p.stderr.decode(errors="replace").splitlines():
            if line.startswith("TRACE"):
                say("  " + line[6:])
        if p.returncode:
            say(p.stderr.decode(errors="replace")[-2000:])
    shutil.rmtree(target, ignore_errors=True)
    tool.reset()


def best(rows: list[dict]) -> list[dict]:
    """Per (tool, row): the best time and CPU of the fastest run, the highest peak RSS of all runs."""
    out: dict[tuple, dict] = {}
    for r in rows:
        k = (r["tool"], r["row"])
        b = out.get(k)
        if b is None:
            out[k] = dict(r, runs=[r["s"]], rss_runs=[r["peak_rss"]])
            continue
        b["runs"].append(r["s"])
        b["rss_runs"].append(r["peak_rss"])
        if r["s"] < b["s"]:
            b.update(s=r["s"], user_s=r["user_s"], sys_s=r["sys_s"], load_before=r["load_before"])
        b["peak_rss"] = max(b["peak_rss"], r["peak_rss"])
    return list(out.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", choices=("small", "mixed"), default="small")
    ap.add_argument("--files", type=int, default=200_000, help="files in the small tree (default 200,000)")
    ap.add_argument("--mixed-mib", type=int, default=1024, help="size of the mixed tree (default 1024)")
    ap.add_argument("--dir", help="work directory; the tree is kept there and reused (default: a new temp dir)")
    ap.add_argument("--change", action="store_true", help="add the row of an incremental after a 1 %% change")
    ap.add_argument("--repeat", type=int, default=1, help="runs; each row's best time, highest peak RSS")
    ap.add_argument("--baseline", help="another lifeline's operator/ directory, run alternately with this one")
    ap.add_argument("--restic", action="store_true", help="also run restic (.tools/peers/bin/restic)")
    ap.add_argument("--trace", action="store_true", help="also run lifeline under tracemalloc: top lines at the peak")
    ap.add_argument("--trace-only", action="store_true", help="only the tracemalloc run")
    ap.add_argument("--no-diff", action="store_true", help="do not compare the restored tree")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = ap.parse_args()

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="llmem-"))
    work.mkdir(parents=True, exist_ok=True)
    tree = tree_for(work, args)
    target = work / "restore"
    change = Change.plan(tree, work / "undo") if args.change else None
    tools = [Agent(work, ROOT / "operator", "lifeline")]
    if args.baseline:
        tools.append(Agent(work, Path(args.baseline).resolve(), "baseline"))
    if args.restic:
        r = Restic(work)
        if r.available() is None:
            tools.append(r)
        else:
            say(f"restic skipped: {r.available()}")
    what = f"{args.files:,} files" if args.tree == "small" else f"the {args.mixed_mib} MiB mixed tree"
    say(f"{what}, {os.cpu_count()} cores, load average {loadavg()}, {time.strftime('%Y-%m-%d %H:%M')}")
    rows = []
    if not args.trace_only:
        for rep in range(args.repeat):
            order = tools[rep % len(tools):] + tools[:rep % len(tools)]
            for tool in order:
                rows += run_rows(tool, tree, target, args, change)
    if args.trace or args.trace_only:
        trace_rows(tools[0], tree, target)
    if rows:
        rows = best(rows)
        say("\n| tool | row | time | CPU user+sys | peak RSS |\n|---|---|---|---|---|")
        for r in sorted(rows, key=lambda r: (r["row"] == RESTORE, r["row"], r["tool"])):
            say(f"| {r['tool']} | {r['row']} | {r['s']:.2f} s | {r['user_s']:.1f} + {r['sys_s']:.1f} s "
                f"| {r['peak_rss'] / MiB:.0f} MiB |")
    if args.json:
        print(json.dumps({"tree": args.tree, "files": args.files, "rows": rows}, indent=1))
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
