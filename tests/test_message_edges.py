"""Messages are parsed and validated once, where the bytes arrive, against common/messages.py: on the relay before
its core (a bad message gets one ``error`` naming its type and field, and the connection carries on) and on a
terminal before its state machines (a bad message is logged, naming its type and field, and skipped).

Real parts: a ``relay-server`` process on 127.0.0.1 with a bare websocket client; the terminals' real
``RelayClient`` against a scripted websocket server on 127.0.0.1 (the only way to make a relay send bad messages).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import COUNTER, OFFICE1, RelayProcess, WsClient, wait_until, write_relay_config
from websockets.asyncio.server import ServerConnection, serve

from common.messages import ServerMessage
from kiosk.client import LINK_UP, RelayClient

# (what a terminal sends, error code, words the error message must contain: the type and the field)
BAD_CLIENT_MESSAGES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("unknown type", {"type": "teleport", "to": "x"}, "unknown_type", ("'teleport'",)),
    ("missing field", {"type": "call"}, "bad_message", ("'call'", "'department'")),
    ("wrong type", {"type": "call", "department": 7}, "bad_message", ("'call'", "'department'", "integer")),
    ("wrong optional", {"type": "ping", "id": [1]}, "bad_message", ("'ping'", "'id'", "array")),
    ("undeclared field", {"type": "ping", "colour": "red"}, "bad_message", ("'ping'", "colour")),
    (
        "boolean as integer",
        {"type": "hangup", "call": True},
        "bad_message",
        ("'hangup'", "'call'", "boolean"),
    ),
]


@pytest.fixture(scope="module")
def relay_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    with RelayProcess(write_relay_config(tmp_path_factory.mktemp("relay"))) as relay:
        yield relay


@pytest.mark.parametrize(
    ("what", "msg", "code", "words"), BAD_CLIENT_MESSAGES, ids=[c[0] for c in BAD_CLIENT_MESSAGES]
)
async def test_the_relay_answers_a_malformed_message_with_an_error_and_keeps_the_connection(
    relay_process: RelayProcess, what: str, msg: dict[str, Any], code: str, words: tuple[str, ...]
) -> None:
    """Each kind of malformed message from an authenticated counter is answered with one ``error`` that names the
    message type (``ref``) and the field; the same connection then works (ping → pong)."""
    client = await WsClient.open(relay_process.url, COUNTER)
    try:
        await client.send(msg)
        err = await client.expect("error")
        assert err["code"] == code, err
        assert err["ref"] == msg["type"], err
        for word in words:
            assert word in err["message"], (what, err)
        await client.send({"type": "ping", "id": "after"})
        await client.expect("pong", id="after")
    finally:
        await client.close()


# (what the relay sends, the skipped message's type, words the log line must contain)
BAD_RELAY_MESSAGES: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    ("unknown type", {"type": "weather", "sky": "blue"}, "weather", ("unknown message type",)),
    ("missing field", {"type": "ringing", "call": "c1"}, "ringing", ("'department'",)),
    ("wrong type", {"type": "answered", "call": "c1", "by": 5}, "answered", ("'by'", "integer")),
    (
        "wrong array item",
        {
            "type": "call_state",
            "call": "c1",
            "state": "active",
            "department": "d",
            "counter": "k",
            "members": [1],
        },
        "call_state",
        ("'members[0]'", "integer"),
    ),
    (
        "wrong nested field",
        {"type": "presence", "departments": {"juumin": None}},
        "presence",
        ("'departments.juumin'", "null"),
    ),
]
WELCOME = {"type": "welcome", "terminal": OFFICE1, "role": "office", "departments": [], "ice_servers": []}
PRESENCE = {"type": "presence", "departments": {"juumin": "available"}}


class ScriptedRelay:
    """A websocket server that answers ``hello`` with the frames it was given, then keeps the connection open."""

    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self.frames = frames
        self.connections = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.recv()  # hello
        for frame in self.frames:
            await ws.send(json.dumps(frame))
        await ws.wait_closed()


@pytest.fixture
async def scripted_url() -> AsyncIterator[Any]:
    servers = []

    async def start(frames: list[dict[str, Any]]) -> tuple[str, ScriptedRelay]:
        relay = ScriptedRelay(frames)
        server = await serve(relay.handler, "127.0.0.1", 0)
        servers.append(server)
        return f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}", relay

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_a_terminal_skips_each_malformed_relay_message_and_says_which_field(
    scripted_url: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The terminal's relay client gets a welcome, each kind of malformed message and then a valid presence: only
    the welcome and the presence reach its handler, each bad one is counted and logged once with its type and
    field, and the link stays up on the same connection."""
    caplog.set_level(logging.WARNING, logger="kiosk.client")
    url, relay = await scripted_url([WELCOME, *(m for _, m, _, _ in BAD_RELAY_MESSAGES), PRESENCE])
    got: list[ServerMessage] = []
    client = RelayClient(url, "t", on_message=got.append)
    async with client:
        await wait_until(lambda: len(got) == 2, 10)
        assert [m["type"] for m in got] == ["welcome", "presence"]
        assert client.bad_frames == len(BAD_RELAY_MESSAGES)
        assert client.link_state == LINK_UP and relay.connections == 1
    lines = [r.getMessage() for r in caplog.records if "event=relay_message_skipped" in r.getMessage()]
    for what, _, kind, words in BAD_RELAY_MESSAGES:
        line = next((line for line in lines if f"type={kind} " in line), None)
        assert line is not None, (what, lines)
        for word in words:
            assert word in line, (what, line)


def test_the_messages_module_is_the_one_definition() -> None:
    """Neither edge keeps its own list of message types: both read common.messages through common.protocol."""
    root = Path(__file__).resolve().parent.parent
    for edge in ("relay_server/server.py", "kiosk/client.py"):
        text = (root / edge).read_text()
        assert "protocol.parse" in text, edge
        assert "json.loads" not in text, f"{edge} decodes JSON itself instead of through common.protocol"
