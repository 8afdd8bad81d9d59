"""Issue 13 point 1: property-based fuzzing (Hypothesis) of what terminals send, against the pure relay core and
against the running relay.

Generated frames cover every client message type with right and wrong field types, unknown types and fields, JSON
that is not an object, lone surrogates, NaN, deep nesting, binary frames and text that is not UTF-8. Properties:

* core: nothing but :class:`ProtocolError` escapes ``parse`` + ``RelayCore.receive``; every message the core sends
  encodes to UTF-8 JSON and back unchanged; its call/member indexes stay consistent;
* server (real relay on 127.0.0.1:0, real websocket clients): every frame that ``parse`` refuses is answered with an
  ``error``; the sender stays connected; a call between two other terminals goes on untouched; no ERROR line and no
  traceback is logged.

``scripts/test`` runs a bounded profile (seconds); ``FUZZ_EXAMPLES=N`` runs a longer one (``bench/fuzz.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest
from helpers import COUNTER, LAMP, OFFICE1, OFFICE2, WsClient, make_relay_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import protocol
from relay_server.core import RelayCore, Send
from relay_server.server import RelayServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
CORE_EXAMPLES = EXAMPLES or 100
SERVER_EXAMPLES = max(EXAMPLES // 5, 40) if EXAMPLES else 40
CONFIG = make_relay_config()
TERMINALS = [COUNTER, OFFICE1, OFFICE2, LAMP]
DEPARTMENTS = list(CONFIG.departments)
NOW = 1_790_000_000.0

# -- strategies ------------------------------------------------------------------------------------
nasty_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\x1b[2J", "x\r\nevent=forged", "住民課", "", "\x00"]),
)
ids = st.one_of(st.sampled_from(TERMINALS + DEPARTMENTS + ["c0", "c1", "available", "away"]), nasty_text)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), nasty_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def messages(draw: Any) -> dict[str, Any]:
    """A client message: a known type with fields of the right type most of the time, wrong or extra otherwise."""
    kind = draw(st.one_of(st.sampled_from(sorted(protocol.CLIENT_MESSAGES)), nasty_text))
    msg: dict[str, Any] = {"type": kind}
    for name, field in protocol.CLIENT_MESSAGES.get(kind, {}).items():
        if not field.required and draw(st.booleans()):
            continue
        if draw(st.integers(0, 5)) == 0:
            msg[name] = draw(json_values)
        elif dict in field.types:
            msg[name] = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3))
        elif int in field.types and str not in field.types:
            msg[name] = draw(st.sampled_from([1, 1, 2, 0, -1]))
        else:
            msg[name] = draw(ids)
    if draw(st.integers(0, 8)) == 0:
        msg[draw(st.text(max_size=6))] = draw(json_values)
    if draw(st.integers(0, 10)) == 0:
        del msg["type"]
    return msg


@st.composite
def frames(draw: Any) -> str | bytes:
    """One websocket frame as a terminal might send it: ``bytes`` starting ``b"TEXT:"`` are a text frame of raw
    bytes (not UTF-8 on purpose); other ``bytes`` are a binary frame."""
    how = draw(st.integers(0, 12))
    msg = draw(messages())
    text = json.dumps(msg, ensure_ascii=draw(st.booleans()))
    if how == 0:
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]  # cut short
    if how == 1:
        depth = draw(st.integers(30, 3000))
        return '{"type":"signal","call":"c0","to":"x","data":' + '{"a":' * depth + "1" + "}" * depth + "}"
    if how == 2:
        return draw(
            st.sampled_from(
                [
                    '{"type":"ping","id":NaN}',
                    '{"type":"ping","id":Infinity}',
                    "[]",
                    "null",
                    '"hello"',
                    "1e999",
                    '{"type":"ping","id":' + "9" * 5000 + "}",
                ]
            )
        )
    if how == 3:
        return (
            b"TEXT:"
            + text.encode("utf-8", "surrogatepass")[:40]
            + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]))
        )
    if how == 4:
        return text.encode("utf-8", "surrogatepass")
    return text


def encodable_roundtrip(msg: dict[str, Any]) -> None:
    text = protocol.encode(msg)
    assert json.loads(text.encode("utf-8")) == json.loads(text)


def check_indexes(core: RelayCore) -> None:
    for terminal, cid in core.call_of.items():
        assert terminal in core.calls[cid].members, (terminal, cid)
    for cid, call in core.calls.items():
        assert call.members and call.members[0] == call.counter
        for m in call.members:
            assert core.call_of.get(m) == cid, (m, cid)


# -- the pure core ---------------------------------------------------------------------------------
@settings(max_examples=CORE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_core_survives_any_sequence_of_frames(data: Any) -> None:
    """Nothing but ProtocolError escapes parse + receive, every outgoing message is UTF-8 JSON, indexes agree."""
    counter = iter(range(10_000))
    core = RelayCore(CONFIG, lambda: f"c{next(counter)}")
    for t in TERMINALS:
        core.connect(t, NOW)
    for step in range(data.draw(st.integers(1, 25))):
        sender = data.draw(st.sampled_from(TERMINALS))
        frame = data.draw(frames())
        if data.draw(st.integers(0, 3)) == 0 and core.calls:  # aim some messages at a real call
            call = data.draw(st.sampled_from(sorted(core.calls)))
            frame = json.dumps({**data.draw(messages()), "call": call})
        raw = (
            frame[5:].decode("utf-8", "replace")
            if isinstance(frame, bytes) and frame.startswith(b"TEXT:")
            else frame
        )
        try:
            msg = protocol.parse(raw)
            actions = core.receive(sender, msg, NOW + step)
        except protocol.ProtocolError as err:
            assert err.code in protocol.ERROR_CODES
            encodable_roundtrip(err.to_message())
            continue
        for a in actions:
            if isinstance(a, Send):
                encodable_roundtrip(a.msg)
        check_indexes(core)


# -- the running relay -----------------------------------------------------------------------------
async def _exchange(attacker: WsClient, frame: str | bytes, tag: str) -> list[dict[str, Any]]:
    """Send one frame, then a ping; everything the attacker got up to the pong."""
    if isinstance(frame, bytes) and frame.startswith(b"TEXT:"):
        await attacker.ws.send(frame[5:], text=True)
    elif isinstance(frame, str) and not _utf8(
        frame
    ):  # a lone surrogate, as raw bytes: what a hostile client sends
        await attacker.ws.send(frame.encode("utf-8", "surrogatepass"), text=True)
    else:
        await attacker.ws.send(frame)
    await attacker.send({"type": "ping", "id": tag})
    got: list[dict[str, Any]] = []
    while True:
        msg = await attacker.recv(timeout=10)
        if msg["type"] == "pong" and msg.get("id") == tag:
            return got
        got.append(msg)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _refused_by_parse(frame: str | bytes) -> bool:
    if isinstance(frame, str) and not _utf8(frame):
        return True
    if isinstance(frame, bytes):
        if not frame.startswith(b"TEXT:"):
            return True
        try:
            frame = frame[5:].decode()
        except UnicodeDecodeError:
            return True
    try:
        protocol.parse(frame)
    except protocol.ProtocolError:
        return True
    return False


async def _run_server_example(batch: list[str | bytes]) -> None:
    relay = await RelayServer(make_relay_config(rate_limit=1000.0, rate_burst=1000)).start()
    clients: list[WsClient] = []
    try:
        o1 = await WsClient.open(relay.url, OFFICE1)
        counter = await WsClient.open(relay.url, COUNTER)
        attacker = await WsClient.open(relay.url, OFFICE2)
        clients += [o1, counter, attacker]
        await counter.send({"type": "call", "department": "juumin"})
        call = (await counter.expect("ringing"))["call"]
        await o1.expect("incoming", call=call)
        await o1.send({"type": "answer", "call": call})
        await counter.expect("answered", call=call)
        for i, frame in enumerate(batch):
            got = await _exchange(attacker, frame, f"t{i}")
            if _refused_by_parse(frame):
                assert any(m["type"] == "error" for m in got), (frame, got)
        # The call between the two others was never touched.
        await counter.send(
            {"type": "signal", "call": call, "to": OFFICE1, "data": {"kind": "offer", "sdp": "v"}}
        )
        assert (await o1.expect("signal", call=call))["data"] == {"kind": "offer", "sdp": "v"}
        assert not [m for m in o1.inbox + counter.inbox if m["type"] in ("ended", "left", "error")]
        assert relay.core.calls[call].members == [COUNTER, OFFICE1]
    finally:
        for c in clients:
            await c.close()
        await relay.close()


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(frames(), min_size=1, max_size=8))
def test_running_relay_answers_every_bad_frame_and_harms_nobody(
    caplog: pytest.LogCaptureFixture, batch: list[str | bytes]
) -> None:
    """Each frame refused by parse gets an error, the sender stays, another call goes on, no ERROR is logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        asyncio.run(_run_server_example(batch))
    bad = [r.getMessage()[:300] for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, bad
