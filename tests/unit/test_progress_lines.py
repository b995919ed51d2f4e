"""The agent's structured progress lines (what a Job's log carries) and what the CLI draws from them:
the line's format and its reading, the bar on a terminal, the plain lines elsewhere, and the backup
Job's relay that names each destination's lines."""
from __future__ import annotations

import io
import json
import os
import re
import threading
import time

from lifeline.agent import jobs
from lifeline.agent.progress import PREFIX, Progress, bar_text, format_line, parse_line, plain_text
from lifeline.commands.follow import Display, JobLog
from lifeline.kube import KubeError

RECORD = {"phase": "backup", "files": 310, "files_total": 1024, "bytes": 45 << 20, "total": 100 << 20,
          "rate": 5 << 20, "eta": 11, "elapsed": 9.0, "done": False}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_writes_one_line_at_the_end_with_the_final_figures():
    out = io.StringIO()
    with Progress("backup", enabled=False, lines=out, every=3600) as p:
        p.files_total, p.bytes_total = 2, 3000
        p.files_done, p.bytes_done = 2, 3000
    [line] = out.getvalue().splitlines()
    assert line.startswith("lifeline-progress {")
    record = json.loads(line[len(PREFIX):])
    assert record["done"] is True and record["phase"] == "backup"
    assert (record["files"], record["files_total"], record["bytes"], record["total"], record["eta"]) == (2, 2, 3000,
                                                                                                        3000, 0)


def test_lines_come_by_time_while_the_work_goes_on_and_eta_only_with_a_total():
    out = io.StringIO()
    with Progress("backup", enabled=False, lines=out, every=0.02) as p:
        p.bytes_done = 1 << 20  # a dump: no total
        deadline = time.monotonic() + 10
        while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
    records = [parse_line(line) for line in out.getvalue().splitlines()]
    assert len(records) >= 3 and [r["done"] for r in records][-2:] == [False, True]
    assert all(r["total"] is None and r["eta"] is None and r["bytes"] == 1 << 20 for r in records)


def test_no_thread_and_no_line_without_a_terminal_or_a_log():
    with Progress("restore", enabled=False) as p:
        assert p._thread is None


def test_a_line_reads_back_and_a_log_line_is_not_trusted():
    assert parse_line(format_line(RECORD)) == {**RECORD, "destination": None}
    assert parse_line("lifeline job: local: point abc (full)") is None
    assert parse_line("lifeline-progress not json") is None
    assert parse_line("lifeline-progress [1, 2]") is None
    hostile = parse_line('lifeline-progress {"phase":"backup\\u001b[2J","destination":"off\\u001b]0;x\\u0007site",'
                         '"bytes":"lots","total":-5,"rate":1e40,"files":true,"done":"yes"}')
    assert hostile["phase"] == "backup2J" and hostile["destination"] == "off0xsite"
    assert (hostile["bytes"], hostile["total"], hostile["rate"], hostile["files"], hostile["done"]) == (0, None, 0, 0,
                                                                                                       False)
    assert "\x1b" not in bar_text(hostile, 80)


def test_the_bar_fits_the_terminal_and_shows_the_figures():
    text = bar_text(RECORD, 100)
    assert len(text) <= 99
    assert re.fullmatch(r"backup \[=+> +\]  45%  45\.0 MiB / 100\.0 MiB  310/1024 files  5\.0 MiB/s  ETA 0:00:11", text)
    narrow = bar_text(RECORD, 40)  # no room for a bar: the percentage and what fits
    assert len(narrow) <= 39 and "[" not in narrow and "45%" in narrow and "45.0 MiB / 100.0 MiB" in narrow
    done = bar_text({**RECORD, "bytes": 100 << 20, "done": True, "elapsed": 20}, 100)
    assert "100%" in done and "=>" not in done and "ETA" not in done and "0:00:20" in done
    stream = bar_text({**RECORD, "total": None, "eta": None, "files_total": None, "destination": "offsite"}, 100)
    assert stream.startswith("backup offsite  45.0 MiB  310 files  5.0 MiB/s") and "%" not in stream


