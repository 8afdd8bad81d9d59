"""What the relay's websocket tests share: an in-process relay with its clients, and call helpers.

The ``start_relay`` and ``relay`` fixtures built on it live in conftest.py, so every test module gets them.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from helpers import WsClient

from relay_server.server import RelayServer


@dataclass
class Relay:
    """One in-process relay plus the clients a test opened against it (all closed at teardown)."""

    server: RelayServer
    clients: list[WsClient] = field(default_factory=list)

    async def client(
        self, terminal: str | None = None, token: str | None = None, expect_welcome: bool = True
    ) -> WsClient:
        c = await WsClient.open(self.server.url, terminal, token, expect_welcome)
        self.clients.append(c)
        return c

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()
        await self.server.close()


StartRelay = Callable[..., Awaitable[Relay]]


async def place_call(counter: WsClient, station: WsClient, department: str = "juumin") -> str:
    """Counter calls, ``station`` answers; returns the call id once the counter knows it was answered."""
    await counter.send({"type": "call", "department": department})
    call = (await counter.expect("ringing", department=department))["call"]
    await station.expect("incoming", call=call)
    await station.send({"type": "answer", "call": call})
    await station.expect("call_state", call=call, state="active")
    await counter.expect("answered", call=call)
    return str(call)


async def assert_signal(call: str, a: tuple[str, WsClient], b: tuple[str, WsClient], tag: str = "x") -> None:
    """A signal from a to b and back is delivered with the right sender and data."""
    (a_id, a_ws), (b_id, b_ws) = a, b
    await a_ws.send({"type": "signal", "call": call, "to": b_id, "data": {"kind": "offer", "sdp": tag}})
    from_a: dict[str, Any] = {"from": a_id}
    got = await b_ws.expect("signal", call=call, **from_a)
    assert got["data"] == {"kind": "offer", "sdp": tag}
    await b_ws.send({"type": "signal", "call": call, "to": a_id, "data": {"kind": "answer", "sdp": tag}})
    from_b: dict[str, Any] = {"from": b_id}
    got = await a_ws.expect("signal", call=call, **from_b)
    assert got["data"] == {"kind": "answer", "sdp": tag}


async def drain_until_closed(
    client: WsClient, timeout: float = 5.0
) -> tuple[list[dict[str, Any]], int | None]:
    """Read everything until the relay closes the connection; the messages and the close code."""
    msgs: list[dict[str, Any]] = list(client.inbox)
    client.inbox.clear()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout} s; got {msgs}")
        try:
            raw = await asyncio.wait_for(client.ws.recv(), left)
        except websockets.ConnectionClosed as err:
            return msgs, err.rcvd.code if err.rcvd else None
        except TimeoutError:
            continue
        msgs.append(json.loads(raw))


async def assert_alive(client: WsClient, tag: str = "alive") -> None:
    """The connection still answers a ping."""
    await client.send({"type": "ping", "id": tag})
    await client.expect("pong", id=tag)


async def http_get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a plain HTTP GET (run in a thread; urllib is blocking)."""

    def get() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read().decode()

    return await asyncio.to_thread(get)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        lname, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if lname == name and got == want:
            return float(value)
    return 0.0
