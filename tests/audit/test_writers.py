"""Concurrent writers never fork the chain; an unreachable store holds records in order."""
from __future__ import annotations

import threading

import pytest

from lifeline.audit import open_store, verify
from lifeline.audit.sink import ChainSink
from lifeline.observability import audit

from .conftest import T0, store_of


def _entry(i: int, who: str) -> dict:
    return {"time": T0.isoformat(), "action": "backup", "actor": who, "outcome": "succeeded",
            "subject": {"kind": "BackupPolicy", "namespace": "hospital", "name": "pacs"}, "details": {"n": i}}


def test_two_writers_with_stale_heads_do_not_fork(audit_url):
    # Two replicas that each learned the head once, then keep appending: every race is lost by one of them.
    a, b = open_store(audit_url, writer="replica-a"), open_store(audit_url, writer="replica-b")
    a.append(_entry(0, "a"))
    b.append(_entry(0, "b"))  # b's first append finds a's record 0
    a.append(_entry(1, "a"))  # a still believes the head is 0: loses the race for 1, takes 2
    records = list(store_of(audit_url).records())
    assert [(r["seq"], r["actor"]) for r in records] == [(0, "a"), (1, "b"), (2, "a")]
    assert verify(store_of(audit_url)).ok


def test_threads_racing_produce_one_gapless_chain(audit_url):
    per_writer = 12
    stores = [open_store(audit_url, writer=f"w{i}") for i in range(3)]
    barrier = threading.Barrier(len(stores))

    def work(store, who):
        barrier.wait()
        for i in range(per_writer):
            store.append(_entry(i, who))

    threads = [threading.Thread(target=work, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(store_of(audit_url))
    assert result.ok, result.problem
    records = list(store_of(audit_url).records())
    assert [r["seq"] for r in records] == list(range(3 * per_writer))
    for who in ("w0", "w1", "w2"):  # nobody's record was lost, each writer's own order kept
        assert [r["details"]["n"] for r in records if r["actor"] == who] == list(range(per_writer))


def test_a_new_writer_finds_the_head_from_the_hint_and_follows_later_records(audit_url):
    first = open_store(audit_url, writer="one")
    for i in range(3):
        first.append(_entry(i, "one"))
    other = open_store(audit_url, writer="two")
    other.append(_entry(9, "two"))  # head hint now says 3
    first.append(_entry(3, "one"))  # stale head 2: races, follows 3, writes 4
    assert open_store(audit_url).find_head()[0] == 4
    assert verify(store_of(audit_url)).ok


@pytest.mark.parametrize("audit_url", ["s3"], indirect=True)
def test_records_wait_in_memory_while_the_bucket_is_missing(audit_url, s3_server, caplog):
    bucket = audit_url.split("/")[2]
    missing_bucket_url = audit_url.replace(bucket, bucket + "-later")
    sink = ChainSink(open_store(missing_bucket_url, writer="op"))
    audit.add_sink(sink)
    try:
        audit.record("backup", actor="op", outcome="started", subject={"kind": "BackupPolicy",
                                                                       "namespace": "h", "name": "p"}, when=T0)
        audit.record("backup", actor="op", outcome="succeeded", subject={"kind": "BackupPolicy",
                                                                         "namespace": "h", "name": "p"}, when=T0)
        assert len(sink.pending) == 2
        assert "unreachable; 2 record(s) held in memory" in caplog.text
        s3_server.make_bucket(bucket + "-later")
        audit.record("drill", actor="op", outcome="started", subject={"kind": "RestoreDrill",
                                                                      "namespace": "h", "name": "d"}, when=T0)
    finally:
        audit.remove_sink(sink)
    assert sink.pending == []
    records = list(store_of(missing_bucket_url).records())
    assert [(r["action"], r["outcome"]) for r in records] == [("backup", "started"), ("backup", "succeeded"),
                                                              ("drill", "started")]
    assert verify(store_of(missing_bucket_url)).ok
