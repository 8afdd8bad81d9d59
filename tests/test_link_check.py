"""``RelayClient.check_link``: when a call's media stops, the terminal checks its relay link with a ping at once; a
link that died silently (no pong, no close: a cut cable, a NAT that forgot its mapping) is dropped and reconnected
within seconds, not after the keepalive. Real websockets on 127.0.0.1, a relay that stops reading like a frozen
network path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from helpers import wait_until
from websockets.asyncio.server import Server, ServerConnection, serve

from kiosk.client import RelayClient

WELCOME = {
    "type": "welcome",
    "terminal": "office-tobetsu-1",
    "role": "office",
    "protocol": 1,
    "time": 0.0,
    "departments": [],
    "ice_servers": [],
}


class FreezableRelay:
    """Welcomes every connection; :meth:`freeze` makes the newest one silent (it reads nothing, answers nothing)."""

    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        await ws.recv()  # hello
        await ws.send(json.dumps(WELCOME))
        await ws.wait_closed()

    def freeze(self) -> None:
        self.connections[-1].transport.pause_reading()


@pytest.fixture
async def relay() -> AsyncIterator[tuple[FreezableRelay, str]]:
    r = FreezableRelay()
    server: Server = await serve(r.handler, "127.0.0.1", 0)
    yield r, f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
    for ws in r.connections:
        ws.transport.abort()  # a frozen connection would never finish a closing handshake
    server.close()
    await server.wait_closed()


async def test_a_silent_link_is_dropped_and_reconnected_at_once(relay: tuple[FreezableRelay, str]) -> None:
    fake, url = relay
    # A keepalive of a minute: only check_link can notice within this test's time.
    async with RelayClient(url, "t", keepalive=(60.0, 60.0), backoff=(0.05, 0.2)) as client:
        await client.wait_up(5)
        assert await client.check_link(2.0)  # a live link answers; nothing changes
        assert len(fake.connections) == 1 and client.up.is_set()
        fake.freeze()
        assert not await client.check_link(0.5)
        await wait_until(lambda: len(fake.connections) == 2 and client.up.is_set(), 10)
        assert await client.check_link(2.0)


async def test_no_check_without_a_link() -> None:
    client = RelayClient("ws://127.0.0.1:9", "t")
    assert not await client.check_link(0.1)
