"""Unit tests of the format pieces: chunker, keys, sealing, backends."""
from __future__ import annotations

import io
import os
import stat

import pytest
from hypothesis import given, settings, strategies as st

from lifeline.keys import KeyMismatch, KeyProviderError, LocalKeyFileProvider, create_key_file, provider_from_ref
from lifeline.repository.chunker import Chunker
from lifeline.repository.crypto import EpochKeys
from lifeline.repository.errors import DamagedData

SMALL = dict(min_size=1024, avg_size=4096, max_size=16384)


@settings(max_examples=int(os.environ.get("LIFELINE_CHUNKER_EXAMPLES", "40")), deadline=None)
@given(size=st.integers(0, 200_000), block=st.integers(1, 70_000), seed=st.integers(1, 2**63 - 1),
       text=st.booleans())
def test_streaming_chunks_equal_whole_buffer_chunks(size, block, seed, text):
    if text:  # low-entropy bytes: cuts are found late, near the chunk's end, and forced ones are common
        data = b"".join(b"%d GET /studies/%d 200\n" % (i, i * 7919 % 1000) for i in range(size // 16 + 1))[:size]
    else:
        data = (os.urandom(4096) * (size // 4096 + 1))[:size]
        data = bytes(b ^ (i * 7 & 0xFF) for i, b in enumerate(data[:5000])) + data[5000:]
    ch = Chunker(seed, **SMALL)
    whole = [bytes(c.data) for c in ch._cdc.cut_buf(data)] if data else []
    streamed = [bytes(c) for c in ch.chunk_stream(io.BytesIO(data).readinto, block=block)]
    assert streamed == whole
    hinted = [bytes(c) for c in ch.chunk_stream(io.BytesIO(data).readinto, block=block, size_hint=size // 2)]
    assert hinted == whole  # a wrong size hint changes buffer sizes, never the chunks
    assert b"".join(streamed) == data
    assert all(len(c) <= SMALL["max_size"] for c in streamed)


def test_chunk_boundaries_depend_on_epoch_seed():
    data = os.urandom(400_000)
    a = [len(c) for c in Chunker(11, **SMALL).chunk_stream(io.BytesIO(data).readinto)]
    b = [len(c) for c in Chunker(12345678901, **SMALL).chunk_stream(io.BytesIO(data).readinto)]
    assert a != b


def test_keyed_ids_and_sealing():
    k1 = EpochKeys("00" * 16, os.urandom(32))
    k2 = EpochKeys("11" * 16, os.urandom(32))
    data = b"patient 1234 " * 1000
    assert k1.chunk_id(data) != k2.chunk_id(data)  # ids do not reveal content across keys
    cid = k1.chunk_id(data)
    blob = k1.seal_chunk(cid, data)
    assert len(blob) < len(data)  # compressed
    assert data[:20] not in blob
    assert k1.open_chunk(cid, blob, len(data)) == data
    with pytest.raises(DamagedData):
        k2.open_chunk(cid, blob)  # wrong epoch key
    with pytest.raises(DamagedData):
        k1.open_chunk(k1.chunk_id(b"other"), blob)  # blob moved under another id (AAD)
    bad = bytearray(blob)
    bad[40] ^= 1
    with pytest.raises(DamagedData):
        k1.open_chunk(cid, bytes(bad))
    rnd = os.urandom(10_000)
    rid = k1.chunk_id(rnd)
    assert k1.open_chunk(rid, k1.seal_chunk(rid, rnd), len(rnd)) == rnd


def test_local_key_provider(tmp_path):
    path = create_key_file(tmp_path / "k")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(KeyProviderError, match="already exists"):
        create_key_file(path)
    p = provider_from_ref(f"file://{path}")
    assert isinstance(p, LocalKeyFileProvider) and p.ref == f"file://{path}"
    dek, wrapped = p.new_data_key()
    assert len(dek) == 32 and dek not in wrapped
    assert p.unwrap(wrapped) == dek
    other = LocalKeyFileProvider(create_key_file(tmp_path / "k2"))
    with pytest.raises(KeyMismatch, match="wrong key"):
        other.unwrap(wrapped)
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(KeyMismatch, match="damaged"):
        p.unwrap(bytes(tampered))
    os.chmod(path, 0o640)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        LocalKeyFileProvider(path).new_data_key()
    (tmp_path / "junk").write_text("hello")
    os.chmod(tmp_path / "junk", 0o600)
    with pytest.raises(KeyProviderError, match="not a lifeline key file"):
        LocalKeyFileProvider(tmp_path / "junk").new_data_key()
    with pytest.raises(KeyProviderError, match="unknown key provider"):
        provider_from_ref("gopher://x")


def test_file_backend_atomic_put_and_exclusive(tmp_path):
    from lifeline.repository.backend import open_backend
    from lifeline.repository.errors import ObjectNotFound, RepositoryExists

    b = open_backend(f"file://{tmp_path}/r", create=True)
    b.put("points/x", b"one")
    b.put("points/x", b"two")
    assert b.get("points/x") == b"two" and b.get_range("points/x", 1, 2) == b"wo"
    with pytest.raises(RepositoryExists):
        b.put("points/x", b"three", exclusive=True)
    assert [o.name for o in b.list("points/")] == ["points/x"]
    assert b.list_temporaries() == []
    b.delete("points/x")
    b.delete("points/x")
    with pytest.raises(ObjectNotFound):
        b.get("points/x")
