"""`lifeline dev up` (what `make demo` runs): the whole loop on a real control plane on this machine,
every figure measured.

Run as a user runs it -- a subprocess -- and judged by what it prints, what it leaves in its
state directory, what a person can do against it with kubectl and the CLI, and what is still
running after it ends (nothing).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lifeline.devstack.openbao import OpenBaoServer
from lifeline.devstack.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _dev_up(state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lifeline.cli", "dev", "up", "--dir", str(state), *extra]


def _line(text: str, prefix: str) -> str:
    found = next((line for line in text.splitlines() if line.startswith(prefix)), None)
    assert found is not None, f"no line starting {prefix!r}:\n{text}"
    return found


def _leftovers(state: Path, pids: list[int]) -> list[str]:
    """Processes still alive that this run started: by pid, or working in / naming its state dir."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(f"pid {pid}: {stat[:80]}")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state) in cwd or str(state) in cmdline:
            alive.append(f"pid {proc.name}: cwd {cwd}: {cmdline[:120]}")
    return alive


def _port_closed(url: str) -> bool:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host.replace("//", ""), int(port))) != 0


def _pids(text: str) -> list[int]:
    return [int(x) for pair in re.findall(r"\(dev server, pid (\d+)\)|\(pid (\d+)\)", text) for x in pair if x]


