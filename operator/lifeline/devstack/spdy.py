"""The server side of SPDY/3.1 as Kubernetes' streaming uses it, for the process kubelet's exec.

The API server speaks SPDY to a kubelet for ``exec`` (it translates a client's websocket into
SPDY on the way): after an HTTP ``101 Switching Protocols`` the peer opens one stream per channel
(``streamtype: error|stdin|stdout|stderr|resize``), we answer each with SYN_REPLY, then write a
command's output as DATA frames and end each stream with FIN. Only what that exchange needs is
here: SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, PING, GOAWAY; SETTINGS and WINDOW_UPDATE are read
and ignored (the peer does not enforce flow control on these few streams).
"""
from __future__ import annotations

import asyncio
import struct
import zlib

from .spdy_dictionary import DICTIONARY

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
MAX_DATA = 16 * 1024


class SpdyError(ConnectionError):
    pass


class Stream:
    def __init__(self, session: "Session", stream_id: int, headers: dict[str, str]):
        self.session = session
        self.id = stream_id
        self.headers = headers
        self.incoming: asyncio.Queue[bytes | None] = asyncio.Queue()  # None: the peer sent FIN
        self.closed = False

    @property
    def type(self) -> str:
        return self.headers.get("streamtype", "")

    async def write(self, data: bytes) -> None:
        for i in range(0, len(data), MAX_DATA):
            await self.session.data(self.id, data[i:i + MAX_DATA])

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.session.data(self.id, b"", fin=True)


class Session:
    """One SPDY connection on an upgraded socket; ``streams`` receives the peer's new streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self._lock = asyncio.Lock()
        self.streams: asyncio.Queue[Stream | None] = asyncio.Queue()
        self._by_id: dict[int, Stream] = {}

    # ---- writing ---------------------------------------------------------------------------------

    async def _send(self, frame: bytes) -> None:
        async with self._lock:
            self.writer.write(frame)
            await self.writer.drain()

    async def _control(self, kind: int, payload: bytes, flags: int = 0) -> None:
        head = struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload))
        await self._send(head + payload)

    async def data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        head = struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data))
        await self._send(head + data)

    def _headers(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    async def reply(self, stream: Stream) -> None:
        await self._control(SYN_REPLY, struct.pack(">I", stream.id) + self._headers({}))

    async def goaway(self) -> None:
        await self._control(GOAWAY, struct.pack(">II", 0, 0))

    # ---- reading ---------------------------------------------------------------------------------

    def _parse_headers(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block)
        count, = struct.unpack_from(">I", raw, 0)
        pos, out = 4, {}
        for _ in range(count):
            n, = struct.unpack_from(">I", raw, pos)
            name = raw[pos + 4:pos + 4 + n].decode()
            pos += 4 + n
            v, = struct.unpack_from(">I", raw, pos)
            out[name] = raw[pos + 4:pos + 4 + v].decode()
            pos += 4 + v
        return out

    async def serve(self) -> None:
        """Read frames until the peer closes; new streams go to ``streams`` (then None at the end)."""
        try:
            while True:
                head = await self.reader.readexactly(8)
                first, second = struct.unpack(">II", head)
                flags, length = second >> 24, second & 0xFFFFFF
                payload = await self.reader.readexactly(length) if length else b""
                if first & 0x80000000:
                    await self._on_control((first >> 16) & 0x7FFF, first & 0xFFFF, flags, payload)
                else:
                    stream = self._by_id.get(first & 0x7FFFFFFF)
                    if stream is not None:
                        if payload:
                            stream.incoming.put_nowait(payload)
                        if flags & FLAG_FIN:
                            stream.incoming.put_nowait(None)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for stream in self._by_id.values():
                stream.incoming.put_nowait(None)
            self.streams.put_nowait(None)

    async def _on_control(self, version: int, kind: int, flags: int, payload: bytes) -> None:
        if version != VERSION:
            raise SpdyError(f"SPDY version {version} is not spoken here")
        if kind == SYN_STREAM:
            stream_id, = struct.unpack_from(">I", payload, 0)
            stream = Stream(self, stream_id & 0x7FFFFFFF, self._parse_headers(payload[10:]))
            self._by_id[stream.id] = stream
            await self.reply(stream)
            if flags & FLAG_FIN:
                stream.incoming.put_nowait(None)
            self.streams.put_nowait(stream)
        elif kind == HEADERS:
            self._parse_headers(payload[4:])  # keeps the shared zlib stream in step
        elif kind == PING:
            await self._control(PING, payload)
        elif kind == RST_STREAM:
            stream_id, = struct.unpack_from(">I", payload, 0)
            stream = self._by_id.get(stream_id & 0x7FFFFFFF)
            if stream is not None:
                stream.closed = True
                stream.incoming.put_nowait(None)
        elif kind == GOAWAY:
            raise ConnectionError("peer sent GOAWAY")
        # SETTINGS, WINDOW_UPDATE: nothing to do


__all__ = ["Session", "SpdyError", "Stream"]
