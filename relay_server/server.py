"""The relay's network edge: websockets in, :class:`RelayCore` actions out.

Everything here only moves data: it authenticates the first message, rate-limits, parses, feeds
the core, and carries out the actions it returns (send, close, timers, call log, log lines).
Each connection has its own outbound queue, so a terminal that stops reading never slows the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from common import protocol
from common.logs import event
from relay_server.config import RelayConfig
from relay_server.core import (
    Action,
    CallRecord,
    CancelTimer,
    Close,
    Event,
    Key,
    RelayCore,
    Send,
    StartTimer,
)
from relay_server.metrics import RelayMetrics
from relay_server.store import CallLog

log = logging.getLogger("relay")

OUTBOX_LIMIT = 256  # queued messages before a terminal that does not read is disconnected
TICK_SECONDS = 15.0  # presence re-evaluation for office hours
CLOSE_SECONDS = 3.0  # longest wait for a closing handshake before the socket is dropped


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


class RelayServer:
    """One relay: websocket server, core, call log and metrics.

    Args:
        config: validated relay config.
        clock: wall-clock time source (``time.time``); injected for tests of office hours.
    """

    def __init__(self, config: RelayConfig, clock: Any = time.time) -> None:
        self.config = config
        self.clock = clock
        self.core = RelayCore(config, lambda: uuid.uuid4().hex[:12])
        self.metrics = RelayMetrics(self.core)
        self.calllog = CallLog(config.resolve(config.database) or ":memory:")
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="calllog")
        self.conns: dict[str, Conn] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._pending_db: set[asyncio.Future[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()  # close handshakes under way (kept referenced)
        self.started_at = time.time()
        # Whoever watches the relay (the fleet page) sees every batch of the core's actions, after they are done.
        self.observers: list[Callable[[list[Action]], None]] = []
        self.fleet: Any = None  # relay_server.admin.service.FleetService when [fleet] enabled
        self.host = config.host
        self.port = config.port

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "wss" if self.config.tls_cert else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    async def start(self, host: str | None = None, port: int | None = None) -> RelayServer:
        ssl_ctx = None
        if self.config.tls_cert:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_ctx.load_cert_chain(self.config.resolve(self.config.tls_cert),
                                    self.config.resolve(self.config.tls_key))
        origins: list[str | None] | None = None
        if self.config.allowed_origins:
            origins = [*self.config.allowed_origins, None]  # None: non-browser clients send no Origin
        self._server = await serve(
            self._handle, host or self.config.host, self.config.port if port is None else port,
            process_request=self._http, origins=origins,  # type: ignore[arg-type]
            ssl=ssl_ctx, max_size=max(self.config.max_message_bytes * 4, 1 << 20),
            ping_interval=10, ping_timeout=20, close_timeout=CLOSE_SECONDS, server_header=None,
            # No permessage-deflate: its zlib state costs ~52 KiB per connection (measured, docs/performance.md)
            # while our messages are small JSON; clients that offer it simply fall back to plain frames.
            compression=None,
        )
        sock = next(iter(self._server.sockets))
        self.host, self.port = sock.getsockname()[:2]
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())
        if self.config.fleet.enabled:
            from relay_server.admin.service import FleetService

            self.fleet = await FleetService(self).start()
        event(log, "relay_started", url=self.url, terminals=len(self.config.terminals),
              departments=len(self.config.departments))
        return self

    async def close(self) -> None:
        """End every call with reason ``shutdown``, close every connection, stop listening."""
        if self._server is None:
            return
        if self.fleet is not None:
            await self.fleet.close()
            self.fleet = None
        self._apply(self.core.shutdown(self.clock()))
        for conn in list(self.conns.values()):
            conn.closed = True
        writers = [c.writer for c in self.conns.values() if c.writer is not None]
        if writers:
            await asyncio.wait(writers, timeout=2)
        self._server.close(close_connections=True)
        await self._server.wait_closed()
        self._server = None
        if self._ticker:
            self._ticker.cancel()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._pending_db:
            await asyncio.wait(self._pending_db, timeout=5)
        self._db_thread.submit(self.calllog.close).result()
        self._db_thread.shutdown()
        event(log, "relay_stopped")

    async def __aenter__(self) -> RelayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self._apply(self.core.tick(self.clock()))

    # -- HTTP endpoints ----------------------------------------------------------------------
    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            body = json.dumps({"status": "ok", "uptime_s": round(time.time() - self.started_at, 1),
                               **self.core.stats()}).encode()
            return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                                ("Content-Length", str(len(body)))]), body)
        if path == "/metrics":
            body = self.metrics.render()
            return Response(200, "OK", Headers([("Content-Type", "text/plain; version=0.0.4"),
                                                ("Content-Length", str(len(body)))]), body)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found: use a websocket, /healthz or /metrics\n")
        return None

    # -- one connection ----------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = ws.remote_address[0] if ws.remote_address else "?"
        terminal = await self._authenticate(ws, peer)
        if terminal is None:
            return
        conn = Conn(ws, terminal)
        old = self.conns.get(terminal)
        if old is not None:
            old.replaced = True
            event(log, "terminal_replaced", terminal=terminal, peer=peer)
            old.closed = True
            self._close_soon(old, protocol.CLOSE_REPLACED, "replaced by a newer connection of this terminal")
        self.conns[terminal] = conn
        self._apply(self.core.connect(terminal, self.clock()))
        bucket = TokenBucket(self.config.rate_limit, self.config.rate_burst, time.monotonic())
        strikes = 0
        closing = False
        try:
            async for raw in ws:
                if closing:
                    # Keep reading (and dropping) until the peer's close frame arrives: a flood leaves
                    # websockets' receive queue above its high-water mark with reading paused, so a
                    # handler that stopped iterating would wait out close_timeout for the handshake.
                    continue
                if not bucket.take(time.monotonic()):
                    strikes += 1
                    self._error(conn, protocol.ProtocolError(
                        "rate_limited", f"more than {self.config.rate_limit:g} messages/s; message dropped"))
                    if strikes >= self.config.rate_strikes:
                        event(log, "terminal_rate_limited", logging.WARNING, terminal=terminal)
                        await self._flush_and_close(conn, protocol.CLOSE_RATE_LIMITED, "rate limit exceeded")
                        closing = True
                    continue
                strikes = 0
                self._on_raw(conn, raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not conn.replaced:
                conn.closed = True
                if self.conns.get(terminal) is conn:
                    del self.conns[terminal]
                    self._apply(self.core.disconnect(terminal, self.clock()))

    async def _authenticate(self, ws: ServerConnection, peer: str) -> str | None:
        """Wait for ``hello``; on any problem send one ``unauthorized`` error and close with 4401."""
        problem, ref = "", None
        try:
            raw = await asyncio.wait_for(ws.recv(), self.config.hello_timeout)
            msg = protocol.parse(raw, max_bytes=self.config.max_message_bytes)
            ref = msg["type"]
            if msg["type"] != "hello":
                problem = f"the first message must be 'hello', got '{msg['type']}'"
            elif msg["protocol"] != protocol.PROTOCOL_VERSION:
                problem = f"protocol {msg['protocol']} is not supported; this relay speaks {protocol.PROTOCOL_VERSION}"
            else:
                terminal = self.core.authenticate(msg["token"])
                if terminal is not None:
                    return terminal
                problem = "unknown token"
        except TimeoutError:
            problem = f"no 'hello' within {self.config.hello_timeout:g} s"
        except protocol.ProtocolError as err:
            problem, ref = f"expected 'hello': {err.message}", err.ref
        except websockets.ConnectionClosed:
            return None
        event(log, "auth_failed", logging.WARNING, peer=peer, problem=problem)
        self.metrics.on_error("unauthorized")
        try:
            await ws.send(protocol.encode(protocol.error("unauthorized", problem, ref)))
            await ws.close(protocol.CLOSE_UNAUTHORIZED, "unauthorized")
        except websockets.ConnectionClosed:
            pass
        return None

    def _on_raw(self, conn: Conn, raw: str | bytes) -> None:
        try:
            msg = protocol.parse(raw, max_bytes=self.config.max_message_bytes)
            self.metrics.on_message(msg["type"])
            actions = self.core.receive(conn.terminal, msg, self.clock())
        except protocol.ProtocolError as err:
            self._error(conn, err)
            return
        self._apply(actions)

    def _error(self, conn: Conn, err: protocol.ProtocolError) -> None:
        self.metrics.on_error(err.code)
        event(log, "error_reply", logging.INFO, terminal=conn.terminal, code=err.code, ref=err.ref,
              message=err.message)
        self._enqueue(conn, err.to_message())

    # -- carrying out actions ------------------------------------------------------------------
    def inject(self, actions: list[Action]) -> None:
        """Carry out actions that come from outside the core (the fleet page's tests and disconnects)."""
        self._apply(actions)

    async def call_records(self, start: float, end: float) -> list[CallRecord]:
        """Finished calls from the call log, read on its own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, self.calllog.records, start, end)

    def _apply(self, actions: list[Action]) -> None:
        self._carry_out(actions)
        for observer in self.observers:
            try:
                observer(actions)
            except Exception:
                log.exception("relay observer failed")

    def _carry_out(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                conn = self.conns.get(a.to)
                if conn is not None:
                    self._enqueue(conn, a.msg)
            elif isinstance(a, StartTimer):
                old = self._timers.pop(a.key, None)
                if old:
                    old.cancel()
                self._timers[a.key] = asyncio.get_running_loop().call_later(a.delay, self._fire, a.key)
            elif isinstance(a, CancelTimer):
                handle = self._timers.pop(a.key, None)
                if handle:
                    handle.cancel()
            elif isinstance(a, CallRecord):
                self.metrics.on_record(a)
                fut = asyncio.get_running_loop().run_in_executor(self._db_thread, self.calllog.record, a)
                self._pending_db.add(fut)
                fut.add_done_callback(self._db_done)
            elif isinstance(a, Event):
                # After the sends: the writer tasks just created run first, the log line's I/O after them.
                asyncio.get_running_loop().call_soon(self._log_event, a)
            elif isinstance(a, Close):
                conn = self.conns.get(a.to)
                if conn is not None:
                    self._close_soon(conn, a.code, a.reason)

    def _log_event(self, a: Event) -> None:
        self.metrics.on_event(a)
        event(log, a.name, **a.fields)

    def _db_done(self, fut: asyncio.Future[None]) -> None:
        self._pending_db.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("call log write failed: %s", fut.exception())

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._apply(self.core.timer(key, self.clock()))

    def _enqueue(self, conn: Conn, msg: dict[str, Any]) -> None:
        if conn.closed:
            return
        if len(conn.outbox) >= OUTBOX_LIMIT:
            event(log, "terminal_not_reading", logging.WARNING, terminal=conn.terminal)
            conn.closed = True
            self._close_soon(conn, 1008, "not reading its messages")
            return
        conn.outbox.append(protocol.encode(msg))
        if conn.writer is None:
            conn.writer = asyncio.get_running_loop().create_task(self._write(conn))

    async def _write(self, conn: Conn) -> None:
        """Send the outbox in order; the task ends when it is empty (a new one starts with the next message)."""
        try:
            while conn.outbox:
                await conn.ws.send(conn.outbox.popleft())
        except websockets.ConnectionClosed:
            conn.outbox.clear()
        finally:
            conn.writer = None

    def _close_soon(self, conn: Conn, code: int, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._close(conn.ws, code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(ws: ServerConnection, code: int, reason: str) -> None:
        """Close with ``code``; a peer whose socket is full never reads the close frame, so drop it after 3 s."""
        try:
            await asyncio.wait_for(ws.close(code, reason), CLOSE_SECONDS)
        except TimeoutError:
            ws.transport.abort()

    async def _flush_and_close(self, conn: Conn, code: int, reason: str) -> None:
        """Send what is queued, then start the closing handshake without waiting for it to finish."""
        conn.closed = True
        if conn.writer is not None:
            await asyncio.wait([conn.writer], timeout=2)
        self._close_soon(conn, code, reason)
