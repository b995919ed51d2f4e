"""Small files are restored from stretches of their pack read at once (restore.Span), and damage in a
stretch still costs only the file it hits."""
from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from lifeline.agent.restore import Restorer, Span
from lifeline.keys import provider_from_ref
from lifeline.repository import Repository, open_backend
from lifeline.repository.pack import BlobRef

from .helpers import Repo
from .test_integrity import _flip, _locate


def _small_tree(root: Path, n: int = 300) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rel = f"d{i % 3}/f{i:04d}"
        files[rel] = b"" if i % 50 == 7 else os.urandom(1000 + 7 * i)  # a few empty files among them
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(files[rel])
    return files


def _restore(repo: Repo, point_id: str, out: Path, **kw) -> tuple[dict, list[int]]:
    """Restore in this process, counting the ranged reads and their sizes."""
    r = Repository.open(open_backend(repo.url))
    reads = []
    plain = r.read_blob

    def counted(pack_id, offset, length):
        reads.append(length)
        return plain(pack_id, offset, length)

    r.read_blob = counted
    return Restorer(r, provider_from_ref(repo.key), point_id, **kw).to_directory(str(out)), reads


def test_small_files_come_from_a_few_ranged_reads(repo: Repo, tmp_path):
    src = tmp_path / "src"
    files = _small_tree(src)
    pid = repo.backup(src)["point_id"]
    summary, reads = _restore(repo, pid, tmp_path / "out")
    assert summary["files"] == len(files) and not summary["damaged"]
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    # 294 non-empty files in one pack: read as a handful of stretches of at most Span.MAX_BYTES
    assert 1 <= len(reads) <= 10 and max(reads) <= Span.MAX_BYTES


def test_an_incremental_s_changed_files_do_not_cut_the_spans(repo: Repo, tmp_path):
    """The changed files lie in a pack of their own, one in ten among the others: a span reads a
    stretch of each pack, so the whole tree still comes from a read or two a pack."""
    src = tmp_path / "src"
    files = _small_tree(src)
    repo.backup(str(src))
    for i, rel in enumerate(sorted(files)):
        if i % 10 == 3:
            files[rel] = os.urandom(900 + i)
            (src / rel).write_bytes(files[rel])
    pid = repo.backup(str(src))["point_id"]
    summary, reads = _restore(repo, pid, tmp_path / "out")
    assert summary["files"] == len(files) and not summary["damaged"]
    for rel, data in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == data
    assert 2 <= len(reads) <= 4, reads  # (a span a pack switch: 60 reads)


def _ref(pack: str, offset: int, length: int) -> BlobRef:
    return BlobRef(pack, offset, length, length)


def test_a_span_reads_from_a_few_packs_each_mostly_wanted():
    span = Span()
    assert span.takes([_ref("a", 0, 100)]) and span.takes([_ref("b", 0, 100)])
    assert span.takes([_ref("a", 100, 100), _ref("b", 100, 50)])  # both stretches grow
    assert span.stretches == {"a": (0, 200, 200), "b": (0, 150, 150)} and span.read_bytes == 350
    assert not span.takes([_ref("a", 1000, 10)])  # "a" would be read mostly for what nobody wants
    assert not span.takes([_ref("c", 0, 10), _ref("a", 1000, 10)])  # refused whole: "c" not taken
    assert span.takes([_ref("c", 0, 10)]) and span.takes([_ref("d", 0, 10)])
    assert not span.takes([_ref("e", 0, 10)])  # a fifth pack
    assert not span.takes([_ref("a", 200, Span.MAX_BYTES)])  # more than a span reads
    assert not span.takes([None]) and span.takes([])  # a chunk not in the index; an empty file
    assert set(span.stretches) == {"a", "b", "c", "d"} and span.read_bytes == 370


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 6 << 20), st.integers(1, 3 << 20)),
                max_size=40))
def test_one_chunk_takes_the_same_rules_as_many(calls):
    """A file of one chunk (most small files) goes through a shorter path: it must decide as the
    general one does, and leave the span as it would."""
    short, general = Span(), Span()
    for pack, offset, length in calls:
        ref = _ref(pack, offset, length)
        assert short.takes([ref]) == general._takes_many([ref]), (pack, offset, length)
        assert (short.stretches, short.read_bytes) == (general.stretches, general.read_bytes)


def test_a_flipped_byte_in_a_stretch_costs_only_its_file(repo: Repo, tmp_path):
    src = tmp_path / "src"
    files = _small_tree(src)
    pid = repo.backup(src)["point_id"]
    pack, ref = _locate(repo, pid, "d1/f0100")
    _flip(pack, ref.offset + ref.length // 2)
    summary, _reads = _restore(repo, pid, tmp_path / "out", skip_damaged=True)
    assert [d["path"] for d in summary["damaged"]] == ["d1/f0100"]
    assert not (tmp_path / "out" / "d1/f0100").exists()
    for rel, data in files.items():
        if rel != "d1/f0100":
            assert (tmp_path / "out" / rel).read_bytes() == data


def test_a_truncated_pack_names_every_file_it_held(repo: Repo, tmp_path):
    src = tmp_path / "src"
    files = _small_tree(src, 60)
    pid = repo.backup(src)["point_id"]
    pack, ref = _locate(repo, pid, "d0/f0030")
    os.truncate(pack, ref.offset)  # this file's chunk and every one after it are gone
    summary, _reads = _restore(repo, pid, tmp_path / "out", skip_damaged=True)
    damaged = {d["path"] for d in summary["damaged"]}
    assert "d0/f0030" in damaged
    for rel, data in files.items():
        got = tmp_path / "out" / rel
        assert (rel in damaged) != (got.exists() and got.read_bytes() == data), rel

