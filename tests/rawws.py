"""A raw websocket client over a plain TCP socket, for tests that must misbehave below the websockets library:
frames that announce more than they send, and a client that never answers the relay's close frame."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any
from urllib.parse import urlparse


class RawWs:
    """Handshake, then frames written and read by hand (client frames masked, as RFC 6455 5.3 requires)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawWs:
        u = urlparse(url)
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def frame(self, payload: bytes, opcode: int = 1, announce: int | None = None) -> None:
        """Write one final frame; ``announce`` claims another payload length (the payload is sent as given)."""
        n = len(payload) if announce is None else announce
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, msg: dict[str, Any]) -> None:
        self.frame(json.dumps(msg).encode())

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next frame from the relay as (opcode, payload); (-1, b"") at end of stream."""
        try:
            b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return -1, b""

    async def read_until_eof(self, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        """Every frame until the relay drops the TCP connection (never answering its close frame)."""
        frames: list[tuple[int, bytes]] = []
        while True:
            op, data = await self.read_frame(timeout)
            if op == -1:
                return frames
            frames.append((op, data))

    def close(self) -> None:
        self.writer.close()
