"""Per-epoch keys, keyed chunk ids, and sealed (compressed + encrypted) blobs.

One *epoch* has one 256-bit data key (DEK), wrapped by a key provider and stored
opaque under ``keys/<epoch>``. From the DEK we derive, with BLAKE3's key
derivation mode, independent sub-keys:

* ``id_key``   — keys the BLAKE3 hash that names chunks (ids leak nothing about content
  to someone without the key, and differ between epochs);
* ``aead_key`` — key of the repository's cipher (AES-256-GCM, or SM4-GCM: :data:`CIPHERS`) for chunk
  blobs, pack directories, manifests and log segments;
* ``cdc_seed`` — seed of the FastCDC gear table, so chunk boundaries do not
  fingerprint known content either;
* ``macs``     — keys of the MACs that authenticate the repository's clear objects (config,
  catalogue head, index segments), see :class:`MacKeys`.
"""
from __future__ import annotations

import functools
import hmac
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CipherUnavailable, DamagedData

NONCE = 12
TAG = 16
BLOB_HEADER = 1 + NONCE  # header byte (cipher id << 4 | codec) + nonce
BLOB_OVERHEAD = BLOB_HEADER + TAG

CODEC_RAW = 0
CODEC_ZSTD = 1

_CTX = "lifeline.io 2026-11 repository v1 "

KIND_DATA = 1
_BLOB_AAD = struct.Struct(">4sBB16s32s")  # b"LLB1", kind, header byte (cipher id << 4 | codec), epoch id, chunk id

SAMPLE = 64 * 1024  # compressibility probe for large chunks


# --- ciphers ----------------------------------------------------------------------
AES_256_GCM = "aes-256-gcm"
SM4_GCM = "sm4-gcm"
DEFAULT_CIPHER = AES_256_GCM


@dataclass(frozen=True)
class CipherSpec:
    """One cipher a repository can be created with (``config["encryption"]``; it never changes).

    ``id`` is the high nibble of every blob's header byte; ``label`` is prepended to every AAD
    (empty for AES-256-GCM, so repositories written before SM4 existed are unchanged). Both bind
    the cipher into what is authenticated: a blob or object cannot be re-labelled as the other's."""

    name: str
    id: int
    key_context: str  # BLAKE3 derive_key context (after the common prefix) of the sub-key
    key_len: int
    label: bytes
    what: str
    aead: Callable[[bytes], object]  # key -> a one-shot AEAD with AESGCM's encrypt/decrypt
    stream: Callable[[bytes], object]  # key -> the block cipher for cryptography's streaming GCM


class SM4GCM:
    """SM4 in GCM mode (96-bit nonce, 128-bit tag; RFC 8998), with the interface of ``AESGCM``
    that this module uses. cryptography has no one-shot SM4 AEAD class, so it goes through the
    streaming ``Cipher`` API (OpenSSL's EVP ``sm4-gcm``); the tag is checked before any
    plaintext is returned."""

    def __init__(self, key: bytes):
        if len(key) != 16:
            raise ValueError("SM4 keys are 16 bytes")
        self._key = bytes(key)

    def _encryptor(self, nonce, aad):
        e = Cipher(algorithms.SM4(self._key), modes.GCM(bytes(nonce))).encryptor()
        e.authenticate_additional_data(aad)
        return e

    def encrypt(self, nonce, data, aad) -> bytes:
        e = self._encryptor(nonce, aad)
        return e.update(data) + e.finalize() + e.tag

    def encrypt_into(self, nonce, data, aad, buf) -> int:
        """ciphertext | tag into ``buf`` (exactly ``len(data) + 16`` bytes)."""
        n = len(data)
        out = memoryview(buf)
        if len(out) != n + TAG:
            raise ValueError("buffer must be len(data) + 16 bytes")
        e = self._encryptor(nonce, aad)
        e.update_into(data, out)  # writes n bytes; the 16 after them leave OpenSSL its block of room
        e.finalize()
        out[n:] = e.tag
        return n + TAG

    def decrypt(self, nonce, data, aad) -> bytes:
        mv = memoryview(data)
        if len(mv) < TAG:
            raise InvalidTag()
        d = Cipher(algorithms.SM4(self._key), modes.GCM(bytes(nonce), bytes(mv[len(mv) - TAG:]))).decryptor()
        d.authenticate_additional_data(aad)
        plain = d.update(mv[:len(mv) - TAG])
        return plain + d.finalize()  # raises InvalidTag: the plaintext is dropped


