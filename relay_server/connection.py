"""One websocket connection to the relay, below the protocol: rate, per-connection outbox, frames and limits.

:class:`RelayConnection` is websockets' server connection taught three things the relay needs: it counts itself
per address (connection caps, a silent socket over a cap dropped), it remembers which frames were binary (so text
that is not UTF-8 gets a ``bad_message`` instead of a close 1007), and its protocol answers a frame over the size
limit with an ``error`` before closing. :class:`Conn` is one authenticated terminal's outbox; :class:`TokenBucket` its
message rate. :class:`relay_server.server.RelayServer` uses them; nothing here knows about calls.
"""

from __future__ import annotations

import asyncio
import resource
from collections import deque
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from common import protocol

if TYPE_CHECKING:
    from relay_server.server import RelayServer

SILENT_OVER_LIMIT_SECONDS = 1.0  # a socket over a connection cap that sends no request is dropped after this


class TokenBucket:
    """Pure rate limiter: ``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Conn:
    """One authenticated connection. Small on purpose: an idle terminal holds no task and an empty deque."""

    __slots__ = ("ws", "terminal", "outbox", "writer", "replaced", "closed")

    def __init__(self, ws: ServerConnection, terminal: str) -> None:
        self.ws = ws
        self.terminal = terminal
        self.outbox: deque[str] = deque()
        self.writer: asyncio.Task[None] | None = None  # exists only while there is something to send
        self.replaced = False
        self.closed = False  # no more messages are accepted; what is queued still goes out


class RelayProtocol(ServerProtocol):
    """websockets' server protocol, except that a message over the size limit is answered before the close.

    websockets must fail a connection whose frame is larger than it may buffer (RFC 6455 7.4.1, 1009); the
    sender still gets one ``error`` saying why (``too_large``, or ``unauthorized`` and 4401 before ``hello``).
    """

    authenticated = False

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG and self.state is State.OPEN:
            limit = self.max_message_size
            if self.authenticated:
                err = protocol.error("too_large", f"message over {limit} bytes; the connection is closed")
            else:
                err = protocol.error(
                    "unauthorized", f"the first message must be a 'hello' of at most {limit} bytes"
                )
                code, reason = protocol.CLOSE_UNAUTHORIZED, "unauthorized"
            self.send_frame(Frame(Opcode.TEXT, protocol.encode(err).encode()))
        super().fail(code, reason)


class RelayConnection(ServerConnection):
    """A server connection that counts itself per address and remembers which frames were binary.

    The relay reads frames undecoded (``recv(decode=False)``) so that text that is not UTF-8 gets a
    ``bad_message`` instead of websockets' close 1007; ``binary`` says, in order, which messages were binary.
    """

    relay: RelayServer  # set on the per-server subclass made in RelayServer.start

    def __init__(self, proto: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        proto.__class__ = RelayProtocol  # same state, our fail(); see RelayProtocol
        super().__init__(proto, *args, **kwargs)
        self.binary: deque[bool] = deque()
        self.peer = "?"
        self.counted = False

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.binary.append(event.opcode is Opcode.BINARY)
        super().process_event(event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self.counted = True
        self.relay._count(self.peer, +1)
        super().connection_made(transport)
        if self.relay._over_limit(self.peer):
            # Over a cap: a client that talks gets HTTP 503 from _http; one that stays silent would hold its
            # socket until the handshake times out, so it is dropped after a second.
            self.loop.call_later(SILENT_OVER_LIMIT_SECONDS, self._drop_if_silent)

    def _drop_if_silent(self) -> None:
        if self.request is None and self.counted:
            self.relay.metrics.on_refused_connection()
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.relay._count(self.peer, -1)
        super().connection_lost(exc)

    async def read(self) -> str | bytes:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one.

        Raises:
            ProtocolError: a text frame that is not valid UTF-8 (the connection stays open).
            ConnectionClosed: the connection is gone.
        """
        data = await self.recv(decode=False)
        if self.binary and self.binary.popleft():
            return data
        try:
            return data.decode()
        except UnicodeDecodeError as err:
            raise protocol.ProtocolError(
                "bad_message", f"text frame is not valid UTF-8 ({err.reason} at byte {err.start})"
            ) from err


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft if soft != resource.RLIM_INFINITY else 1 << 20)