def _judge_the_whole_loop(text: str, state: Path, wall: float) -> None:
    """What `dev up` printed up to its summary, and what it left in its state directory, hold
    every measured figure of the loop: backups, drill, failover and failback, report, audit."""
    end = text.split("=== summary")[-1]  # the summary's lines
    have_bao, have_pg = OpenBaoServer.available()[0], PostgresServer.available()[0]
    if os.environ.get("CI"):  # CI must show the real parts, not the fallbacks
        assert have_bao and have_pg, (OpenBaoServer.available(), PostgresServer.available())

    # the examples and the hospital scenario, all Ready, as the operator wrote them
    hospital = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "examples" / "hospital").glob("*.yaml"))]
    generic = [yaml.safe_load(p.read_text()) for p in (ROOT / "examples").glob("*.yaml")]
    # FailoverPlans in examples/ name monitoring workloads and site clusters the demo does not
    # run: they must say so (Ready False, a reason, what to create), not pretend to be Ready.
    elsewhere = [d["metadata"]["name"] for d in generic if d["kind"] == "FailoverPlan"]
    names = [d["metadata"]["name"] for d in generic if d["kind"] != "FailoverPlan"]
    names += [d["metadata"]["name"] for d in hospital if have_pg or d["metadata"]["name"] != "his-patients"]
    for name in names:
        row = _line(text, name + " ")
        assert " True " in row, row
    for name in elsewhere:
        row = _line(text, name + " ")
        if " True " not in row:
            assert f"FailoverPlan/{name} is not Ready (" in text, row
            assert "create " in text.split(f"FailoverPlan/{name} is not Ready (", 1)[1].split("\n\n", 1)[0]
    # a typo is refused at the door by the API server's schema (the CRDs are generated from the models)
    refused = _line(text, "refused           ")
    assert "422 Unprocessable Entity" in refused and "spec.tier: Unsupported value" in refused, refused
    stored = json.loads((state / "objects.json").read_text())
    assert not [o for o in stored["BackupPolicy"] if o["metadata"]["name"] == "lab-results-typo"]
    # a valid policy naming a missing claim is taken, and the operator says what is wrong
    missing = _line(text, "BackupPolicy/lab-results-no-claim: ")
    assert "SourceAvailable=False" in missing and "lab-results-data" in missing, missing
    # a real control plane ran it all, and its logs are kept
    assert re.search(r"^Kubernetes +v1\.35\.4 at https://127\.0\.0\.1:\d+", text, re.M), text
    assert "counted in the API server's audit log" in _line(text, "operator          observed all")
    assert (state / "kubeconfig").exists() and (state / "cluster" / "logs" / "audit.log").stat().st_size > 0

    # Vault, or the one-line fallback
    if have_bao:
        assert re.search(r"^OpenBao +http://127\.0\.0\.1:\d+ .*keys ready: .*vault-transit://lifeline-hospital",
                         text, re.M), text
    else:
        assert "backups use local keys" in _line(text, "keys ")
    if not have_pg:
        assert "skipped" in _line(text, "HIS database ")

    # backups: full + incremental per policy, each to both destinations, sizes as recorded
    policies = ["icu-trends", "pacs-studies"] + (["his-patients"] if have_pg else [])
    summary = _line(end, "backup     ")
    assert summary.startswith(f"backup     {2 * len(policies)} recovery points") and summary.endswith("ok=True")
    runs = re.findall(r"^  ([a-z-]+) +(full|incremental) +([0-9.]+)s (\d+) bytes to (\S+)  key (\S+)$", end, re.M)
    assert sorted({r[0] for r in runs}) == sorted(policies)
    for name in policies:
        mine = {r[1]: r for r in runs if r[0] == name}
        assert set(mine) == {"full", "incremental"}, runs
        for run in mine.values():
            assert float(run[2]) > 0 and int(run[3]) > 0 and len(run[4].split("+")) == 2, run
        # the scene's own Jobs (`create job --from=cronjob`); the real CronJob controller may add scheduled ones
        points = [p for p in stored["RecoveryPoint"] if p["spec"]["policyName"] == name
                  and "-manual-" in (p["metadata"].get("annotations") or {}).get("dr.lifeline.io/job", "")]
        assert sorted(p["spec"]["type"] for p in points) == ["full", "incremental"]
        assert sorted(int(r[3]) for r in mine.values()) == sorted(p["spec"]["sizeBytes"] for p in points)
        for point in points:
            assert len(point["spec"]["copies"]) == 2
            for copy in point["spec"]["copies"]:
                repo = Path(copy["repository"].removeprefix("file://"))
                assert repo.is_dir() and str(repo).startswith(str(state)), copy
        if name != "icu-trends":
            expected = "vault-transit" if have_bao else "secret"
            assert {p["spec"]["keyRef"].split(":")[0] for p in points} == {expected}
            # the change between the two was real: the incremental covers more data
            assert int(mine["incremental"][3]) > int(mine["full"][3])

    # the drill (when the drill scene is part of the demo): measured against the RTO
    from lifeline.commands.dev import _scenes

    if "drill" in dict(_scenes()):
        drill = _line(end, "drill      ")
        measured = re.search(r"restore ([0-9.]+)s \+ verify ([0-9.]+)s = total ([0-9.]+)s against an RTO of 7200",
                             drill)
        assert measured and float(measured[1]) > 0 and float(measured[3]) >= float(measured[1]), end
        assert "rtoMet=True" in drill and "outcome=Succeeded" in drill, drill

    # failover and failback, with the RTO the operator measured
    figures = dict(part.split("=") for part in _line(end, "failover   ").split()[1:] if "=" in part)
    figures = {k.rstrip(","): v.rstrip(",") for k, v in figures.items()}
    assert float(figures["achieved_rto_seconds"]) >= float(figures["breach_window_seconds"])
    assert figures["fenced_on_return"] == "True"
    # the switchover notices reached the receiver standing for the wards' screens and the on-call chat
    assert re.search(r"notices +ward screens \(generic\): FailingOver, FailoverComplete, FailingBack, FailbackComplete",
                     text), text
    assert re.search(r"on-call chat \(DingTalk\): [4-9] markdown messages", text)

    # the report and the audit chain
    report = re.fullmatch(r"report     (\S+) \((\d+) bytes\); the daily report CronJob, run once: (\S+)",
                          _line(end, "report     "))
    assert report and Path(report[1]) == state / "report.html", _line(end, "report     ")
    html = Path(report[1]).read_text()
    assert len(html.encode()) == int(report[2])
    for name in policies:
        assert name in html
    daily = Path(report[3])  # written by the chart's CronJob, as the operator's ServiceAccount, on the audit claim
    assert daily.parent == state / "audit" / "reports" and re.fullmatch(r"report-\d{4}-\d\d-\d\d\.html", daily.name)
    assert "At a glance" in daily.read_text() and all(name in daily.read_text() for name in policies)
    audit = _line(end, "audit      ")
    assert audit.startswith("audit      chain ok=True") and " is intact: " in audit, audit
    records = int(re.search(r"intact: (\d+) records", audit)[1])
    # the operator keeps auditing until the stack stops (a failover's last Event task may land after
    # the summary), so the log may only have grown since; the whole of it must still verify
    assert len(list((state / "audit" / "records").glob("*.json"))) >= records > 0
    verify = subprocess.run([sys.executable, "-m", "lifeline.cli", "audit", "verify", "--url",
                             (state / "audit").as_uri()], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    took = float(re.search(r"demo took  ([0-9.]+)s", text)[1])
    assert 0 < took <= wall


def test_demo_is_an_alias_of_dev_up():
    import argparse

    from lifeline.commands import dev

    parser = argparse.ArgumentParser()
    dev.register(parser.add_subparsers())
    up, alias = parser.parse_args(["dev", "up", "--keep"]), parser.parse_args(["demo", "--keep"])
    assert up.func is alias.func is dev.run
    assert (up.dir, up.keep, up.examples) == (alias.dir, alias.keep, alias.examples)


def _start(state: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(_dev_up(state, *extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _read_until(proc: subprocess.Popen, prefix: str, timeout: float = 180) -> tuple[str, str]:
    """Lines printed until one starts with ``prefix``; (all text, that line)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(prefix):
            return "".join(seen), line.rstrip("\n")
    proc.kill()
    raise AssertionError(f"no line starting {prefix!r} (exit {proc.poll()}):\n{''.join(seen)}")


def _interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, rest


def test_dev_up_runs_the_whole_loop_then_keeps_a_live_cluster_a_person_can_use(tmp_path, kubectl_bin):
    """`dev up --keep` (one run of the loop serves both, it takes over a minute): first the whole
    loop with measured figures, then what a platform engineer does by hand: kubectl against the
    real API server, a policy of their own, `lifeline backup now --wait`, and a Restore released by
    two people. The plain `dev up` that ends by itself is the one without the real parts, below."""
    state = tmp_path / "demo"
    began = time.monotonic()
    proc = _start(state, "--keep")
    try:
        text, _ = _read_until(proc, "keeping it running", timeout=400)
        assert "Traceback" not in text
        _judge_the_whole_loop(text, state, time.monotonic() - began)
        kubeconfig = _line(text, "kubeconfig        ").split()[1]
        env = {**os.environ, "KUBECONFIG": kubeconfig}

        def kubectl(*args: str, user: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
            argv = [str(kubectl_bin), *(["--user", user] if user else []), *args]
            return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, input=stdin)

        def lifeline(*args: str, user: str | None = None) -> subprocess.CompletedProcess:
            argv = [sys.executable, "-m", "lifeline.cli", *args, *(["--context", user] if user else [])]
            return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, cwd=ROOT)

        version = json.loads(kubectl("version", "-o", "json").stdout)
        assert version["serverVersion"]["gitVersion"] == "v1.35.4"
        nodes = kubectl("get", "nodes", "--no-headers").stdout.split()
        assert nodes[1] == "Ready", nodes
        assert kubectl("auth", "can-i", "patch", "restores", "-n", "hospital", user="alice").stdout.strip() == "yes"
        assert kubectl("auth", "can-i", "patch", "restores", "-n", "hospital", "--as", "dave").stdout.strip() == "no"

        # a user's own policy over the PACS claim, then a backup on demand that waits for the real Job
        mine = yaml.safe_load((ROOT / "examples" / "hospital" / "backuppolicy-pacs-studies.yaml").read_text())
        mine["metadata"] = {"name": "pacs-by-hand"}
        mine["spec"]["destinations"] = [{"name": "on-site", "filesystem": {
            "claimName": "hospital-backup-onsite", "path": "/lifeline/pacs-by-hand"}}]
        if "no OpenBao" in text:
            mine["spec"]["encryption"]["keyRef"] = "secret://hospital-local-key/key"
        assert kubectl("apply", "-f", "-", stdin=json.dumps(mine)).returncode == 0
        done = lifeline("backup", "now", "pacs-by-hand", "--wait", "180")
        assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout + done.stderr
        point = re.search(r"RecoveryPoint (\S+):", done.stdout)[1]

        # carol asks for a restore of it; alice and bob release it; it runs and succeeds
        restore = {"apiVersion": "dr.lifeline.io/v1alpha1", "kind": "Restore", "metadata": {"name": "by-hand"},
                   "spec": {"recoveryPoint": point, "reason": "INC-1: drill by hand", "strategy": "NewClaim",
                            "target": {"pvc": {"claimName": "pacs-restored-by-hand", "size": "1Gi"}}}}
        made = kubectl("apply", "-f", "-", user="carol", stdin=json.dumps(restore))
        assert made.returncode == 0, made.stderr
        assert lifeline("restore", "approve", "by-hand", user="carol").returncode != 0
        assert lifeline("restore", "approve", "by-hand", user="alice").returncode == 0
        assert lifeline("restore", "approve", "by-hand", user="bob").returncode == 0
        deadline = time.monotonic() + 180
        phase = ""
        while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
            phase = kubectl("get", "restore", "by-hand", "-o", "jsonpath={.status.phase}").stdout
        assert phase == "Succeeded", lifeline("restore", "status", "by-hand").stdout
        server = re.search(r"^Kubernetes +\S+ at (\S+):", text, re.M)[1]
        pids = _pids(text)
        assert proc.poll() is None  # still serving
    finally:
        code, rest = _interrupt(proc)
    assert code in (0, 130), rest
    assert "Traceback" not in rest
    assert _port_closed(server)
    assert _leftovers(state, pids) == []


def test_ctrl_c_in_the_middle_stops_everything(tmp_path):
    state = tmp_path / "demo"
    proc = _start(state)
    try:
        text, _ = _read_until(proc, "=== backup", timeout=400)
        text += _read_until(proc, "ran ")[0]  # a Job has run: servers, operator and runner all busy
        pids = _pids(text)
    finally:
        code, rest = _interrupt(proc)
    assert code == 130, rest
    assert _leftovers(state, pids) == []
    if OpenBaoServer.available()[0]:
        assert pids, text


def test_without_the_real_parts_dev_up_says_so_and_still_runs_the_loop(tmp_path):
    """A machine without OpenBao or PostgreSQL gets the fallbacks, each announced in one line."""
    state = tmp_path / "demo"
    out = subprocess.run(_dev_up(state, "--without", "vault", "--without", "postgres"), cwd=ROOT,
                         capture_output=True, text=True, timeout=480)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "keys              no OpenBao: left out (--without vault); backups use local keys" in text
    assert "HIS database      skipped: left out (--without postgres)" in text
    end = text.split("=== summary")[-1]
    assert "his-patients" not in end  # the dump policy is left out ...
    assert _line(end, "backup     ").startswith("backup     4 recovery points")  # ... the other two ran
    stored = json.loads((state / "objects.json").read_text())
    points = stored["RecoveryPoint"]
    assert points and {p["spec"]["keyRef"].split(":")[0] for p in points} == {"secret"}
    assert "rtoMet=True" in text.split("=== summary")[-1]  # the drill still ran on local keys
    assert "Traceback" not in out.stderr
    assert _leftovers(state, _pids(text)) == []  # it ended by itself, and everything it started is gone
