"""Bandwidth limits (issue 18, docs/storage.md "Bandwidth"): the token bucket with an injected clock,
the backend that draws on it, a backup held to its rate, and the agent's --limit-* arguments.

No test sleeps to let time pass: the clock and the sleep are injected (a sleep moves the fake clock)."""
from __future__ import annotations

import threading

import pytest

from lifeline.keys import LocalKeyFileProvider
from lifeline.rates import PATTERN, format_rate, parse_rate
from lifeline.repository.backend import open_backend
from lifeline.repository.repo import Repository
from lifeline.repository.throttle import Limits, ThrottledBackend, TokenBucket, report, throttled

from .helpers import make_key, run_agent, write_random

MiB = 1 << 20


class FakeClock:
    """Time that passes only when someone sleeps (from any thread)."""

    def __init__(self):
        self.t, self.slept, self._lock = 1000.0, [], threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.t += seconds


# ---- rates --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("50MiB", 50 * MiB), ("800KiB", 800 * 1024), ("12MB", 12_000_000), ("2M", 2_000_000), ("1.5GiB/s", 3 << 29),
    ("4096", 4096), ("4096B", 4096), ("10k", 10_000), ("10kB", 10_000), ("10Ki", 10240), ("1Gi", 1 << 30)])
def test_rates_as_people_write_them(text, value):
    import re

    assert parse_rate(text) == value
    assert re.fullmatch(PATTERN, text), "the CRD's pattern takes what the parser takes"


@pytest.mark.parametrize("text, why", [("50 Mbit", "not a rate"), ("fast", "not a rate"), ("-1MiB", "not a rate"),
                                       ("10", "at least 1024"), ("2TiB", "not a rate"), ("5000G", "more than 1TiB")])
def test_rates_refused_say_why(text, why):
    with pytest.raises(ValueError, match=why):
        parse_rate(text)


def test_rates_are_printed_in_binary_units():
    assert [format_rate(v) for v in (50 * MiB, 800 * 1024, 1536 * MiB, 512)] == ["50MiB/s", "800KiB/s", "1.5GiB/s",
                                                                                 "512B/s"]
    assert Limits.parse("50MiB", None).describe() == "upload 50MiB/s" and not Limits()


# ---- the bucket ---------------------------------------------------------------------------------


def test_the_bucket_starts_full_then_holds_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock.now, sleep=clock.sleep)  # burst: one second's worth
    assert bucket.take(600) == 0 and bucket.take(400) == 0  # the burst goes at once
    assert bucket.take(500) == pytest.approx(0.5)  # then each byte waits its turn
    assert bucket.take(2000) == pytest.approx(2.0)  # bigger than the burst: into debt, then paid
    assert clock.t == pytest.approx(1002.5)
    clock.t += 10  # idle: it refills, but never beyond the burst
    assert bucket.take(1000) == 0 and bucket.take(1000) == pytest.approx(1.0)
    assert bucket.bytes == 5500 and bucket.waited == pytest.approx(3.5)
    assert bucket.report() == {"rate": 1000, "bytes": 5500, "waited_seconds": 3.5}


def test_parallel_takers_share_one_rate():
    """Workers reserve in turn: whatever their number, N bytes need (N - burst) / rate seconds."""
    clock = FakeClock()
    bucket = TokenBucket(MiB, clock=clock.now, sleep=clock.sleep)
    waits: list[float] = []

    def worker():
        for _ in range(8):
            waits.append(bucket.delay(256 * 1024))  # what each was told, without sleeping (time stands still)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 32 transfers of 256 KiB = 8 MiB against a 1 MiB burst at 1 MiB/s: the last waits 7 s
    assert bucket.bytes == 8 * MiB
    assert max(waits) == pytest.approx(7.0)
    assert sorted(waits) == pytest.approx([max(0.0, (i + 1) / 4 - 1) for i in range(32)])


def test_a_rate_of_zero_is_refused():
    with pytest.raises(ValueError):
        TokenBucket(0)


# ---- the backend ----------------------------------------------------------------------------------