CIPHERS: dict[str, CipherSpec] = {
    AES_256_GCM: CipherSpec(AES_256_GCM, 0, "aead", 32, b"", "AES-256 in GCM mode", AESGCM, algorithms.AES),
    # (algorithms.SM4 looked up when used: a build without it fails in cipher_problem, not on import)
    SM4_GCM: CipherSpec(SM4_GCM, 1, "sm4-gcm aead", 16, b"LLSM4GCM", "SM4, GB/T 32907, in GCM mode", SM4GCM,
                        lambda key: algorithms.SM4(key)),
}
_BY_ID = {c.id: c for c in CIPHERS.values()}


# RFC 8998, appendix A.1 (SM4-GCM): the build's SM4-GCM must reproduce it before a repository uses it.
_SM4_GCM_KAT = tuple(bytes.fromhex(h) for h in (
    "0123456789ABCDEFFEDCBA9876543210",
    "00001234567800000000ABCD",
    "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2",
    "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFF"
    "EEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
    "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735D82710CA5C22F0CCFA7CBF93D496AC15"
    "A56834CBCF98C397B4024A2691233B8D83DE3541E4C2B58177E065A9BF7B62EC",
))


def _openssl() -> str:
    try:
        import cryptography
        from cryptography.hazmat.backends.openssl.backend import backend

        return f"cryptography {cryptography.__version__} with {backend.openssl_version_text()}"
    except Exception:  # noqa: BLE001 - only for a message
        return "this build's cryptography/OpenSSL"


@functools.cache
def cipher_problem(name: str) -> str | None:
    """Why this lifeline cannot use cipher ``name`` (None: it can). SM4 depends on the linked OpenSSL."""
    if name not in CIPHERS:
        return f"unknown cipher {name!r} (known: {', '.join(CIPHERS)})"
    if name != SM4_GCM:
        return None
    key, nonce, aad, plain, expected = _SM4_GCM_KAT
    try:
        sealed = SM4GCM(key).encrypt(nonce, plain, aad)
    except Exception as exc:  # noqa: BLE001 - UnsupportedAlgorithm, AttributeError (no algorithms.SM4), ...
        return (f"{_openssl()} has no SM4-GCM ({type(exc).__name__}: {exc}). Use a lifeline whose cryptography "
                "links an OpenSSL with SM4-GCM (the cryptography wheels from PyPI, which the lifeline image "
                "installs, do)")
    if sealed != expected:
        return f"{_openssl()} computed a wrong SM4-GCM known answer (RFC 8998 A.1): refusing to use it"
    return None


def require_cipher(name: str) -> CipherSpec:
    """The cipher's spec, or CipherUnavailable (unknown name, or SM4 missing from the linked OpenSSL)."""
    problem = cipher_problem(name)
    if problem:
        raise CipherUnavailable(f"cannot encrypt with {name}: {problem}")
    return CIPHERS[name]


