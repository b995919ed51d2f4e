"""Retention: old records go from the start only, behind a checkpoint the chain itself records."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from lifeline.audit import chain, verify
from lifeline.audit.retention import parse_retention, prune
from lifeline.cli import main
from lifeline.errors import UsageError

from .conftest import T0, store_of, write_records

YEAR = timedelta(days=365)


def test_default_retention_is_six_years():
    assert parse_retention("6y") == pytest.approx(6 * 365.25 * 86400)
    assert parse_retention("1y30d") == pytest.approx((365.25 + 30) * 86400)
    with pytest.raises(UsageError, match="e.g. 6y"):
        parse_retention("six years")


def test_prune_removes_only_records_older_than_retention_and_verify_still_passes(audit_url, chained):
    write_records(4, start=T0 - 7 * YEAR, step=timedelta(days=30))  # 7 years old: beyond six
    write_records(3, start=T0 - 2 * YEAR)  # recent enough
    store = store_of(audit_url)
    done = prune(store, retention="6y", now=T0, actor="auditor@hospital")
    assert (done["pruned"], done["first_seq"], done["prune_record"]) == (4, 4, 7)
    assert store.record_seqs() == [4, 5, 6, 7]
    result = verify(store_of(audit_url))
    assert result.ok, result.problem
    assert (result.records, result.pruned_before) == (4, 4)
    prune_record = store.load(7)
    assert prune_record["action"] == "audit-prune" and prune_record["actor"] == "auditor@hospital"
    assert prune_record["details"]["checkpoint_sha256"] == done["checkpoint_sha256"]
    # nothing more to prune: a second run changes nothing
    assert prune(store_of(audit_url), retention="6y", now=T0)["pruned"] == 0
    assert main(["audit", "verify", "--url", audit_url]) == 0


def test_pruning_more_than_the_checkpoint_allows_is_caught(audit_url, chained, capsys):
    write_records(3, start=T0 - 7 * YEAR)
    write_records(3, start=T0 - YEAR)
    store = store_of(audit_url)
    prune(store, retention="6y", now=T0)
    store.backend.delete(chain.record_name(3))  # the first record the checkpoint says is kept
    assert main(["audit", "verify", "--url", audit_url]) == 1
    assert "record 3 removed from the start: the checkpoint allows pruning only before record 3" \
        in capsys.readouterr().err


def test_a_forged_or_edited_checkpoint_is_caught(audit_url, chained):
    write_records(3, start=T0 - 7 * YEAR)
    write_records(3, start=T0 - YEAR)
    store = store_of(audit_url)
    prune(store, retention="6y", now=T0)
    name = chain.checkpoint_name(3)
    checkpoint = json.loads(store.backend.get(name))
    checkpoint["actor"] = "nobody"
    store.backend.put(name, chain.to_bytes(checkpoint))
    result = verify(store_of(audit_url))
    assert not result.ok and result.problem_kind == "checkpoint"
    assert "is not recorded in the chain" in result.problem


def test_a_checkpoint_written_by_hand_cannot_hide_removed_records(audit_url, chained):
    write_records(6)
    store = store_of(audit_url)
    forged = {"first_seq": 2, "prev": store.load(1)["hash"], "pruned_from": 0,
              "last_pruned_time": T0.isoformat(), "retention": "1s", "retention_seconds": 1,
              "time": T0.isoformat(), "actor": "mallory"}
    store.backend.put(chain.checkpoint_name(2), chain.to_bytes(forged))
    store.backend.delete(chain.record_name(0))
    store.backend.delete(chain.record_name(1))
    result = verify(store_of(audit_url))
    assert not result.ok and "checkpoint checkpoints/000000000002.json is not recorded in the chain" in result.problem


def test_prune_refuses_a_log_that_does_not_verify(audit_url, chained):
    write_records(4, start=T0 - 7 * YEAR)
    store = store_of(audit_url)
    store.backend.delete(chain.record_name(2))
    with pytest.raises(UsageError, match="refusing to prune .*record 2 removed"):
        prune(store, retention="6y", now=T0)
    assert store.record_seqs() == [0, 1, 3]  # evidence kept


def test_an_interrupted_prune_still_verifies(audit_url, chained):
    write_records(4, start=T0 - 7 * YEAR)
    write_records(2, start=T0)
    store = store_of(audit_url)
    # a prune that died after recording the checkpoint and deleting only record 0
    real_delete = store.backend.delete
    calls = []

    def dying_delete(name):
        calls.append(name)
        if len(calls) > 1:
            raise OSError("killed")
        real_delete(name)

    store.backend.delete = dying_delete
    with pytest.raises(OSError):
        prune(store, retention="6y", now=T0)
    result = verify(store_of(audit_url))
    assert result.ok, result.problem
    assert result.first_seq == 1 and result.pruned_before == 4
