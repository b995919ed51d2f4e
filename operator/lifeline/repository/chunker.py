"""Content-defined chunking of byte streams (FastCDC via pyfastcdc).

``chunk_stream`` reads a stream in large blocks and yields chunks as ``bytes``.
The result is exactly what FastCDC gives on the whole stream at once, so block boundaries never
move cut points: a cut is accepted when the chunker could see ``max_size`` bytes after the chunk's
start, at end of stream, or when it was found before the end of the data seen. FastCDC scans a
chunk's bytes in order and stops at the first match, with the strict mask up to ``avg_size`` and the
loose one after; with fewer bytes than that it scans them all with the strict one, as it would with
more. So only a cut forced by the end of the data can move. Accepting found cuts keeps the uncut
tail, which each round copies into the next buffer, about one chunk long rather than ``max_size``.
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

import pyfastcdc

from .layout import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN

READ_BLOCK = 4 * 1024 * 1024


class Chunker:
    def __init__(self, seed: int, *, min_size: int = CHUNK_MIN, avg_size: int = CHUNK_AVG,
                 max_size: int = CHUNK_MAX):
        self.min_size, self.avg_size, self.max_size = min_size, avg_size, max_size
        self._cdc = pyfastcdc.FastCDC(avg_size, min_size=min_size, max_size=max_size,
                                      normalized_chunking=1, seed=seed & 0x7FFFFFFFFFFFFFFF)

    def chunk_stream(self, readinto, *, block: int = READ_BLOCK, size_hint: int | None = None
                     ) -> Iterator[memoryview]:
        """Yield the chunks of a stream as read-only memoryviews (zero copy).

        ``readinto(buffer) -> int`` fills a buffer (0 at end of stream). Each round
        reads into a fresh buffer that starts with the previous round's uncut tail,
        so the views handed out stay valid and are never written again.
        """
        tail = memoryview(b"")
        eof = False
        consumed = 0  # bytes read from the source so far
        while not eof:
            want = block
            if size_hint is not None and consumed <= size_hint:
                want = max(1, min(block, size_hint - consumed + 1))  # +1 to see the end
            buf = bytearray(len(tail) + want)
            buf[:len(tail)] = tail
            mv = memoryview(buf)
            n = len(tail)
            while n < len(buf):
                got = readinto(mv[n:])
                if not got:
                    eof = True
                    break
                n += got
            consumed += n - len(tail)
            data = mv[:n].toreadonly()
            pos = 0
            if n:
                for c in self._cdc.cut_buf(data):
                    if not eof and c.offset + c.length >= n and c.offset + self.max_size > n:
                        break  # cut by the end of the data, not found: keep it for the next round
                    yield data[c.offset:c.offset + c.length]
                    pos = c.offset + c.length
            tail = data[pos:n]
        if len(tail):  # not reached: at end of stream every byte is cut
            yield tail

    def chunk_file(self, f: BinaryIO, size_hint: int | None = None) -> Iterator[memoryview]:
        return self.chunk_stream(f.readinto, size_hint=size_hint)


def reader_of(read) -> "callable":
    """Adapt a ``read(n) -> bytes`` function to the ``readinto`` interface."""
    def readinto(buf: memoryview) -> int:
        data = read(len(buf))
        buf[:len(data)] = data
        return len(data)
    return readinto