def test_plain_lines_say_the_same_in_words():
    assert plain_text(RECORD) == "backup: 45%, 45.0 MiB / 100.0 MiB, 310/1024 files, 5.0 MiB/s, ETA 0:00:11"


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_the_slowest_destination_shown():
    out = Terminal()
    display = Display(out)
    display.status("waiting for the Job", "waiting")
    display.update({**parse_line(format_line(RECORD)), "destination": "local"})
    display.update({**parse_line(format_line({**RECORD, "bytes": 10 << 20})), "destination": "offsite"})
    display.status("waiting for the Job", "waiting")  # the same status again: the bar keeps the line
    display.end()
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert frames[0].startswith("waiting for the Job")
    assert "backup local" in frames[1] and "45%" in frames[1]
    assert "backup offsite" in frames[2] and " 10%" in frames[2]  # the one furthest behind
    assert len(frames) == 3 and text.endswith("\n") and text.count("\n") == 1


def test_elsewhere_plain_lines_come_at_most_every_few_seconds_and_the_last_always():
    now = [0.0]
    out = io.StringIO()
    display = Display(out, plain_every=10, clock=lambda: now[0])
    for second in range(25):
        now[0] = second
        display.update(parse_line(format_line({**RECORD, "bytes": second << 20})))
    display.update(parse_line(format_line({**RECORD, "done": True})))
    lines = out.getvalue().splitlines()
    assert [ln.split(", ")[1] for ln in lines] == ["0 B / 100.0 MiB", "10.0 MiB / 100.0 MiB",
                                                   "20.0 MiB / 100.0 MiB", "45.0 MiB / 100.0 MiB"]
    assert "\r" not in out.getvalue()


def test_the_backup_job_relays_each_agent_s_progress_lines_named_by_destination(capsys):
    read, write = os.pipe()
    with os.fdopen(write, "wb") as w:
        w.write(b"lifeline agent backup: no earlier point for this source: taking a full backup\n")
        w.write(format_line(RECORD).encode() + b"\n")
        w.write(b"lifeline-progress {broken\n")
    relay = jobs._Stderr(os.fdopen(read, "rb"), "offsite")
    relay.join(10)
    assert relay.kept == ["lifeline agent backup: no earlier point for this source: taking a full backup\n"]
    [line] = capsys.readouterr().err.splitlines()
    assert parse_line(line) == {**RECORD, "destination": "offsite"}


class FakeKube:
    """The calls JobLog makes, answered from a script: Pods to list, log lines, the Pod once its log ended."""

    def __init__(self, pods=(), lines=(), refuse: int | None = None):
        self.pods, self.lines, self.refuse, self.followed = list(pods), list(lines), refuse, []

    async def list(self, res, namespace, label_selector=None):
        if self.refuse:
            raise KubeError(f"list pods in {namespace}: 403 Forbidden: pods is forbidden", self.refuse)
        assert label_selector == "job-name in (pacs-now-1,pacs-now-1-mover)"
        return self.pods

    async def follow_pod_log(self, namespace, pod, container, tail_lines=None):
        self.followed.append((pod, container))
        for line in self.lines:
            yield line

    async def get(self, res, namespace, name, missing_ok=False):
        return {"status": {"containerStatuses": [{"name": "agent", "state": {"terminated": {"exitCode": 0}}}]}}


def pod(name: str, created: str, state: str = "running") -> dict:
    return {"metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "status": {"containerStatuses": [{"name": "agent", "state": {state: {}}}]}}


async def test_the_job_s_newest_started_pod_is_followed_and_its_lines_drawn():
    kube = FakeKube([pod("old", "2026-12-01T00:00:00Z", "terminated"), pod("new", "2026-12-01T00:01:00Z"),
                     pod("pending", "2026-12-01T00:02:00Z", "waiting")],
                    ["lifeline job: starting", format_line(RECORD), format_line({**RECORD, "done": True})])
    out = io.StringIO()
    log = JobLog(kube, Display(out), "lifeline backup now", poll=0.01)
    log.follow("ns", ["pacs-now-1", "pacs-now-1-mover"])
    await log.finish(timeout=10)
    assert kube.followed == [("new", "agent")]  # the newest started one; an older attempt's never after it
    assert out.getvalue().splitlines()[0] == plain_text(RECORD)
    assert log.refused is None


async def test_a_person_who_may_not_read_the_log_is_told_once_and_the_command_goes_on(capsys):
    kube = FakeKube(refuse=403)
    log = JobLog(kube, Display(io.StringIO()), "lifeline backup now", poll=0.01)
    log.follow("ns", ["pacs-now-1", "pacs-now-1-mover"])
    await log.finish(timeout=10)
    err = capsys.readouterr().err
    assert err.count("cannot show the Job's progress") == 1
    assert "`get` on pods/log in namespace ns" in err and "waiting on the status alone" in err
    assert log.refused and kube.followed == []