class MacKeys:
    """Keys that authenticate the repository's own description, derived from one data key.

    Storage may read and write every object, so the clear objects that steer a command (the
    config, the catalogue head, the index) carry a keyed BLAKE3 MAC. The keys come from a data
    key like every other sub-key, so they die with it when its epoch is crypto-shredded."""

    PURPOSES = ("config", "catalogue", "index", "shred")  # shred: an immutable repository's tombstones

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
    """Keys of one epoch, derived from its plaintext data key, for the repository's cipher.

    The data key is 32 bytes whatever the cipher (the key providers are unchanged); the cipher's
    key is derived from it with its own context: 32 bytes for AES-256-GCM, 16 for SM4-GCM."""

    def __init__(self, epoch_id: str, dek: bytes, *, zstd_level: int = 1, cipher: str = DEFAULT_CIPHER):
        if len(dek) != 32:
            raise ValueError("data keys are 32 bytes")
        spec = require_cipher(cipher)
        self._open_with(spec, epoch_id, blake3.blake3(dek, derive_key_context=_CTX + "chunk id").digest(),
                        blake3.blake3(dek, derive_key_context=_CTX + spec.key_context).digest(spec.key_len),
                        zstd_level)
        seed = blake3.blake3(dek, derive_key_context=_CTX + "cdc seed").digest(8)
        # pyfastcdc shifts the seed left by one bit in a 64-bit C integer: keep it below 2**63.
        self.cdc_seed = (int.from_bytes(seed, "little") & 0x7FFFFFFFFFFFFFFF) | 1
        self.macs = MacKeys(dek)

    def _open_with(self, spec, epoch_id: str, id_key: bytes, aead_key: bytes, zstd_level: int) -> None:
        self.cipher = spec.name
        self._spec = spec
        self._label = spec.label
        self._hdr = spec.id << 4  # high nibble of every blob's header byte
        self.epoch_id = epoch_id
        self.epoch_raw = bytes.fromhex(epoch_id)
        self.id_key, self.aead_key = id_key, aead_key
        self.aead = spec.aead(aead_key)
        self.zstd_level = zstd_level
        self._tls = threading.local()

    def handover(self) -> tuple:
        """What opens this epoch's chunks (the chunk-id and cipher keys, not the data key, from which
        the repository's MAC keys also come), for a helper process of this command (a restore's
        writers): sent over its pipe, never written anywhere. :meth:`from_handover` takes it."""
        return self.epoch_id, self.cipher, self.id_key, self.aead_key, self.zstd_level

    @classmethod
    def from_handover(cls, state: tuple) -> "EpochKeys":
        """Keys that open and seal chunks only (no MAC keys, no chunker seed)."""
        epoch_id, cipher, id_key, aead_key, zstd_level = state
        keys = cls.__new__(cls)
        keys._open_with(require_cipher(cipher), epoch_id, id_key, aead_key, zstd_level)
        keys.cdc_seed = keys.macs = None
        return keys

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
    def _aad(self, chunk_id: bytes, header_byte: int, kind: int = KIND_DATA) -> bytes:
        return self._label + _BLOB_AAD.pack(b"LLB1", kind, header_byte, self.epoch_raw, chunk_id)

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
        """cipher id << 4 | codec (1) | nonce (12) | cipher(payload) | tag (16); the AAD binds the
        cipher (header byte and label), kind, codec, epoch and chunk id."""
        z = self._compressed(data) if compress else None
        codec, src = (CODEC_ZSTD, z) if z is not None else (CODEC_RAW, data)
        blob = bytearray(BLOB_OVERHEAD + len(src))
        blob[0] = hdr = self._hdr | codec
        nonce = os.urandom(NONCE)
        blob[1:BLOB_HEADER] = nonce
        self.aead.encrypt_into(nonce, src, self._aad(chunk_id, hdr), memoryview(blob)[BLOB_HEADER:])
        return blob

    def open_chunk(self, chunk_id: bytes, blob, raw_len: int | None = None) -> bytes:
        """Decrypt, decompress and re-hash a blob. Raises DamagedData on any mismatch."""
        if len(blob) < BLOB_OVERHEAD:
            raise DamagedData("blob too short", chunk=chunk_id.hex())
        mv = memoryview(blob)
        hdr = mv[0]
        codec = hdr & 0x0F
        if hdr >> 4 != self._spec.id:
            other = _BY_ID.get(hdr >> 4)
            raise DamagedData((f"blob says it is sealed with {other.name}, but this repository encrypts with "
                               f"{self.cipher} (a repository never mixes ciphers): it was changed or put here "
                               "from another repository") if other else f"unknown cipher/codec byte {hdr}",
                              chunk=chunk_id.hex())
        if codec not in (CODEC_RAW, CODEC_ZSTD):
            raise DamagedData(f"unknown codec {codec}", chunk=chunk_id.hex())
        try:
            payload = self.aead.decrypt(mv[1:BLOB_HEADER], mv[BLOB_HEADER:], self._aad(chunk_id, hdr))
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
    # nonce (12) | ciphertext | tag (16); the cipher's label is prepended to the caller's AAD.
    def seal_object(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self.aead.encrypt(nonce, plaintext, self._label + aad)

    def open_object_pieces(self, sealed, aad: bytes, what: str, piece: int = 1 << 20) -> list[bytes]:
        """:meth:`open_object`, its plaintext in pieces of ``piece`` bytes, every one authenticated
        (the tag checked) before any is returned: a reader that takes them in order may let each go
        as it passes it, where one plaintext would be held whole to the end."""
        if len(sealed) < NONCE + TAG:
            raise DamagedData(f"{what}: truncated", obj=what)
        sealed = memoryview(sealed)
        d = Cipher(self._spec.stream(self.aead_key), modes.GCM(bytes(sealed[:NONCE]), bytes(sealed[-TAG:]))).decryptor()
        d.authenticate_additional_data(self._label + aad)
        body = sealed[NONCE:-TAG]
        pieces = [d.update(body[i:i + piece]) for i in range(0, len(body), piece)]
        try:
            d.finalize()
        except InvalidTag:
            raise DamagedData(f"{what}: authentication failed (bytes changed)", obj=what) from None
        return pieces

    def open_object(self, sealed: bytes, aad: bytes, what: str) -> bytes:
        if len(sealed) < NONCE + TAG:
            raise DamagedData(f"{what}: truncated", obj=what)
        try:
            return self.aead.decrypt(sealed[:NONCE], sealed[NONCE:], self._label + aad)
        except InvalidTag:
            raise DamagedData(f"{what}: authentication failed (bytes changed)", obj=what) from None
