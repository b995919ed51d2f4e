"""Per-epoch keys, keyed chunk ids, and sealed (compressed + encrypted) blobs.

One *epoch* has one 256-bit data key (DEK), wrapped by a key provider and stored
opaque under ``keys/<epoch>``. From the DEK we derive, with BLAKE3's key
derivation mode, independent sub-keys:

* ``id_key``   — keys the BLAKE3 hash that names chunks (ids leak nothing about content
  to someone without the key, and differ between epochs);
* ``aead_key`` — AES-256-GCM key for chunk blobs, pack directories and manifests;
* ``cdc_seed`` — seed of the FastCDC gear table, so chunk boundaries do not
  fingerprint known content either;
* ``macs``     — keys of the MACs that authenticate the repository's clear objects (config,
  catalogue head, index segments), see :class:`MacKeys`.
"""
from __future__ import annotations

import hmac
import os
import struct
import threading

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DamagedData

NONCE = 12
TAG = 16
BLOB_HEADER = 1 + NONCE  # codec byte + nonce
BLOB_OVERHEAD = BLOB_HEADER + TAG

CODEC_RAW = 0
CODEC_ZSTD = 1

_CTX = "lifeline.io 2026-11 repository v1 "

KIND_DATA = 1
_BLOB_AAD = struct.Struct(">4sBB16s32s")  # b"LLB1", kind, codec, epoch id, chunk id

SAMPLE = 64 * 1024  # compressibility probe for large chunks


class MacKeys:
    """Keys that authenticate the repository's own description, derived from one data key.

    Storage may read and write every object, so the clear objects that steer a command (the
    config, the catalogue head, the index) carry a keyed BLAKE3 MAC. The keys come from a data
    key like every other sub-key, so they die with it when its epoch is crypto-shredded."""

    PURPOSES = ("config", "catalogue", "index")

    def __init__(self, dek: bytes):
        self._keys = {p: blake3.blake3(dek, derive_key_context=_CTX + p + " mac").digest() for p in self.PURPOSES}

    def mac(self, purpose: str, data: bytes) -> bytes:
        return blake3.blake3(data, key=self._keys[purpose]).digest()

    def verify(self, purpose: str, data: bytes, tag) -> bool:
        """Constant-time check of ``tag`` (bytes or hex text; anything else fails)."""
        if isinstance(tag, str):
            try:
                tag = bytes.fromhex(tag)
            except ValueError:
                return False
        return isinstance(tag, bytes) and hmac.compare_digest(self.mac(purpose, data), tag)


class EpochKeys:
    """Keys of one epoch, derived from its plaintext data key."""

    def __init__(self, epoch_id: str, dek: bytes, *, zstd_level: int = 1):
        if len(dek) != 32:
            raise ValueError("data keys are 32 bytes")
        self.epoch_id = epoch_id
        self.epoch_raw = bytes.fromhex(epoch_id)
        self.id_key = blake3.blake3(dek, derive_key_context=_CTX + "chunk id").digest()
        self.aead_key = blake3.blake3(dek, derive_key_context=_CTX + "aead").digest()
        seed = blake3.blake3(dek, derive_key_context=_CTX + "cdc seed").digest(8)
        # pyfastcdc shifts the seed left by one bit in a 64-bit C integer: keep it below 2**63.
        self.cdc_seed = (int.from_bytes(seed, "little") & 0x7FFFFFFFFFFFFFFF) | 1
        self.aead = AESGCM(self.aead_key)
        self.macs = MacKeys(dek)
        self.zstd_level = zstd_level
        self._tls = threading.local()

    # --- chunk ids ---------------------------------------------------------------
    def chunk_id(self, data) -> bytes:
        return blake3.blake3(data, key=self.id_key).digest()

    # --- compression contexts are not thread-safe: one per thread ----------------
    def _cctx(self) -> zstandard.ZstdCompressor:
        c = getattr(self._tls, "c", None)
        if c is None:
            c = self._tls.c = zstandard.ZstdCompressor(level=self.zstd_level)
        return c

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._tls, "d", None)
        if d is None:
            d = self._tls.d = zstandard.ZstdDecompressor()
        return d

    # --- blobs -----------------------------------------------------------------
    def _aad(self, chunk_id: bytes, codec: int, kind: int = KIND_DATA) -> bytes:
        return _BLOB_AAD.pack(b"LLB1", kind, codec, self.epoch_raw, chunk_id)

    def _compressed(self, data) -> bytes | None:
        n = len(data)
        if self.zstd_level == 0 or n < 512:
            return None
        c = self._cctx()
        if n >= 4 * SAMPLE:
            # Probe a slice first: incompressible data (media, encrypted, already compressed
            # dumps) then costs 1/16 of a full compression attempt.
            probe = c.compress(memoryview(data)[n // 2:n // 2 + SAMPLE])
            if len(probe) > SAMPLE - SAMPLE // 32:
                return None
        z = c.compress(data)
        return z if len(z) < n - n // 32 else None

    def seal_chunk(self, chunk_id: bytes, data, *, compress: bool = True) -> bytearray:
        """codec (1) | nonce (12) | AES-GCM(payload) | tag (16); AAD binds kind, codec, epoch, chunk id."""
        z = self._compressed(data) if compress else None
        codec, src = (CODEC_ZSTD, z) if z is not None else (CODEC_RAW, data)
        blob = bytearray(BLOB_OVERHEAD + len(src))
        blob[0] = codec
        nonce = os.urandom(NONCE)
        blob[1:BLOB_HEADER] = nonce
        self.aead.encrypt_into(nonce, src, self._aad(chunk_id, codec), memoryview(blob)[BLOB_HEADER:])
        return blob

    def open_chunk(self, chunk_id: bytes, blob, raw_len: int | None = None) -> bytes:
        """Decrypt, decompress and re-hash a blob. Raises DamagedData on any mismatch."""
        if len(blob) < BLOB_OVERHEAD:
            raise DamagedData("blob too short", chunk=chunk_id.hex())
        mv = memoryview(blob)
        codec = mv[0]
        if codec not in (CODEC_RAW, CODEC_ZSTD):
            raise DamagedData(f"unknown codec {codec}", chunk=chunk_id.hex())
        try:
            payload = self.aead.decrypt(mv[1:BLOB_HEADER], mv[BLOB_HEADER:], self._aad(chunk_id, codec))
        except InvalidTag:
            raise DamagedData("authentication failed (bytes changed or wrong key)",
                              chunk=chunk_id.hex()) from None
        if codec == CODEC_ZSTD:
            try:
                data = self._dctx().decompress(payload, max_output_size=raw_len or 0)
            except zstandard.ZstdError as exc:
                raise DamagedData(f"decompression failed: {exc}", chunk=chunk_id.hex()) from None
        else:
            data = payload
        if raw_len is not None and len(data) != raw_len:
            raise DamagedData("wrong length after decoding", chunk=chunk_id.hex())
        if self.chunk_id(data) != chunk_id:
            raise DamagedData("content hash does not match chunk id", chunk=chunk_id.hex())
        return data

    # --- small authenticated objects (manifests, pack directories) --------------
    def seal_object(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self.aead.encrypt(nonce, plaintext, aad)

    def open_object(self, sealed: bytes, aad: bytes, what: str) -> bytes:
        if len(sealed) < NONCE + TAG:
            raise DamagedData(f"{what}: truncated", obj=what)
        try:
            return self.aead.decrypt(sealed[:NONCE], sealed[NONCE:], aad)
        except InvalidTag:
            raise DamagedData(f"{what}: authentication failed (bytes changed)", obj=what) from None
