"""`lifeline restore status NAME --wait` follows a running Restore: the restore Job's progress, read
from its log as the approver alice may read it, in plain lines (the output is a pipe here), then
the status it ended with.

The point is one 8 MiB stream restored into a load command that reads 1 MiB every 0.5 s: the
restore Job runs for about 4 s whatever the machine's speed, and the agent writes its progress
lines (every 2 s, with the point's size as the total) while it runs."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest

from lifeline.keys import create_key_file
from tests.backup.conftest import policy

from .conftest import restore_body
from .helpers import catalogue, phase, request_and_approve

pytestmark = pytest.mark.slow
AGENT = [sys.executable, "-m", "lifeline.agent"]
POINT = "lab-20261123-0200"
SIZE = 8 << 20
SLOW_LOAD = ["/bin/sh", "-c", 'while [ "$(head -c 1048576 | wc -c)" -gt 0 ]; do sleep 0.5; done']


@pytest.fixture
def streamed(tmp_path, kube):
    """A point of one 8 MiB stream, backed up by the agent into a claim of the test's namespace."""
    local = tmp_path / "backup-local"
    local.mkdir()
    key = create_key_file(tmp_path / "kek")
    repo = local / "lab"
    subprocess.run([*AGENT, "init", "--repo", f"file://{repo}", "--key", f"file://{key}"], check=True,
                   capture_output=True)
    out = subprocess.run([*AGENT, "backup", "--stdin", "--stdin-name", "dump.out", "--repo", f"file://{repo}",
                          "--key", f"file://{key}", "--type", "full", "--json", "--no-progress"],
                         input=os.urandom(SIZE), check=True, capture_output=True)
    summary = json.loads(out.stdout)
    kube.claim("backup-local", local)
    kube.secret("lab-key", {"key": key.read_bytes()})
    body = policy("lab", destinations=[{"name": "local", "filesystem": {"claimName": "backup-local", "path": "/lab"}}],
                  encryption={"keyRef": "secret://lab-key/key"})
    body["spec"]["source"] = {"command": {"image": "postgres:16", "command": ["/bin/sh", "-c", "cat /data"]}}
    point = {
        "apiVersion": "dr.lifeline.io/v1alpha1", "kind": "RecoveryPoint", "metadata": {"name": POINT},
        "spec": {"policyName": "lab", "type": "full", "sizeBytes": SIZE,
                 "manifestChecksum": summary["manifest_checksum"], "keyRef": "secret://lab-key/key",
                 "startTime": "2026-11-23T02:00:00Z", "completionTime": "2026-11-23T02:01:00Z",
                 "copies": [{"destination": "local", "repository": "file:///destinations/local/lab",
                             "snapshotId": summary["point_id"]}]}}
    return body, point


async def test_restore_status_wait_shows_the_restore_job_s_progress_then_the_outcome(
        kube, operator, people, streamed):
    catalogue(kube, *streamed)
    body = restore_body("lab-slowly", POINT, target={"command": {"image": "postgres:16", "command": SLOW_LOAD}})
    name = await request_and_approve(kube, people, body)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lifeline.cli", "restore", "status", name, "--wait", "120", "-n", kube.namespace,
        "--kubeconfig", str(people["alice"]), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 150)
    out, err = out.decode(), err.decode()
    assert proc.returncode == 0, out + err
    assert phase(kube, name) == "Succeeded"

    lines = out.splitlines()
    assert lines[0] == f"Restore {kube.namespace}/{name}: Running", out
    progress = [ln for ln in lines if ln.startswith("restore: ")]
    percents = [int(re.match(r"restore: (\d+)%, [\d.]+ (B|KiB|MiB) / 8\.0 MiB, [01]/1 files, ", ln).group(1))
                for ln in progress]
    assert percents and percents[-1] == 100 and "8.0 MiB / 8.0 MiB, 1/1 files" in progress[-1], out
    assert min(percents) < 100 and "ETA" in progress[0], f"no progress while the Job ran: {out}"
    assert "\r" not in out, "no bar drawn in place when the output is not a terminal"
    ended = lines.index(f"Restore {kube.namespace}/{name}: Succeeded")
    assert ended > lines.index(progress[-1]), out  # the outcome after the last figures
    assert "cannot show the Job's progress" not in err, err