def test_the_backend_counts_puts_up_and_gets_down(tmp_path):
    clock = FakeClock()
    inner = open_backend(f"file://{tmp_path}/store", create=True)
    b = throttled(inner, Limits(upload=1024 * 1024, download=1024), clock=clock.now, sleep=clock.sleep)
    assert isinstance(b, ThrottledBackend) and b.url == inner.url and not b.write_once
    b.put("data/a", [b"x" * 1000, memoryview(b"y" * 24)])  # a list of buffers: their sizes summed
    assert b.get("data/a") == b"x" * 1000 + b"y" * 24  # the download's burst (1 KiB), used up
    assert clock.slept == []
    assert b.get_range("data/a", 1000, 24) == b"y" * 24  # paid before it is read: its length is known
    assert clock.slept == [pytest.approx(24 / 1024)]
    b.list("data/"), b.stat("data/a"), b.exists("data/a"), b.delete("data/b")  # not counted
    assert report(b) == {"upload": {"rate": 1024 * 1024, "bytes": 1024, "waited_seconds": 0.0},
                         "download": {"rate": 1024, "bytes": 1048, "waited_seconds": 0.023}}
    b.get("data/a")  # paid after it was read (its size is known only then): the next transfer waits for it
    assert clock.slept == [pytest.approx(24 / 1024), pytest.approx(1.0)]
    assert throttled(inner, Limits()) is inner and throttled(inner, None) is inner and report(inner) is None
    assert not hasattr(b, "write_once_view"), "a file backend has no write-once view, and neither has its throttle"


def test_a_backup_under_an_upload_limit_takes_at_least_size_over_rate(tmp_path):
    """The agent's own backup, in process, every worker putting through one bucket on a fake clock."""
    from lifeline.agent.backup import dir_source, run_backup

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        write_random(src / f"f{i}", 3 * MiB)
    key = tmp_path / "key"
    make_key(key)
    provider = LocalKeyFileProvider(key)
    Repository.init(open_backend(f"file://{tmp_path}/repo", create=True), provider)
    clock = FakeClock()
    rate = 2 * MiB
    backend = throttled(open_backend(f"file://{tmp_path}/repo"), Limits(upload=rate), clock=clock.now,
                        sleep=clock.sleep)
    repo = Repository.open(backend)
    start = clock.now()
    summary = run_backup(repo, provider, dir_source(str(src)), kind="full", workers=4)
    elapsed = clock.now() - start
    counted = report(repo.backend)["upload"]
    assert counted["bytes"] >= summary["stored_bytes"] >= 9 * MiB  # random data: stored as it is
    assert elapsed >= (counted["bytes"] - rate) / rate >= 3.0, "the backup went faster than its limit"
    assert sum(clock.slept) == pytest.approx(counted["waited_seconds"], abs=0.01)


def test_the_agent_takes_its_limits_and_reports_them(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_random(src / "f", MiB + MiB // 2)
    key = make_key(tmp_path / "key")
    repo = f"file://{tmp_path}/repo"
    assert run_agent("init", "--repo", repo, "--key", key).rc == 0
    r = run_agent("backup", str(src), "--repo", repo, "--key", key, "--json", "--limit-upload", "64MiB")
    assert r.rc == 0, r.err
    up = r.json["bandwidth"]["upload"]
    assert up["rate"] == 64 * MiB and up["bytes"] >= MiB + MiB // 2 and up["waited_seconds"] == 0
    out = tmp_path / "out"
    r = run_agent("restore", "latest", "--to", str(out), "--repo", repo, "--key", key, "--json",
                  env={"LIFELINE_LIMIT_DOWNLOAD": "64MiB"})  # the environment's default, as a Job may set it
    assert r.rc == 0, r.err
    assert r.json["bandwidth"]["download"]["bytes"] >= MiB + MiB // 2 and "upload" not in r.json["bandwidth"]
    r = run_agent("backup", str(src), "--repo", repo, "--key", key, "--limit-upload", "50 Mbit")
    assert r.rc == 2 and "'50 Mbit' is not a rate" in r.err
    r = run_agent("backup", str(src), "--repo", repo, "--key", key, "--json")
    assert r.rc == 0 and "bandwidth" not in r.json
