"""The relay's network edge: websockets in, :class:`RelayCore` actions out.

Everything here only moves data: it authenticates the first message, rate-limits, parses, feeds
the core, and carries out the actions it returns (send, close, timers, call log, log lines).
Each connection has its own outbound queue, so a terminal that stops reading never slows the others.

Why it is one module: :class:`RelayServer` is the one object that owns the relay's event-loop side — starting and
stopping, authentication, each connection's read loop, and carrying out the core's actions (outboxes, timers, the
call log's thread) all share its connection table, its timers and its shutdown. What stands alone is apart: the
connection plumbing (:mod:`relay_server.connection`), ``/healthz`` and ``/metrics`` (:mod:`relay_server.endpoints`),
the limits (:mod:`relay_server.guards`), the call log (:mod:`relay_server.store`), the metrics
(:mod:`relay_server.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from common import protocol
from common.logs import event
from relay_server.config import ConfigError, RelayConfig, insecure_terminals, is_loopback
from relay_server.connection import Conn, RelayConnection, RelayProtocol, TokenBucket, raise_fd_limit
from relay_server.core import (
    Action,
    CallRecord,
    CancelTimer,
    Close,
    Key,
    LogEvent,
    RelayCore,
    Send,
    StartTimer,
)
from relay_server.endpoints import endpoint_response
from relay_server.guards import AuthThrottle, LogLimiter, RepeatFilter
from relay_server.metrics import RelayMetrics
from relay_server.store import DurableCallLog

log = logging.getLogger("relay")

OUTBOX_LIMIT = 256  # queued messages before a terminal that does not read is disconnected
TICK_SECONDS = 15.0  # presence re-evaluation for office hours
CLOSE_SECONDS = 3.0  # longest wait for a closing handshake before the socket is dropped
PRE_HELLO_MAX_BYTES = 4096  # largest frame before authentication (a hello is ~150 bytes)
FD_RESERVE = 64  # file descriptors kept free of websockets (database, logs, accept() itself)
CALLLOG_RETRY_SECONDS = 5.0  # how often a call log that cannot be written is tried again


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
        # Opening the call log never fails: a damaged file is moved aside, an unwritable one retried later.
        self.calllog = DurableCallLog(config.resolve(config.database) or ":memory:", clock=clock)
        self.metrics = RelayMetrics(self.core, self.calllog)
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="calllog")
        self._db_flush: asyncio.Future[bool] | None = None
        self._db_retry: asyncio.TimerHandle | None = None
        self.calllog_retry_s = CALLLOG_RETRY_SECONDS
        self.conns: dict[str, Conn] = {}
        # Limits before trust: open sockets per address and in all, failed hellos per address, log lines.
        self.open_total = 0
        self.open_per_address: dict[str, int] = {}
        self.max_connections = config.max_connections
        self.auth_throttle = AuthThrottle()
        self.log_limiter = LogLimiter(60.0)
        self._repeat_filter = RepeatFilter(self.log_limiter)
        self._ws_logger = logging.getLogger("relay.websockets")
        # Message rate per terminal, kept across reconnects (a reconnect must not refill the bucket).
        self._buckets: dict[str, TokenBucket] = {}
        self._strikes: dict[str, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._pending_db: set[asyncio.Future[Any]] = set()
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
        """Listen on ``host:port`` (the config's unless given).

        Raises:
            ConfigError: a terminal uses a published (demo or placeholder) token while the relay would listen on
                an address other machines can reach.
        """
        bind = host or self.config.host
        insecure = insecure_terminals(self.config)
        if insecure and not is_loopback(bind):
            raise ConfigError(
                f"{self.config.path or 'config'}: terminal(s) {', '.join(insecure)} use a published demo or "
                f"placeholder token, and [server] host = '{bind}' is reachable from other machines; make real "
                "tokens with 'relay-server token TERMINAL_ID' (or listen on 127.0.0.1 only)"
            )
        self.max_connections = min(self.config.max_connections, raise_fd_limit() - FD_RESERVE)
        ssl_ctx = None
        if self.config.tls_cert:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_ctx.load_cert_chain(
                self.config.resolve(self.config.tls_cert), self.config.resolve(self.config.tls_key)
            )
        origins: list[str | None] | None = None
        if self.config.allowed_origins:
            origins = [*self.config.allowed_origins, None]  # None: non-browser clients send no Origin
        self._ws_logger.addFilter(self._repeat_filter)
        logging.getLogger("asyncio").addFilter(self._repeat_filter)  # accept() errors come once a minute
        conn_class = type("RelayConnection", (RelayConnection,), {"relay": self})
        self._server = await serve(
            self._handle,
            bind,
            self.config.port if port is None else port,
            process_request=self._http,
            origins=origins,  # type: ignore[arg-type]
            # Before hello only a small frame is read; _handle raises the limit once the terminal is known.
            ssl=ssl_ctx,
            max_size=PRE_HELLO_MAX_BYTES,
            create_connection=conn_class,
            logger=self._ws_logger,
            open_timeout=min(self.config.hello_timeout, 10.0),
            ping_interval=10,
            ping_timeout=20,
            close_timeout=CLOSE_SECONDS,
            server_header=None,
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
        event(
            log,
            "relay_started",
            url=self.url,
            terminals=len(self.config.terminals),
            departments=len(self.config.departments),
            max_connections=self.max_connections,
            calllog=self.calllog.status()["state"],
        )
        if insecure:
            event(
                log,
                "demo_tokens",
                logging.WARNING,
                terminals=",".join(insecure),
                note="published tokens accepted because the relay listens on loopback only",
            )
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
        if self._db_retry is not None:
            self._db_retry.cancel()
        if self._pending_db:
            await asyncio.wait(self._pending_db, timeout=5)
        self._db_thread.submit(self.calllog.close).result()
        self._db_thread.shutdown()
        self._ws_logger.removeFilter(self._repeat_filter)
        logging.getLogger("asyncio").removeFilter(self._repeat_filter)
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
    def _count(self, peer: str, delta: int) -> None:
        self.open_total += delta
        n = self.open_per_address.get(peer, 0) + delta
        if n > 0:
            self.open_per_address[peer] = n
        else:
            self.open_per_address.pop(peer, None)

    def _over_limit(self, peer: str) -> str:
        """Why one more socket from ``peer`` is refused, or ``""`` (this socket is already counted)."""
        if self.open_total > self.max_connections:
            return f"the relay has {self.max_connections} connections open"
        if self.open_per_address.get(peer, 0) > self.config.max_connections_per_address:
            return f"{self.config.max_connections_per_address} connections from {peer} are open"
        return ""

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """``/healthz`` and ``/metrics``, 404 for any other plain request, 503 over a connection cap (None: go on
        with the websocket handshake)."""
        response = endpoint_response(request, self.healthz, self.metrics.render)
        if response is not None:
            return response
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return connection.respond(
                HTTPStatus.NOT_FOUND, "not found: use a websocket, /healthz or /metrics\n"
            )
        peer = getattr(connection, "peer", "?")
        problem = self._over_limit(peer)
        if problem:
            self.metrics.on_refused_connection()
            self._limited_log("connection_refused", peer, logging.WARNING, peer=peer, problem=problem)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"too many connections: {problem}\n")
        return None

    def healthz(self) -> dict[str, Any]:
        """What ``/healthz`` reports: ok or degraded (the call log), uptime, terminals and calls."""
        status = self.calllog.status()
        return {
            "status": "ok" if status["state"] == "ok" else "degraded",
            "uptime_s": round(time.time() - self.started_at, 1),
            **self.core.stats(),
            "calllog": status,
        }

    def _limited_log(self, name: str, key: Hashable, level: int = logging.INFO, **fields: Any) -> None:
        """One log line per (event, key) per minute; the next one says how many were held back."""
        held = self.log_limiter.allow((name, key), time.monotonic())
        if held is not None:
            event(log, name, level, **fields, suppressed=held or None)

    # -- one connection ----------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, RelayConnection)
        peer = ws.peer
        terminal = await self._authenticate(ws, peer)
        if terminal is None:
            return
        # The terminal is known: messages up to the configured size are answered with too_large, bigger ones
        # (beyond what is worth buffering) get too_large and a close.
        assert isinstance(ws.protocol, RelayProtocol)
        ws.protocol.authenticated = True
        ws.protocol.max_message_size = 2 * self.config.max_message_bytes
        conn = Conn(ws, terminal)
        old = self.conns.get(terminal)
        if old is not None:
            old.replaced = True
            old.closed = True  # inert at once: nothing it still sends is read (see the loop below)
            event(log, "terminal_replaced", terminal=terminal, peer=peer)
            self._close_soon(old, protocol.CLOSE_REPLACED, "replaced by a newer connection of this terminal")
        self.conns[terminal] = conn
        self._apply(self.core.connect(terminal, self.clock()))
        # One bucket per terminal for the relay's lifetime: reconnecting does not refill it.
        bucket = self._buckets.get(terminal)
        if bucket is None:
            bucket = self._buckets[terminal] = TokenBucket(
                self.config.rate_limit, self.config.rate_burst, time.monotonic()
            )
        try:
            while True:
                try:
                    raw: str | bytes | protocol.ProtocolError = await ws.read()
                except protocol.ProtocolError as err:  # not UTF-8: answered like any bad message, below
                    raw = err
                if conn.closed:
                    # Replaced, flooding or shutting down: read (and drop) until the peer's close frame arrives.
                    # A flood leaves websockets' receive queue above its high-water mark with reading paused, so
                    # a handler that stopped iterating would wait out close_timeout for the handshake.
                    continue
                if not bucket.take(time.monotonic()):
                    strikes = self._strikes[terminal] = self._strikes.get(terminal, 0) + 1
                    self._error(
                        conn,
                        protocol.ProtocolError(
                            "rate_limited",
                            f"more than {self.config.rate_limit:g} messages/s; message dropped",
                        ),
                    )
                    if strikes >= self.config.rate_strikes:
                        self._strikes[terminal] = 0
                        event(log, "terminal_rate_limited", logging.WARNING, terminal=terminal)
                        await self._flush_and_close(conn, protocol.CLOSE_RATE_LIMITED, "rate limit exceeded")
                    continue
                self._strikes.pop(terminal, None)
                if isinstance(raw, protocol.ProtocolError):
                    self._error(conn, raw)
                else:
                    self._on_raw(conn, raw)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not conn.replaced:
                conn.closed = True
                if self.conns.get(terminal) is conn:
                    del self.conns[terminal]
                    self._apply(self.core.disconnect(terminal, self.clock()))

    async def _authenticate(self, ws: RelayConnection, peer: str) -> str | None:
        """Wait for ``hello``; on any problem send one ``unauthorized`` error and close with 4401.

        Failures from one address are answered later and later (:class:`AuthThrottle`); a valid token is
        never delayed, since many kiosks may share one NAT address with a broken or hostile one.
        """
        problem = ""
        ref: str | None = None
        try:
            raw = await asyncio.wait_for(ws.read(), self.config.hello_timeout)
            msg = protocol.parse(raw, max_bytes=PRE_HELLO_MAX_BYTES)
            ref = msg["type"]
            if msg["type"] != "hello":
                problem = f"the first message must be 'hello', got '{msg['type']}'"
            elif msg["protocol"] != protocol.PROTOCOL_VERSION:
                problem = (
                    f"protocol {protocol.shorten(msg['protocol'])} is not supported; this relay speaks "
                    f"{protocol.PROTOCOL_VERSION}"
                )
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
        self.metrics.on_error("unauthorized")
        delay = self.auth_throttle.failed(peer, time.monotonic())
        self._limited_log(
            "auth_failed",
            peer,
            logging.WARNING,
            peer=peer,
            problem=problem,
            delay_s=round(delay, 1) if delay else None,
        )
        try:
            if delay:  # held back, but not past the end of the connection (client gone, relay stopping)
                try:
                    await asyncio.wait_for(ws.wait_closed(), delay)
                    return None
                except TimeoutError:
                    pass
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
        self._limited_log(
            "error_reply",
            (conn.terminal, err.code),
            logging.INFO,
            terminal=conn.terminal,
            code=err.code,
            ref=err.ref,
            message=err.message,
        )
        self._enqueue(conn, err.to_message())

    # -- carrying out actions ------------------------------------------------------------------
    def inject(self, actions: list[Action]) -> None:
        """Carry out actions that come from outside the core (the fleet page's tests and disconnects)."""
        self._apply(actions)

    async def call_records(self, start: float, end: float) -> list[CallRecord]:
        """Finished calls and refused attempts from the call log (what the report counts), read on its own thread."""
        return await asyncio.get_running_loop().run_in_executor(
            self._db_thread, self.calllog.finished, start, end
        )

    def _apply(self, actions: list[Action]) -> None:
        self._carry_out(actions)
        for observer in self.observers:
            try:
                observer(actions)
            except Exception:
                event(log, "observer_failed", logging.ERROR, exc_info=True, observer=observer)

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
                self._store(a)
            elif isinstance(a, LogEvent):
                # After the sends: the writer tasks just created run first, the log line's I/O after them.
                asyncio.get_running_loop().call_soon(self._log_event, a)
            elif isinstance(a, Close):
                conn = self.conns.get(a.to)
                if conn is not None:
                    self._close_soon(conn, a.code, a.reason)

    def _log_event(self, a: LogEvent) -> None:
        self.metrics.on_event(a)
        if a.name == "call_rejected":  # one line per counter per minute, not one per refused touch
            self._limited_log(a.name, str(a.fields.get("counter")), logging.INFO, **a.fields)
        else:
            event(log, a.name, **a.fields)

    # -- the call log (its own thread; never blocks or stops the relay) ---------------------------
    def _store(self, record: CallRecord) -> None:
        """Queue a record; one write at a time carries everything queued since the last one."""
        self.calllog.add(record)  # deque append: safe while the call-log thread writes an earlier batch
        self._flush_db()

    def _flush_db(self) -> None:
        if self._db_flush is not None:
            return
        fut = asyncio.get_running_loop().run_in_executor(self._db_thread, self.calllog.flush)
        self._db_flush = fut
        self._pending_db.add(fut)
        fut.add_done_callback(self._db_done)

    def _db_done(self, fut: asyncio.Future[bool]) -> None:
        self._pending_db.discard(fut)
        self._db_flush = None
        if fut.cancelled():
            return
        if fut.exception() is not None:
            event(log, "call_log_write_failed", logging.ERROR, error=fut.exception())
        if self.calllog.pending and self._server is not None and self._db_retry is None:
            # Records came in during the write, or the file cannot be written: again later, not in a loop.
            delay = (
                0.0 if self.calllog.db is not None and not self.calllog.last_error else self.calllog_retry_s
            )
            self._db_retry = asyncio.get_running_loop().call_later(delay, self._retry_db)

    def _retry_db(self) -> None:
        self._db_retry = None
        self._flush_db()

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
        except Exception:  # never expected (encode() output is always sendable); never take the relay down
            event(log, "send_failed", logging.ERROR, exc_info=True, terminal=conn.terminal)
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
