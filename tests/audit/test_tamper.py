"""`lifeline audit verify` finds every kind of tampering, on a directory and on S3, and names the record."""
from __future__ import annotations

import json

import pytest

from lifeline.audit import chain, verify
from lifeline.cli import main

from .conftest import store_of, write_records


def _raw(store, seq: int) -> dict:
    return json.loads(store.backend.get(chain.record_name(seq)))


def _put(store, seq: int, record: dict) -> None:
    store.backend.put(chain.record_name(seq), chain.to_bytes(record))


def test_intact_log_verifies_with_a_summary(audit_url, chained, capsys):
    write_records(6)
    code = main(["audit", "verify", "--url", audit_url])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "is intact: 6 records, seq 0..5" in out.out
    result = verify(store_of(audit_url))
    assert result.ok and result.records == 6 and result.last_seq == 5
    # each record links to the one before it
    store = store_of(audit_url)
    assert [_raw(store, i)["prev"] for i in range(1, 6)] == [_raw(store, i)["hash"] for i in range(5)]
    assert _raw(store, 0)["prev"] == chain.GENESIS


def _verify_cli(url, capsys) -> tuple[int, str]:
    code = main(["audit", "verify", "--url", url])
    out = capsys.readouterr()
    return code, out.err + out.out


# ---- one tampering each: what it does to a log of six records, and the words verify must name it with --------

def _edit(store) -> None:
    record = _raw(store, 3)
    record["actor"] = "someone-else"  # rewrite who did it, keep the old hash
    _put(store, 3, record)


def _edit_and_rehash(store) -> None:
    record = _raw(store, 3)
    record["outcome"] = "failed"
    record["hash"] = chain.record_hash(record)  # a careful forger fixes the record's own hash
    _put(store, 3, record)


def _remove(*seqs):
    def tamper(store) -> None:
        for seq in seqs:
            store.backend.delete(chain.record_name(seq))
    return tamper


def _swap(store) -> None:
    two, three = store.backend.get(chain.record_name(2)), store.backend.get(chain.record_name(3))
    store.backend.put(chain.record_name(2), three)
    store.backend.put(chain.record_name(3), two)


def _swap_and_renumber(store) -> None:
    two, three = _raw(store, 2), _raw(store, 3)
    two["seq"], three["seq"] = 3, 2  # swap and renumber, fixing their own hashes
    for rec in (two, three):
        rec["hash"] = chain.record_hash(rec)
    _put(store, 2, three)
    _put(store, 3, two)


def _insert_object(store) -> None:
    store.backend.put("records/000000000002-extra.json", b"{}")


def _insert_and_renumber(store) -> None:
    # Shift records 3..5 up by one and slip a forged, well-linked record in at 3.
    for seq in (5, 4, 3):
        rec = _raw(store, seq)
        rec["seq"] = seq + 1
        rec["hash"] = chain.record_hash(rec)
        _put(store, seq + 1, rec)
    forged = chain.seal({"time": "2026-11-23T09:12:00+00:00", "action": "approval", "actor": "mallory",
                         "outcome": "succeeded", "subject": {"kind": "Restore", "namespace": "hospital",
                                                             "name": "his-db-2026-11"}, "details": {}},
                        seq=3, prev=_raw(store, 2)["hash"], writer="mallory")
    _put(store, 3, forged)


