"""Signalling client: one websocket to the relay, with hello, reconnect and backoff.

The edge between a terminal and the relay. It knows nothing about calls: it delivers every
message from the relay to ``on_message`` and reports its link state to ``on_link``. The
terminal's logic (state machines, lamp agent, media session) reacts to those.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from common import protocol
from common.backoff import Backoff, Uniform
from common.logs import event
from common.messages import ServerMessage, Welcome
from kiosk.config import RelayLink

log = logging.getLogger(__name__)

MessageHandler = Callable[[ServerMessage], Awaitable[None] | None]
LinkHandler = Callable[[str, str], Awaitable[None] | None]

# Link states reported to on_link(state, detail).
LINK_CONNECTING = "connecting"
LINK_UP = "up"
LINK_DOWN = "down"
LINK_UNAUTHORIZED = "unauthorized"

LINK_JITTER = 0.2  # reconnection delays spread by ±20 %, so terminals cut off together do not return together
REPLACED_FORGIVE_S = 600.0  # a link that held this long before a 4409 was not fighting another copy
# check_link(): a relay link that does not answer a ping within this long when a call's media stopped is dead.
LINK_CHECK_TIMEOUT = 2.5


def ssl_context_for(link: RelayLink, url: str | None = None) -> ssl.SSLContext | None:
    """TLS settings for ``wss://``: the system's CAs, plus ``[relay] ca_file`` (a private CA) when it is set.

    The same trust as for ``turns:`` TURN servers (kiosk.video.turnprobe.tls_context): one CA file, both servers.
    """
    if not (url or link.url).startswith("wss://"):
        return None
    ctx = ssl.create_default_context()
    if link.ca_file:
        ctx.load_verify_locations(cafile=link.ca_file)
    return ctx


class NotConnected(Exception):
    """A message was sent while the relay link is down."""


class RelayClient:
    """Keeps one authenticated websocket to the relay open, reconnecting with backoff.

    Args:
        url: ``ws://`` or ``wss://`` address of the relay.
        token: this terminal's secret token.
        on_message: called with each message from the relay (``welcome`` included).
        on_link: called with ``(state, detail)`` when the link changes state.
        ssl_context: for ``wss://`` with a private CA.
        backoff: delays between reconnection attempts (a :class:`~common.backoff.Backoff`, or its short form
            ``(initial, maximum)``, doubling, each spread by ±20 %).
        replaced_backoff: delays (the same shapes) after the relay closed us with 4409 because another copy of
            this terminal logged in: it doubles with each 4409 and is not reset by a welcome, so two copies
            settle instead of replacing each other for ever. It starts again from the first delay after a link
            that ended for another reason, or one that had held for :data:`REPLACED_FORGIVE_S` (a technician's
            ``kiosk doctor`` run borrows the terminal's identity once in a while: that costs half a second).
        keepalive: ping interval and timeout, in seconds: a relay that stops answering (hung, or the network
            silently gone) is noticed within their sum (plus the closing handshake, at most the timeout again).
        client_name: sent in ``hello`` for the relay's log.
        uniform: the random source of the backoff's jitter (tests pass a fixed one).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_message: MessageHandler | None = None,
        on_link: LinkHandler | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff: Backoff | tuple[float, float] = (0.25, 10.0),
        replaced_backoff: Backoff | tuple[float, float] = (0.5, 600.0),
        client_name: str = "kiosk",
        open_timeout: float = 5.0,
        keepalive: tuple[float, float] = (5.0, 10.0),
        uniform: Uniform = random.uniform,
    ) -> None:
        self.url = url
        self.token = token
        self.on_message = on_message
        self.on_link = on_link
        self.ssl_context = ssl_context
        self.backoff = Backoff.of(backoff, jitter=LINK_JITTER)
        self.replaced_backoff = Backoff.of(replaced_backoff, jitter=LINK_JITTER)
        self._retry = self.backoff.start(uniform)
        self._replaced = self.replaced_backoff.start(uniform)  # its failures: 4409s in a row
        self.replaced_forgive = REPLACED_FORGIVE_S
        self.keepalive = keepalive
        self.bad_frames = 0  # frames from the relay that were not valid messages (logged, skipped)
        self._bad_logged_at: dict[str | None, float] = {}  # message type (None: no type) → last logged
        self.client_name = client_name
        self.open_timeout = open_timeout
        self.welcome: Welcome | None = None
        self.link_state = LINK_CONNECTING
        self.link_detail = ""
        self.up = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    def for_link(cls, link: RelayLink, *, url: str | None = None, **kwargs: Any) -> RelayClient:
        """A client for a terminal's ``[relay]`` section (token, CA file); ``url`` overrides its address."""
        target = url or link.url
        return cls(target, link.token, ssl_context=ssl_context_for(link, target), **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        """Run the connection loop in a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="relay-client")
        return self._task

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def __aenter__(self) -> RelayClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_up(self, timeout: float | None = None) -> Welcome:
        """Wait until the relay has welcomed us; return the welcome message."""
        await asyncio.wait_for(self.up.wait(), timeout)
        assert self.welcome is not None
        return self.welcome

    async def check_link(self, timeout: float = LINK_CHECK_TIMEOUT) -> bool:
        """Ping the relay now; a link that does not answer within ``timeout`` is dropped at once (and the loop
        reconnects) instead of after the keepalive's 10–15 s. For when a call's media stops: the same outage may
        have killed the relay connection silently (a cut cable, a NAT that forgot its mappings), and the media
        can only be re-signalled over a live link. Returns whether the relay answered."""
        ws = self._ws
        if ws is None or not self.up.is_set():
            return False
        try:
            async with asyncio.timeout(timeout):
                pong = await ws.ping()
                await pong
            return True
        except (TimeoutError, websockets.ConnectionClosed):
            if self._ws is ws and not self._closing:
                event(
                    log,
                    "relay_link_silent",
                    logging.WARNING,
                    url=self.url,
                    timeout_s=timeout,
                    action="reconnect",
                )
                ws.transport.abort()  # no closing handshake: nothing answers on the other end
            return False

    # -- sending -----------------------------------------------------------------------------
    async def send(self, msg: dict[str, Any]) -> None:
        """Send one message; raises :class:`NotConnected` while the link is down."""
        ws = self._ws
        if ws is None or not self.up.is_set():
            raise NotConnected(f"relay link is {self.link_state}; cannot send '{msg.get('type')}'")
        try:
            await ws.send(protocol.encode(msg))
        except websockets.ConnectionClosed as err:
            raise NotConnected(f"relay link closed while sending '{msg.get('type')}'") from err

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, hello, deliver, reconnect — until :meth:`close`. Nothing the relay sends ends this loop."""
        while not self._closing:
            await self._set_link(LINK_CONNECTING, self.url)
            welcomed = False
            welcomed_at = 0.0
            try:
                async with connect(
                    self.url,
                    ssl=self.ssl_context,
                    open_timeout=self.open_timeout,
                    max_size=protocol.MAX_MESSAGE_BYTES * 4,
                    ping_interval=self.keepalive[0],
                    ping_timeout=self.keepalive[1],
                    # A relay that stopped answering will not answer the close either: do not wait 10 s for it.
                    close_timeout=min(self.keepalive[1], 5.0),
                ) as ws:
                    self._ws = ws
                    await ws.send(
                        protocol.encode(
                            {
                                "type": "hello",
                                "token": self.token,
                                "protocol": protocol.PROTOCOL_VERSION,
                                "client": self.client_name,
                            }
                        )
                    )
                    while True:
                        # Undecoded: a text frame that is not UTF-8 is skipped here like any bad frame,
                        # instead of websockets failing the whole connection.
                        raw = await ws.recv(decode=False)
                        try:
                            msg = protocol.parse_server(raw)
                        except protocol.ProtocolError as err:
                            self._bad_frame(err)
                            continue
                        if msg["type"] == "welcome":
                            self.welcome = msg
                            welcomed, welcomed_at = True, time.monotonic()
                            self._retry.reset()
                            self.up.set()
                            await self._set_link(LINK_UP, self.url)
                        elif msg["type"] == "error" and msg["code"] == "unauthorized":
                            await self._set_link(LINK_UNAUTHORIZED, msg["message"])
                        await self._deliver(msg)
            except (TimeoutError, OSError, websockets.InvalidHandshake, websockets.InvalidURI) as err:
                code, reason = None, f"{type(err).__name__}: {err}"
            except websockets.ConnectionClosed as err:
                code, reason = (err.rcvd.code, err.rcvd.reason) if err.rcvd else (None, str(err))
            except asyncio.CancelledError:
                raise
            except Exception as err:  # never die: whatever went wrong, the link is down and is retried
                event(log, "relay_link_failed", logging.ERROR, exc_info=True, url=self.url)
                code, reason = None, f"{type(err).__name__}: {err}"
            finally:
                self._ws = None
                self.up.clear()
            if self._closing:
                break
            if code == protocol.CLOSE_REPLACED:
                if welcomed and time.monotonic() - welcomed_at >= max(
                    self.replaced_forgive, 2 * self._replaced.last
                ):
                    self._replaced.reset()
                retry = self._replaced
                wait = retry.next()
                detail = (
                    f"another copy of this terminal is running (replaced by a newer connection "
                    f"{self.replaced_count}x); retrying in {wait:.1f} s"
                )
                event(log, "relay_link_replaced", logging.WARNING, url=self.url, detail=detail)
                await self._set_link(LINK_DOWN, detail)
            else:
                if welcomed:
                    self._replaced.reset()  # a link that ended for another reason: no other copy is fighting
                retry = self._retry
                wait = retry.next()
                if code == protocol.CLOSE_UNAUTHORIZED:
                    await self._set_link(LINK_UNAUTHORIZED, reason or "token rejected")
                else:
                    await self._set_link(LINK_DOWN, reason or f"closed ({code})")
                event(log, "relay_link_down", url=self.url, reason=reason or code, retry_s=round(wait, 1))
            await asyncio.sleep(retry.jittered(wait))

    @property
    def replaced_count(self) -> int:
        """How many times in a row the relay closed this link with 4409 (another copy logged in)."""
        return self._replaced.failures

    def _bad_frame(self, err: protocol.ProtocolError) -> None:
        """A frame from the relay that is not a valid message (not JSON, an unknown type, a field missing or of the
        wrong type): skipped, logged at most once a minute per message type, naming the type and the field."""
        self.bad_frames += 1
        now = time.monotonic()
        if now - self._bad_logged_at.get(err.ref, -1e9) >= 60:
            if len(self._bad_logged_at) >= 64:  # a relay inventing types must not grow this for ever
                self._bad_logged_at.clear()
            self._bad_logged_at[err.ref] = now
            event(
                log,
                "relay_message_skipped",
                logging.WARNING,
                type=err.ref,
                code=err.code,
                problem=err.message,
                skipped=self.bad_frames,
            )

    async def _deliver(self, msg: ServerMessage) -> None:
        if self.on_message is None:
            return
        try:
            result = self.on_message(msg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            event(log, "relay_message_handler_failed", logging.ERROR, exc_info=True, type=msg["type"])

    async def _set_link(self, state: str, detail: str) -> None:
        if state == self.link_state and detail == self.link_detail:
            return
        # Keep an 'unauthorized' verdict visible through the 'down' that follows the close.
        if self.link_state == LINK_UNAUTHORIZED and state == LINK_DOWN:
            return
        self.link_state, self.link_detail = state, detail
        if self.on_link is None:
            return
        try:
            result = self.on_link(state, detail)
            if inspect.isawaitable(result):
                await result
        except Exception:
            event(log, "link_handler_failed", logging.ERROR, exc_info=True, state=state)
