"""`lifeline backup now --wait` on a terminal, on the real control plane: the command follows the
running Job's log through the API server (the process kubelet serves ``kubectl logs -f``) and draws
the agent's progress lines as a line rewritten in place, then prints the outcome as before.

The command runs as a subprocess whose stdout is a pseudo-terminal (120 columns, raw: the bytes as
written), read while it runs; the operator runs in this process meanwhile. First a dump whose command
writes 1 MiB every 0.4 s: the Job runs for about 6 s whatever the machine's speed, so the agent writes
progress lines (every 2 s) while it runs; a dump's total is not known beforehand, so the line shows
bytes, files and rate. Then a directory (a sparse 512 MiB file: read in a second or two, stored in a
few bytes), whose scan gives the total: a bar with a percentage. Then the same log through `Kube.follow_pod_log`: the admin reads
the lines of both destinations; dave, who may not read Pod logs there, gets a 403 naming pods/log."""
from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
import tty

import pytest

from lifeline.agent.progress import parse_line
from lifeline.kube import Kube, KubeError

from .conftest import points, policy, settled

pytestmark = pytest.mark.slow


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


async def on_a_terminal(kube, *argv: str, columns: int = 120, timeout: float = 150) -> tuple[int, str, str]:
    """``lifeline ARGV`` as the admin with its stdout on a terminal: (exit code, the screen's bytes, stderr)."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no "\n" -> "\r\n": every "\r" on the screen is the command's
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lifeline.cli", *argv, "-n", kube.namespace,
            "--kubeconfig", str(kube.cluster.kubeconfig),
            stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=asyncio.subprocess.PIPE, env=env)
    finally:
        os.close(slave)
    try:
        screen = asyncio.create_task(asyncio.to_thread(_read_all, master))
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode, (await asyncio.wait_for(screen, 10)).decode(), err.decode()
    finally:
        os.close(master)


PACED_DUMP = ["/bin/sh", "-c", "i=0; while [ $i -lt 16 ]; do head -c 1048576 /dev/urandom; sleep 0.4; "
                               "i=$((i+1)); done"]
SPARSE = 512 << 20


def lab() -> dict:
    """A policy whose dump is paced: 16 MiB in about 6 s."""
    return policy("lab", source={"command": {"image": "postgres:16", "command": PACED_DUMP}}, destinations=[
        {"name": "local", "filesystem": {"claimName": "backup-local", "path": "/lab"}},
        {"name": "offsite", "offSite": True, "filesystem": {"claimName": "backup-offsite", "path": "/lab"}}])


def frames_of(screen: str) -> tuple[list[str], str]:
    """What each "\\r" drew over the line before the last line, and the last line."""
    *before, final = screen.rstrip("\n").split("\n")
    return [f.rstrip() for f in "\n".join(before).split("\r")[1:]], final


async def test_backup_now_wait_draws_the_running_job_s_progress_on_a_terminal(kube, seeded, volumes, clock):
    with open(volumes["pacs-data"] / "scan.img", "wb") as f:
        f.truncate(SPARSE)  # a directory: the agent's scan gives the total, so the bar has a percentage
    async with kube.operator(clock=clock):
        kube.create(policy())
        kube.create(lab())
        await settled(kube, "pacs", generation=1)
        await settled(kube, "lab", generation=1)
        code, screen, err = await on_a_terminal(kube, "backup", "now", "lab", "--wait", "120")
        assert code == 0, screen + err
        [point] = await kube.wait_for(lambda: points(kube, "lab"), timeout=20)
        code, bar_screen, bar_err = await on_a_terminal(kube, "backup", "now", "pacs", "--wait", "120")
        assert code == 0, bar_screen + bar_err
        [pacs_point] = await kube.wait_for(lambda: points(kube), timeout=20)

    # The paced dump: lines drawn while the Job ran, then the outcome as before.
    frames, final = frames_of(screen)
    assert final.startswith(f"succeeded, RecoveryPoint {point['metadata']['name']}"), screen
    figures = re.compile(r"^backup (local|offsite)  [\d.]+ (B|KiB|MiB)  [01] files  [\d.]+ (B|KiB|MiB)/s  \d:\d\d:\d\d$")
    assert frames and all(figures.match(f) for f in frames), f"not progress lines: {screen!r} {err}"
    assert all(len(f) < 120 for f in frames), "the line fits the terminal's width"
    assert frames[-1].startswith("backup ") and "16.0 MiB" in frames[-1] and " 1 files" in frames[-1], frames
    running = [f for f in frames if "16.0 MiB" not in f]
    assert running, f"no progress drawn while the Job was running: {frames}"
    assert point["spec"]["sizeBytes"] == 16 << 20  # the final figures land in the RecoveryPoint as before
    assert "cannot show the Job's progress" not in err, err

    # The directory: a bar with a percentage, its total from the scan, as wide as the terminal allows.
    frames, final = frames_of(bar_screen)
    assert final.startswith(f"succeeded, RecoveryPoint {pacs_point['metadata']['name']}"), bar_screen
    bars = [f for f in frames if re.match(r"^backup (local|offsite) \[[=> ]{30}\] +\d+%  ", f)]
    assert bars and all(len(f) < 120 for f in bars), f"no bar: {bar_screen!r} {bar_err}"
    assert "100%  512." in bars[-1] and "/ 512." in bars[-1] and "3/3 files" in bars[-1], bars

    # The same log through Kube.follow_pod_log: the admin reads the Job's lines; dave may not.
    [pod] = [p for p in kube.objects("pods") if p["metadata"]["name"].startswith("lab-now-")]
    admin = Kube.connect(kube.cluster.kubeconfig)
    dave = Kube.connect(kube.cluster.kubeconfig, "dave")
    try:
        lines = [line async for line in admin.follow_pod_log(kube.namespace, pod["metadata"]["name"], "agent")]
        records = [r for r in map(parse_line, lines) if r]
        assert {r["destination"] for r in records} == {"local", "offsite"} and records[-1]["done"], lines
        with pytest.raises(KubeError) as refused:
            async for _ in dave.follow_pod_log(kube.namespace, pod["metadata"]["name"], "agent"):
                pass
        assert refused.value.status == 403 and "pods/log" in str(refused.value), refused.value
    finally:
        admin.close()
        dave.close()
