"""The shipper: every closed segment to every destination, in order, through outages."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

from lifeline.agent.wal import destinations
from lifeline.agent.wal_ship import Shipper

from .helpers import make_segment, new_repo, store, wal_name


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def take_down(repo_dir: Path) -> Path:
    """A destination that is gone: its path is now a plain file, so every write fails (even as root)."""
    away = repo_dir.with_name(repo_dir.name + ".away")
    repo_dir.rename(away)
    repo_dir.write_text("unreachable")
    return away


def bring_back(repo_dir: Path, away: Path) -> None:
    repo_dir.unlink()
    away.rename(repo_dir)


def shipper(tmp_path, urls, key, clock, **kw) -> Shipper:
    return Shipper(str(tmp_path / "spool"), destinations(urls), key, str(tmp_path / "state"), clock=clock,
                   out=io.StringIO(), **kw)


def test_each_segment_reaches_every_destination_and_lag_is_close_minus_ship_time(tmp_path):
    key = tmp_path / "key"
    a, k = new_repo(tmp_path, "a", key)
    b, _ = new_repo(tmp_path, "b", key)
    clock = Clock()
    for seq in (1, 2):
        make_segment(tmp_path / "spool", seq, mtime=clock.t - 3)
    s = shipper(tmp_path, [a, b], k, clock)
    assert s.step() == 2 + 4
    for url in (a, b):
        assert store(url, k).list()["00000001"] == [wal_name(1), wal_name(2)]
    st = s.status()
    assert all(d["newest_shipped"] == wal_name(2) and d["backlog"] == 0 for d in st["destinations"])
    assert s.lags == [3.0] * 4 and st["queue"] == 0
    assert s.step() == 0  # nothing new: nothing shipped again


def test_destination_down_queues_in_order_and_catches_up_when_back(tmp_path):
    key = tmp_path / "key"
    a, k = new_repo(tmp_path, "a", key)
    b, _ = new_repo(tmp_path, "b", key)
    clock = Clock()
    s = shipper(tmp_path, [a, b], k, clock, queue_max=10)
    make_segment(tmp_path / "spool", 1)
    s.step()
    away = take_down(tmp_path / "b")
    for seq in range(2, 7):
        make_segment(tmp_path / "spool", seq)
        clock.t += 1
        s.step()
    st = s.status()
    down = st["destinations"][1]
    assert not down["up"] and down["backlog"] == 5 and down["newest_shipped"] == wal_name(1)
    assert st["destinations"][0]["newest_shipped"] == wal_name(6)  # the other site went on
    assert st["queue"] == 5 and sorted(os.listdir(tmp_path / "state" / "queue")) == [wal_name(i) for i in range(2, 7)]
    bring_back(tmp_path / "b", away)
    clock.t += 10  # past the retry back-off
    order = []
    orig = s._store
    def spy(d):
        st_ = orig(d)
        if not getattr(st_, "spied", False):
            push = st_.push
            st_.push = lambda path, name=None: (order.append((d.dest.url, name)), push(path, name))[1]
            st_.spied = True
        return st_
    s._store = spy
    s.step()
    assert [n for u, n in order if u == b] == [wal_name(i) for i in range(2, 7)]
    assert store(b, k).list()["00000001"] == [wal_name(i) for i in range(1, 7)]
    assert s.status()["queue"] == 0 and os.listdir(tmp_path / "state" / "queue") == []


def test_queue_is_bounded_and_says_so(tmp_path):
    a, k = new_repo(tmp_path, "a")
    clock = Clock()
    s = shipper(tmp_path, [a], k, clock, queue_max=4)
    away = take_down(tmp_path / "a")
    for seq in range(1, 8):
        make_segment(tmp_path / "spool", seq)
    s.step()
    st = s.status()
    assert st["queue"] == 4 and st["queue_full"] and st["queue_near_full"]
    bring_back(tmp_path / "a", away)
    clock.t += 10
    for _ in range(3):
        s.step()
        clock.t += 10
    assert store(a, k).list()["00000001"] == [wal_name(i) for i in range(1, 8)]  # nothing lost


def test_restart_resumes_from_the_persisted_queue(tmp_path):
    a, k = new_repo(tmp_path, "a")
    clock = Clock()
    s = shipper(tmp_path, [a], k, clock)
    away = take_down(tmp_path / "a")
    make_segment(tmp_path / "spool", 1)
    s.step()
    bring_back(tmp_path / "a", away)
    s2 = shipper(tmp_path, [a], k, clock)  # a new process: state from disk
    assert s2.queue == [wal_name(1)]
    s2.step()
    assert store(a, k).list()["00000001"] == [wal_name(1)]


def test_status_line_is_json_with_position_and_lag(tmp_path):
    a, k = new_repo(tmp_path, "a")
    clock = Clock()
    make_segment(tmp_path / "spool", 1, mtime=clock.t - 1.5)
    s = shipper(tmp_path, [a], k, clock)
    s.step()
    s.report(force=True)
    line = json.loads(s.out.getvalue().strip().splitlines()[-1])
    d = line["destinations"][0]
    assert d["newest_shipped"] == wal_name(1) and d["last_segment_lag_seconds"] == 1.5 and d["up"]
    assert json.loads((tmp_path / "state" / "status.json").read_text()) == line


def test_a_segment_the_workload_deletes_before_a_lagging_destination_has_it_is_reported(tmp_path, capsys):
    key = tmp_path / "key"
    a, k = new_repo(tmp_path, "a", key)
    b, _ = new_repo(tmp_path, "b", key)
    clock = Clock()
    s = shipper(tmp_path, [a, b], k, clock, queue_max=1)
    away = take_down(tmp_path / "b")
    make_segment(tmp_path / "spool", 1)
    make_segment(tmp_path / "spool", 2)
    s.step()  # 1 is queued locally for b; 2 waits in the directory (queue full)
    assert s.queue == [wal_name(1)] and s.status()["queue_full"]
    (tmp_path / "spool" / wal_name(1)).unlink()  # the local copy keeps it for b
    bring_back(tmp_path / "b", away)
    clock.t += 10
    s.step()
    s.step()
    assert store(b, k).list()["00000001"] == [wal_name(1), wal_name(2)]


def test_a_segment_deleted_before_anyone_could_ship_it_is_dropped_and_shows_as_a_gap(tmp_path):
    a, k = new_repo(tmp_path, "a")
    clock = Clock()
    s = shipper(tmp_path, [a], k, clock)
    for seq in (1, 2, 3):
        make_segment(tmp_path / "spool", seq)
    s.take()
    (tmp_path / "spool" / wal_name(2)).unlink()  # the workload removed it before it was shipped
    s.ship()
    s.step()
    st = store(a, k)
    names = st.list()["00000001"]
    assert names == [wal_name(1), wal_name(3)] and s.queue == []
    gaps = [g.describe() for g in st.gaps("00000001", names)]
    assert gaps == [f"missing 1 segment(s) {wal_name(2)} after {wal_name(1)}"]


def test_metrics_endpoint_serves_lag_backlog_and_newest_position(tmp_path):
    import urllib.request

    from lifeline.agent.wal_ship import Metrics
    from tests.realparts.ports import free_port

    a, k = new_repo(tmp_path, "a")
    clock = Clock()
    make_segment(tmp_path / "spool", 1, mtime=clock.t - 2)
    s = shipper(tmp_path, [a], k, clock)
    s.step()
    port = free_port()
    m = Metrics(port, host="127.0.0.1")
    try:
        m.update(s.status())
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        m.close()
    assert f'lifeline_wal_backlog_segments{{repository="{a}"}} 0.0' in text
    newest = next(ln for ln in text.splitlines()
                  if ln.startswith(f'lifeline_wal_last_shipped_segment_closed_timestamp_seconds{{repository="{a}"}}'))
    assert float(newest.split()[-1]) == clock.t - 2
    assert f'lifeline_wal_destination_up{{repository="{a}"}} 1.0' in text
    assert "lifeline_wal_queue_capacity_segments 256.0" in text
