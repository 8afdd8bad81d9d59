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
from collections.abc import Awaitable, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from common import protocol
from kiosk.config import RelayLink

log = logging.getLogger(__name__)

MessageHandler = Callable[[dict[str, Any]], Awaitable[None] | None]
LinkHandler = Callable[[str, str], Awaitable[None] | None]

# Link states reported to on_link(state, detail).
LINK_CONNECTING = "connecting"
LINK_UP = "up"
LINK_DOWN = "down"
LINK_UNAUTHORIZED = "unauthorized"


def ssl_context_for(link: RelayLink, url: str | None = None) -> ssl.SSLContext | None:
    """TLS settings for ``wss://``: the system's CAs, or only ``[relay] ca_file`` when it is set."""
    if not (url or link.url).startswith("wss://"):
        return None
    return ssl.create_default_context(cafile=link.ca_file or None)


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
        backoff: first and largest delay between reconnection attempts, in seconds.
        client_name: sent in ``hello`` for the relay's log.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_message: MessageHandler | None = None,
        on_link: LinkHandler | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff: tuple[float, float] = (0.25, 10.0),
        client_name: str = "kiosk",
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.token = token
        self.on_message = on_message
        self.on_link = on_link
        self.ssl_context = ssl_context
        self.backoff = backoff
        self.client_name = client_name
        self.open_timeout = open_timeout
        self.welcome: dict[str, Any] | None = None
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

    async def wait_up(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait until the relay has welcomed us; return the welcome message."""
        await asyncio.wait_for(self.up.wait(), timeout)
        assert self.welcome is not None
        return self.welcome

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
        delay = self.backoff[0]
        while not self._closing:
            await self._set_link(LINK_CONNECTING, self.url)
            try:
                async with connect(
                    self.url, ssl=self.ssl_context, open_timeout=self.open_timeout,
                    max_size=protocol.MAX_MESSAGE_BYTES * 4, ping_interval=5, ping_timeout=10,
                ) as ws:
                    self._ws = ws
                    await ws.send(protocol.encode(
                        {"type": "hello", "token": self.token, "protocol": protocol.PROTOCOL_VERSION,
                         "client": self.client_name}))
                    async for raw in ws:
                        msg = protocol.parse_server(raw)
                        if msg["type"] == "welcome":
                            self.welcome = msg
                            delay = self.backoff[0]
                            self.up.set()
                            await self._set_link(LINK_UP, self.url)
                        elif msg["type"] == "error" and msg.get("code") == "unauthorized":
                            await self._set_link(LINK_UNAUTHORIZED, msg.get("message", ""))
                        await self._deliver(msg)
                    code = ws.close_code
                    reason = ws.close_reason or ""
            except (TimeoutError, OSError, websockets.InvalidHandshake, websockets.InvalidURI) as err:
                code, reason = None, f"{type(err).__name__}: {err}"
            except websockets.ConnectionClosed as err:
                code, reason = (err.rcvd.code, err.rcvd.reason) if err.rcvd else (None, str(err))
            except protocol.ProtocolError as err:
                code, reason = None, f"relay sent a bad message: {err}"
            finally:
                self._ws = None
                self.up.clear()
            if self._closing:
                break
            if code == protocol.CLOSE_UNAUTHORIZED:
                await self._set_link(LINK_UNAUTHORIZED, reason or "token rejected")
            elif code == protocol.CLOSE_REPLACED:
                await self._set_link(LINK_DOWN, "replaced by another connection with this terminal id")
            else:
                await self._set_link(LINK_DOWN, reason or f"closed ({code})")
            log.info("relay link down (%s); retrying in %.1f s", reason or code, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff[1])

    async def _deliver(self, msg: dict[str, Any]) -> None:
        if self.on_message is None:
            return
        try:
            result = self.on_message(msg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("handler failed for relay message %r", msg.get("type"))

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
            log.exception("link handler failed")