TAMPERING = [
    pytest.param(6, _edit, "record 3 was edited: its content no longer matches its hash", id="edited"),
    pytest.param(6, _edit_and_rehash, "record 3 was edited or replaced: record 4 links to",
                 id="edited-with-recomputed-hash"),
    pytest.param(6, _remove(2), "record 2 removed (the log jumps from 1 to 3)", id="removed-from-the-middle"),
    pytest.param(6, _remove(0, 1), "records 0..1 removed from the start: no checkpoint allows pruning",
                 id="removed-from-the-start-without-checkpoint"),
    pytest.param(6, _remove(5), "record 5 removed from the end", id="removed-from-the-end"),
    pytest.param(6, _swap, "record 2 was reordered or renamed: records/000000000002.json holds record 3",
                 id="reordered"),
    pytest.param(6, _swap_and_renumber, "record 2 was reordered or replaced: record 3 links to record 1",
                 id="reordered-and-renumbered"),
    pytest.param(4, _insert_object, "unexpected object records/000000000002-extra.json among the records",
                 id="inserted-object"),
    pytest.param(6, _insert_and_renumber, "record 3 was inserted: record 4 links straight to record 2",
                 id="inserted-with-renumbering"),
]


@pytest.mark.parametrize(("records", "tamper", "named"), TAMPERING)
def test_tampering_is_named(audit_url, chained, capsys, records, tamper, named):
    write_records(records)
    tamper(store_of(audit_url))
    code, text = _verify_cli(audit_url, capsys)
    assert code == 1
    assert named in text


def test_truncation_that_also_rewrites_the_head_hint_is_caught_by_an_anchor(audit_url, chained, capsys):
    written = write_records(6)
    store = store_of(audit_url)
    anchor = f"5:{_raw(store, 5)['hash'][:16]}"  # e.g. noted from last month's report
    store.backend.delete(chain.record_name(5))
    store.backend.put(chain.HEAD, chain.to_bytes({"seq": 4, "hash": _raw(store, 4)["hash"]}))
    assert verify(store).ok  # without an outside anchor, a clean cut at the end looks like a shorter log
    code = main(["audit", "verify", "--url", audit_url, "--anchor", anchor])
    out = capsys.readouterr()
    assert code == 1 and "record 5 (anchor) is gone: the log ends at 4" in out.err
    assert written[5]["actor"]  # the record existed


def test_verify_json_names_kind_and_seq(audit_url, chained, capsys):
    write_records(3)
    store = store_of(audit_url)
    record = _raw(store, 1)
    record["details"] = {"n": 99}
    _put(store, 1, record)
    assert main(["audit", "verify", "--url", audit_url, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert (result["ok"], result["problem_kind"], result["problem_seq"]) == (False, "edited", 1)


@pytest.mark.parametrize("audit_url", ["file"], indirect=True)
def test_verify_without_url_says_what_to_pass(audit_url, capsys, monkeypatch):
    monkeypatch.delenv("LIFELINE_AUDIT_URL", raising=False)
    assert main(["audit", "verify"]) == 2
    assert "pass --url" in capsys.readouterr().err


# Issue 15, finding 8: an attacker who deletes the whole log (records and head), or who points the
# check at the wrong place, must not get "intact".

def test_a_missing_log_is_not_intact(audit_url, chained, capsys):
    code = main(["audit", "verify", "--url", audit_url])
    out = capsys.readouterr()
    assert code == 1 and "there is no audit log at" in out.err
    assert verify(store_of(audit_url)).problem_kind == "missing"


def test_deleting_every_record_is_caught_by_the_head_hint(audit_url, chained, capsys):
    write_records(4)
    store = store_of(audit_url)
    for seq in range(4):
        store.backend.delete(chain.record_name(seq))
    result = verify(store)
    assert not result.ok and result.problem_kind == "removed"
    assert "every record was removed" in result.problem and "up to record 3" in result.problem


def test_deleting_every_record_and_the_head_is_caught_by_an_anchor(audit_url, chained, capsys):
    write_records(4)
    store = store_of(audit_url)
    anchor = f"2:{_raw(store, 2)['hash'][:16]}"
    for seq in range(4):
        store.backend.delete(chain.record_name(seq))
    store.backend.delete(chain.HEAD)
    code = main(["audit", "verify", "--url", audit_url, "--anchor", anchor])
    out = capsys.readouterr()
    assert code == 1 and "record 2 (anchor) is gone: the log has no records at all" in out.err
