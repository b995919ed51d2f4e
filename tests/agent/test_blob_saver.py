"""The repository's door for new chunks: ids in order, deduplicated, packed and indexed behind it."""
from __future__ import annotations

import os

import pytest

from lifeline.keys import create_key_file, provider_from_ref
from lifeline.repository import Repository, open_backend
from lifeline.repository.layout import INDEX_DIR


def _repo(tmp_path):
    provider = provider_from_ref("file://" + str(create_key_file(tmp_path / "key")))
    repo = Repository.init(open_backend("file://" + str(tmp_path / "repo"), create=True), provider)
    repo.config["pack_target"] = 64 * 1024  # several packs from a few hundred KiB
    return repo, provider, repo.new_epoch(provider)


def test_ids_land_in_order_deduplicated_packed_and_indexed(tmp_path):
    repo, provider, keys = _repo(tmp_path)
    stored = os.urandom(4096)
    pieces = [os.urandom(8192) for _ in range(40)]
    a, b = [], []
    with repo.blob_saver(keys, {keys.chunk_id(stored)}, workers=2) as saver:
        for p in pieces:
            saver.save(p, a)
        for p in [stored] + pieces[:5]:
            saver.save(p, b)
    assert a == [keys.chunk_id(p).hex() for p in pieces]
    assert b == [keys.chunk_id(p).hex() for p in [stored] + pieces[:5]]
    assert (saver.chunks_total, saver.chunks_new) == (46, 40)
    packs = repo.list_packs()
    assert len(packs) > 1
    index = repo.load_index(provider, strict=True)
    assert len(index.segments) == 1 and set(index.packs) == set(packs)
    assert saver.stored_bytes == sum(packs.values()) + sum(o.size for o in repo.backend.list(INDEX_DIR))
    for p in pieces:
        cid = keys.chunk_id(p)
        ref = index.get(cid)
        assert keys.open_chunk(cid, repo.read_blob(ref.pack_id, ref.offset, ref.length), ref.raw_len) == p


def test_a_failed_backup_writes_no_index_segment(tmp_path):
    repo, provider, keys = _repo(tmp_path)
    with pytest.raises(RuntimeError):
        with repo.blob_saver(keys, set(), workers=2) as saver:
            for _ in range(20):
                saver.save(os.urandom(8192), [])
            raise RuntimeError("source went away")
    assert not list(repo.backend.list(INDEX_DIR))
