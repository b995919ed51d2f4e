"""Segment objects in the repository: push, verified fetch, idempotency, conflicts, holes."""
from __future__ import annotations

import pytest

from lifeline.repository.errors import DamagedData
from lifeline.repository.segments import SegmentConflict, SegmentNotFound, parse_name

from .helpers import SEG, make_segment, new_repo, store, wal_name


def test_pg_names_map_to_timeline_and_sequence():
    sn = parse_name("00000002000000030000004A", 16 * 1024 * 1024)
    assert (sn.stream, sn.seq) == ("00000002", 3 * 256 + 0x4A)
    assert parse_name("00000002.history").stream == "aux"
    assert parse_name("000000010000000000000003.00000028.backup").stream == "aux"
    assert parse_name("log-000123.seg").seq == 123


def test_push_then_fetch_returns_the_same_bytes(tmp_path):
    url, key = new_repo(tmp_path)
    seg = make_segment(tmp_path / "wal", 5)
    s = store(url, key)
    assert s.push(str(seg))["stored"] is True
    header, data = s.fetch(seg.name)
    assert data == seg.read_bytes()
    assert (header["stream"], header["seq"], header["segment_size"]) == ("00000001", 5, SEG)
    raw = (tmp_path / "repo" / "wal" / "00000001" / seg.name).read_bytes()
    assert b"segment 5" not in raw  # sealed, not clear


def test_identical_repush_is_a_no_op_and_a_different_segment_is_refused(tmp_path):
    url, key = new_repo(tmp_path)
    s = store(url, key)
    seg = make_segment(tmp_path / "a", 7)
    s.push(str(seg))
    assert s.push(str(seg))["already"] is True
    other = make_segment(tmp_path / "b", 7, fill=b"another database")
    with pytest.raises(SegmentConflict) as exc:
        s.push(str(other))
    assert exc.value.exit_code == 8
    assert s.fetch(seg.name)[1] == seg.read_bytes()


def test_missing_segment_is_reported_as_not_found(tmp_path):
    url, key = new_repo(tmp_path)
    with pytest.raises(SegmentNotFound):
        store(url, key).fetch(wal_name(3))


def test_flipped_byte_fails_authentication(tmp_path):
    url, key = new_repo(tmp_path)
    s = store(url, key)
    seg = make_segment(tmp_path / "wal", 2)
    s.push(str(seg))
    obj = tmp_path / "repo" / "wal" / "00000001" / seg.name
    raw = bytearray(obj.read_bytes())
    raw[-40] ^= 1
    obj.write_bytes(bytes(raw))
    with pytest.raises(DamagedData, match="authentication failed"):
        s.fetch(seg.name)


def test_segment_renamed_to_another_position_is_detected(tmp_path):
    url, key = new_repo(tmp_path)
    s = store(url, key)
    s.push(str(make_segment(tmp_path / "wal", 2)))
    d = tmp_path / "repo" / "wal" / "00000001"
    (d / wal_name(2)).rename(d / wal_name(3))
    with pytest.raises(DamagedData, match="expected"):
        s.fetch(wal_name(3))


def test_a_hole_is_named_as_the_exact_missing_range(tmp_path):
    url, key = new_repo(tmp_path)
    s = store(url, key)
    for seq in (1, 2, 3, 7, 8, 10):
        s.push(str(make_segment(tmp_path / "wal", seq)))
    names = s.list()["00000001"]
    gaps = s.gaps("00000001", names)
    assert [(g.first, g.last, g.count, g.after) for g in gaps] == [
        (wal_name(4), wal_name(6), 3, wal_name(3)), (wal_name(9), wal_name(9), 1, wal_name(8))]
    # from a start position before the first stored segment, the head is missing too
    assert s.gaps("00000001", names, start_seq=0)[0].describe() == f"missing 1 segment(s) {wal_name(0)}"


def test_sequence_crosses_the_log_id_boundary(tmp_path):
    per = 0x100000000 // SEG  # 4096 segments of 1 MiB per log id
    url, key = new_repo(tmp_path)
    s = store(url, key)
    for seq in (per - 1, per):
        s.push(str(make_segment(tmp_path / "wal", seq)))
    names = s.list()["00000001"]
    assert names == [wal_name(per - 1), wal_name(per)] and names[1].endswith("0000000100000000")
    assert s.gaps("00000001", names) == []
