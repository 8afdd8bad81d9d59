"""The relay's websocket edge, in process on 127.0.0.1:0 with real websocket clients.

Each test drives the real :class:`RelayServer` (core, edge, timers, call log, metrics) through bare
protocol clients; the pure rules are unit-tested in ``test_relay_core.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from helpers import (
    COUNTER,
    DEMO_RELAY_CONFIG,
    LAMP,
    OFFICE1,
    OFFICE2,
    TOKENS,
    WsClient,
    make_cert,
    wait_until,
)
from relay_support import (
    Relay,
    StartRelay,
    assert_alive,
    assert_signal,
    drain_until_closed,
    http_get,
    metric,
    place_call,
)
from websockets.asyncio.client import connect

from common.protocol import CLOSE_RATE_LIMITED, CLOSE_REPLACED, CLOSE_UNAUTHORIZED
from relay_server.config import RelayConfig, load_relay_config

JUUMIN_FALLBACK_PHONE = "0133-23-2223"


# -- call flows ------------------------------------------------------------------------------
async def test_full_call_flow(relay: Relay) -> None:
    """A call rings both stations and the lamp, one answer connects it, signals flow both ways, hangup ends it
    for all."""
    o1, o2, lamp = await relay.client(OFFICE1), await relay.client(OFFICE2), await relay.client(LAMP)
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "juumin"})
    ringing = await counter.expect("ringing", department="juumin")
    call = ringing["call"]
    for c in (o1, o2, lamp):
        inc = await c.expect("incoming", call=call)
        assert inc["department"] == "juumin" and inc["from"] == COUNTER and "invited_by" not in inc

    await o1.send({"type": "answer", "call": call})
    assert (await counter.expect("answered", call=call))["by"] == OFFICE1
    state = await o1.expect("call_state", call=call)
    assert state["state"] == "active" and state["members"] == [COUNTER, OFFICE1]
    assert state["counter"] == COUNTER and state["department"] == "juumin"
    assert (await o2.expect("taken", call=call))["by"] == OFFICE1
    assert (await lamp.expect("taken", call=call))["by"] == OFFICE1

    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))

    await counter.send({"type": "hangup", "call": call})
    for c in (counter, o1, lamp):
        ended = await c.expect("ended", call=call)
        assert ended["reason"] == "hangup" and ended["by"] == COUNTER


async def test_simultaneous_answers_one_wins(relay: Relay) -> None:
    """Two stations answering at the same moment: exactly one joins, the other is told it was taken."""
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "zeimu"})
    call = (await counter.expect("ringing"))["call"]
    await o1.expect("incoming", call=call)
    await o2.expect("incoming", call=call)

    await asyncio.gather(o1.send({"type": "answer", "call": call}), o2.send({"type": "answer", "call": call}))
    winner = (await counter.expect("answered", call=call))["by"]
    assert winner in (OFFICE1, OFFICE2)
    win, lose = (o1, o2) if winner == OFFICE1 else (o2, o1)
    state = await win.expect("call_state", call=call)
    assert state["members"] == [COUNTER, winner]
    await lose.expect("taken", call=call, by=winner)
    err = await lose.expect("error", ref="answer")
    assert err["code"] == "already_answered" and err["by"] == winner
    assert not [m for m in lose.inbox if m["type"] == "call_state"]
    await assert_alive(counter)
    assert not [m for m in counter.inbox if m["type"] == "answered"]
    assert relay.server.core.calls[call].members == [COUNTER, winner]


async def test_cancel_while_ringing(relay: Relay) -> None:
    """A counter cancelling a ringing call ends it as 'cancelled' for the counter, every rung station and the lamp."""
    o1, o2, lamp = await relay.client(OFFICE1), await relay.client(OFFICE2), await relay.client(LAMP)
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "hoken"})
    call = (await counter.expect("ringing"))["call"]
    for c in (o1, o2, lamp):
        await c.expect("incoming", call=call)
    await counter.send({"type": "cancel", "call": call})
    for c in (counter, o1, o2, lamp):
        assert (await c.expect("ended", call=call))["reason"] == "cancelled"
    await o1.send({"type": "answer", "call": call})
    assert (await o1.expect("error", ref="answer"))["code"] == "unknown_call"


async def test_unanswered_call_times_out(start_relay: StartRelay) -> None:
    """A call nobody answers ends as 'unanswered' after ring_timeout for the counter, the stations and the lamp."""
    relay = await start_relay(ring_timeout=0.3)
    o1, lamp = await relay.client(OFFICE1), await relay.client(LAMP)
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "juumin"})
    call = (await counter.expect("ringing"))["call"]
    await o1.expect("incoming", call=call)
    for c in (counter, o1, lamp):
        assert (await c.expect("ended", call=call, timeout=3))["reason"] == "unanswered"
    assert call not in relay.server.core.calls


async def test_station_connecting_while_ringing_gets_incoming(relay: Relay) -> None:
    """A station that comes online while a call rings is rung too and can answer it."""
    o1 = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "kensetsu"})
    call = (await counter.expect("ringing"))["call"]
    o2 = await relay.client(OFFICE2)
    inc = await o2.expect("incoming", call=call)
    assert inc["from"] == COUNTER and inc["department"] == "kensetsu"
    await o2.send({"type": "answer", "call": call})
    await counter.expect("answered", call=call, by=OFFICE2)
    await o1.expect("taken", call=call, by=OFFICE2)


async def test_lamp_connecting_mid_call_gets_taken(relay: Relay) -> None:
    """A lamp agent that (re)connects during a call learns of it through 'taken' and is told when it ends."""
    o1 = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    lamp = await relay.client(LAMP)
    assert (await lamp.expect("taken", call=call))["by"] == OFFICE1
    await o1.send({"type": "hangup", "call": call})
    assert (await lamp.expect("ended", call=call))["reason"] == "hangup"


@pytest.mark.parametrize("by", ["counter", "staff"])
async def test_hangup(relay: Relay, by: str) -> None:
    """A hangup from either side ends the call for every member with reason 'hangup' and who hung up."""
    o1 = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    who, ws = (COUNTER, counter) if by == "counter" else (OFFICE1, o1)
    await ws.send({"type": "hangup", "call": call})
    for c in (counter, o1):
        ended = await c.expect("ended", call=call)
        assert ended["reason"] == "hangup" and ended["by"] == who
    # Both are free again: the counter can place a new call that the station can answer.
    await place_call(counter, o1)


async def test_one_structured_log_line_per_event(relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    """Each step of a call is one ``event=NAME key=value`` line, in order: connected, rung, answered, ended."""
    caplog.set_level(
        logging.INFO, logger="relay"
    )  # the relay's event log (journald: SyslogIdentifier relay-server)
    o1 = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await counter.send({"type": "hangup", "call": call})
    await o1.expect("ended", call=call)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=")]
    wanted = [
        f"event=terminal_connected terminal={OFFICE1} role=office",
        f"event=terminal_connected terminal={COUNTER}",
        f"event=call_rung call={call} department=juumin counter={COUNTER}",
        f"event=call_answered call={call} department=juumin by={OFFICE1}",
        f"event=call_ended call={call} department=juumin reason=hangup",
    ]
    found = [next((i for i, line in enumerate(lines) if line.startswith(w)), -1) for w in wanted]
    assert -1 not in found and found == sorted(found), "\n".join(lines)
    for name in ("call_rung", "call_answered", "call_ended"):
        assert sum(line.startswith(f"event={name} call={call} ") for line in lines) == 1, name


# -- invites ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["department", "terminal"])
async def test_invite_join_and_leave(relay: Relay, target: str) -> None:
    """An invite rings the colleague with invited_by; answering joins it for every member, leaving tells the rest."""
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o2.expect("taken", call=call)
    invite: dict[str, Any] = {"type": "invite", "call": call}
    invite.update({"department": "zeimu"} if target == "department" else {"terminal": OFFICE2})
    await o1.send(invite)
    inc = await o2.expect("incoming", call=call, invited_by=OFFICE1)
    assert inc["from"] == COUNTER and inc["members"] == [COUNTER, OFFICE1]

    await o2.send({"type": "answer", "call": call})
    state = await o2.expect("call_state", call=call)
    assert state["members"] == [COUNTER, OFFICE1, OFFICE2]
    for c in (counter, o1, o2):
        await c.expect("joined", call=call, terminal=OFFICE2)
    # The newcomer is a full member: the earlier members can signal it.
    await assert_signal(call, (COUNTER, counter), (OFFICE2, o2), "c-o2")
    await assert_signal(call, (OFFICE1, o1), (OFFICE2, o2), "o1-o2")

    await o2.send({"type": "leave", "call": call})
    assert (await o2.expect("ended", call=call))["reason"] == "leave"
    for c in (counter, o1):
        left = await c.expect("left", call=call, terminal=OFFICE2)
        assert left["reason"] == "leave"
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1), "after-leave")


async def test_invite_declined(relay: Relay) -> None:
    """A colleague declining an invite tells every member 'declined' and the call goes on."""
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o1.send({"type": "invite", "call": call, "terminal": OFFICE2})
    await o2.expect("incoming", call=call, invited_by=OFFICE1)
    await o2.send({"type": "decline", "call": call})
    for c in (counter, o1):
        await c.expect("declined", call=call, terminal=OFFICE2)
    await o2.send({"type": "answer", "call": call})
    assert (await o2.expect("error", ref="answer"))["code"] in ("forbidden", "already_answered")
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))


async def test_invite_expires(start_relay: StartRelay) -> None:
    """An invite nobody answers within invite_timeout: members get invite_expired, the target stops ringing."""
    relay = await start_relay(invite_timeout=0.3)
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o1.send({"type": "invite", "call": call, "department": "juumin"})
    await o2.expect("incoming", call=call, invited_by=OFFICE1)
    for c in (counter, o1):
        await c.expect("invite_expired", call=call, timeout=3)
    assert (await o2.expect("ended", call=call))["reason"] == "unanswered"
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))


async def test_call_to_unknown_department_is_refused(relay: Relay) -> None:
    """A call for a department the relay does not have gets 'unknown_department'; nothing rings; the counter
    can call again."""
    o1, lamp = await relay.client(OFFICE1), await relay.client(LAMP)
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "kosekika"})
    err = await counter.expect("error", ref="call")
    assert err["code"] == "unknown_department" and "kosekika" in err["message"]
    await assert_alive(o1)
    await assert_alive(lamp)
    assert not [m for c in (o1, lamp) for m in c.inbox if m["type"] == "incoming"]
    await place_call(counter, o1)


async def test_member_limit_refuses_invites_past_it(start_relay: StartRelay) -> None:
    """With max_members reached, an invite gets 'call_full' naming the limit and nobody is rung."""
    relay = await start_relay(max_members=2)
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o2.expect("taken", call=call)
    await o1.send({"type": "invite", "call": call, "terminal": OFFICE2})
    err = await o1.expect("error", ref="invite")
    assert err["code"] == "call_full" and "limit 2" in err["message"]
    await assert_alive(o2)
    assert not [m for m in o2.inbox if m["type"] == "incoming" and m.get("invited_by")]
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))


async def test_invite_by_name_does_not_ring_an_away_station(relay: Relay) -> None:
    """'away' means not rung: a colleague who is away cannot be rung by name either; once back, the invite works."""
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    await o2.send({"type": "status", "status": "away"})
    await o2.expect("status", status="away")
    call = await place_call(counter, o1)
    await o1.send({"type": "invite", "call": call, "terminal": OFFICE2})
    err = await o1.expect("error", ref="invite")
    assert err["code"] == "unavailable" and "away" in err["message"]
    assert not [m for m in o2.inbox if m["type"] == "incoming"]
    await o2.send({"type": "status", "status": "available"})
    await o2.expect("status", status="available")
    await o1.send({"type": "invite", "call": call, "terminal": OFFICE2})
    await o2.expect("incoming", call=call, invited_by=OFFICE1)


# -- reconnects ------------------------------------------------------------------------------
async def test_reconnect_within_grace_period_keeps_call(relay: Relay) -> None:
    """A station that drops and comes back within the grace period gets call_state and the call carries on."""
    o1 = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o1.close()
    await wait_until(lambda: OFFICE1 in relay.server.core.offline_members)
    await counter.send({"type": "signal", "call": call, "to": OFFICE1, "data": {"kind": "offer"}})
    assert (await counter.expect("error", ref="signal"))["code"] == "member_offline"

    o1 = await relay.client(OFFICE1, expect_welcome=False)
    await o1.expect("welcome")
    state = await o1.expect("call_state", call=call)
    assert state["state"] == "active" and state["members"] == [COUNTER, OFFICE1] and state["offline"] == []
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))
    assert not [m for m in counter.inbox if m["type"] in ("ended", "left")]


async def test_drop_past_grace_period_ends_call(start_relay: StartRelay) -> None:
    """The only staff member staying away longer than grace_period ends the call with reason 'disconnected'."""
    relay = await start_relay(grace_period=0.3)
    o1, lamp = await relay.client(OFFICE1), await relay.client(LAMP)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o1.close()
    for c in (counter, lamp):
        assert (await c.expect("ended", call=call, timeout=3))["reason"] == "disconnected"
    # Coming back later: the station is told the call ended (after welcome), not handed a stale call_state.
    o1 = await relay.client(OFFICE1)
    assert (await o1.expect("ended", call=call))["reason"] == "disconnected"
    await assert_alive(o1)
    assert not [m for m in o1.inbox if m["type"] == "call_state"]
    assert call not in relay.server.core.calls


async def test_member_drop_past_grace_period_leaves(start_relay: StartRelay) -> None:
    """One of two staff members staying away past grace_period leaves with reason 'disconnected'; the call goes on."""
    relay = await start_relay(grace_period=0.3)
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await o1.send({"type": "invite", "call": call, "terminal": OFFICE2})
    await o2.expect("incoming", call=call, invited_by=OFFICE1)
    await o2.send({"type": "answer", "call": call})
    await counter.expect("joined", call=call, terminal=OFFICE2)
    await o2.close()
    for c in (counter, o1):
        left = await c.expect("left", call=call, terminal=OFFICE2, timeout=3)
        assert left["reason"] == "disconnected"
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))


async def test_replaced_connection(relay: Relay) -> None:
    """The same terminal connecting again closes the old connection with 4409; the new one carries on its call."""
    old = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, old)
    new = await relay.client(OFFICE1)  # expects 'welcome', not an "ID taken" error
    msgs, code = await drain_until_closed(old)
    assert code == CLOSE_REPLACED
    assert not [m for m in msgs if m["type"] == "error"]
    state = await new.expect("call_state", call=call)
    assert state["members"] == [COUNTER, OFFICE1] and state["offline"] == []
    await assert_signal(call, (COUNTER, counter), (OFFICE1, new))
    assert not [m for m in new.inbox if m["type"] == "error"]
    assert not [m for m in counter.inbox if m["type"] in ("left", "ended")]
    await new.send({"type": "hangup", "call": call})
    await counter.expect("ended", call=call, reason="hangup", by=OFFICE1)


# -- authentication --------------------------------------------------------------------------
def assert_reveals_nothing(msgs: list[dict[str, Any]]) -> None:
    """An unauthenticated client learnt nothing about terminals or departments."""
    text = json.dumps(msgs, ensure_ascii=False)
    for secret in (*TOKENS, *TOKENS.values(), "juumin", "tobetsu", "sapporo", "0133"):
        assert secret not in text, (secret, text)


BAD_HELLOS: dict[str, str | bytes] = {
    "unknown_token": json.dumps({"type": "hello", "token": "not-a-real-token", "protocol": 1}),
    "other_protocol": json.dumps({"type": "hello", "token": TOKENS[COUNTER], "protocol": 2}),
    "other_first_message": json.dumps({"type": "call", "department": "juumin"}),
    "no_token": json.dumps({"type": "hello", "protocol": 1}),
    "empty_token": json.dumps({"type": "hello", "token": "", "protocol": 1}),
    "not_json": "hello?",
    "binary": b"\x00hello",
}


@pytest.mark.parametrize("name", list(BAD_HELLOS))
async def test_bad_hello_unauthorized(relay: Relay, name: str) -> None:
    """A bad first message (unknown token, protocol != 1, not hello, not JSON) gets one 'unauthorized' and 4401."""
    c = await relay.client()
    frame = BAD_HELLOS[name]
    await (c.ws.send(frame) if isinstance(frame, bytes) else c.send(frame))
    msgs, code = await drain_until_closed(c)
    assert code == CLOSE_UNAUTHORIZED
    assert [m["type"] for m in msgs] == ["error"] and msgs[0]["code"] == "unauthorized"
    assert_reveals_nothing(msgs)
    assert relay.server.core.online == {}


async def test_missing_hello_times_out(start_relay: StartRelay) -> None:
    """A connection that sends no hello within hello_timeout gets 'unauthorized' and close 4401."""
    relay = await start_relay(hello_timeout=0.3)
    c = await relay.client()
    msgs, code = await drain_until_closed(c)
    assert code == CLOSE_UNAUTHORIZED
    assert [m["code"] for m in msgs] == ["unauthorized"] and "hello" in msgs[0]["message"]
    assert_reveals_nothing(msgs)


# -- rules and malformed input -----------------------------------------------------------------
async def test_role_violations(relay: Relay) -> None:
    """Terminals may only send what their role allows, and only into calls they are members of."""
    o1, o2, lamp = await relay.client(OFFICE1), await relay.client(OFFICE2), await relay.client(LAMP)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)

    await counter.send({"type": "answer", "call": call})
    assert (await counter.expect("error", ref="answer"))["code"] == "forbidden"
    await counter.send({"type": "invite", "call": call, "terminal": OFFICE2})
    assert (await counter.expect("error", ref="invite"))["code"] == "forbidden"
    await lamp.send({"type": "call", "department": "juumin"})
    assert (await lamp.expect("error", ref="call"))["code"] == "forbidden"
    for terminal in (lamp, o2):  # only a counter's technician tests the office lamps
        await terminal.send({"type": "lamp_test"})
        assert (await terminal.expect("error", ref="lamp_test"))["code"] == "forbidden"
    await o2.send({"type": "signal", "call": call, "to": COUNTER, "data": {"kind": "offer"}})
    assert (await o2.expect("error", ref="signal"))["code"] == "not_member"
    await o2.send({"type": "hangup", "call": call})
    assert (await o2.expect("error", ref="hangup"))["code"] == "not_member"
    await o1.send({"type": "signal", "call": call, "to": OFFICE2, "data": {"kind": "offer"}})
    assert (await o1.expect("error", ref="signal"))["code"] == "not_member"
    assert not [m for m in o2.inbox if m["type"] == "signal"]
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))


MALFORMED: dict[str, tuple[str | bytes, str, str]] = {
    # name: (frame, error code, words the error message must contain)
    "non_json": ("{not json", "bad_message", "JSON"),
    "binary_frame": (b"\x00\x01\x02", "bad_message", "binary"),
    "json_array": ('[{"type": "ping"}]', "bad_message", "array"),
    "unknown_type": ('{"type": "teleport"}', "unknown_type", "teleport"),
    "missing_field": ('{"type": "answer"}', "bad_message", "'call'"),
    "mistyped_field": ('{"type": "status", "status": 1}', "bad_message", "'status'"),
    "bool_as_integer": ('{"type": "ping", "id": true}', "bad_message", "boolean"),
    "extra_field": ('{"type": "ping", "id": 1, "colour": "red"}', "bad_message", "colour"),
    "oversize_message": (json.dumps({"type": "ping", "id": "x" * (65 * 1024)}), "too_large", "65536"),
    "oversize_signal_data": (
        json.dumps({"type": "signal", "call": "c", "to": "t", "data": {"sdp": "x" * (49 * 1024)}}),
        "too_large",
        "signal data",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_input_is_answered_and_harmless(relay: Relay, name: str) -> None:
    """Each kind of malformed frame gets an error naming the problem; the sender and another call carry on."""
    frame, code, words = MALFORMED[name]
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)
    if isinstance(frame, bytes):
        await o2.ws.send(frame)
    else:
        await o2.send(frame)
    err = await o2.expect("error")
    assert err["code"] == code, err
    assert words in err["message"], err
    await assert_alive(o2)
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))
    # And the misbehaving station is still a normal station: it can be invited and join.
    await o1.send({"type": "invite", "call": call, "terminal": OFFICE2})
    await o2.expect("incoming", call=call, invited_by=OFFICE1)


@pytest.mark.parametrize("limit", [2048, 256 * 1024])
async def test_message_size_limit_follows_the_config(start_relay: StartRelay, limit: int) -> None:
    """[server] max_message_bytes is the limit, in UTF-8 bytes, whether below or above the 64 KiB default."""
    relay = await start_relay(max_message_bytes=limit)
    o1 = await relay.client(OFFICE1)
    head = len(json.dumps({"type": "ping", "id": ""}))
    fits = json.dumps({"type": "ping", "id": "x" * (limit - head)})
    assert len(fits.encode()) == limit
    await o1.send(fits)
    await o1.expect("pong", timeout=5)
    # One character past the limit, made of 3-byte characters: the byte count decides, not the length.
    too_big = json.dumps({"type": "ping", "id": "窓" * ((limit - head) // 3 + 1)}, ensure_ascii=False)
    assert len(too_big) <= limit < len(too_big.encode())
    await o1.send(too_big)
    err = await o1.expect("error")
    assert err["code"] == "too_large" and str(limit) in err["message"]
    await assert_alive(o1)


async def test_rate_limit_then_close(start_relay: StartRelay) -> None:
    """A flooding terminal gets rate_limited errors, then close 4429 if it keeps on; a call elsewhere is unaffected."""
    relay = await start_relay(rate_limit=5.0, rate_burst=10, rate_strikes=15)
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o1)

    # A short burst over the limit: some messages are dropped, the connection stays.
    for i in range(20):
        await o2.send({"type": "ping", "id": i})
    errors = [await o2.expect("error", code="rate_limited") for _ in range(5)]
    assert all("messages/s" in e["message"] for e in errors)
    # The bucket refills: after a while a ping is answered again (retry instead of sleeping a fixed time).
    deadline = time.monotonic() + 3
    while True:
        await o2.send({"type": "ping", "id": "again"})
        try:
            await o2.expect("pong", id="again", timeout=0.3)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "rate limit never recovered"

    # A sustained flood: closed with 4429.
    flood = 200
    try:
        for i in range(flood):
            await o2.send({"type": "ping", "id": f"f{i}"})
    except websockets.ConnectionClosed:
        pass
    msgs, code = await drain_until_closed(o2)
    assert code == CLOSE_RATE_LIMITED
    assert sum(1 for m in msgs if m.get("code") == "rate_limited") >= 15
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))
    await assert_alive(counter)


# -- presence, away, office hours ------------------------------------------------------------------
async def test_presence_changes_seen_by_counter(relay: Relay) -> None:
    """The counter sees a department go offline → available → offline (away) → available → busy → offline."""
    counter = await relay.client(COUNTER)

    async def presence() -> str:
        return str((await counter.expect("presence"))["departments"]["juumin"])

    assert await presence() == "offline"
    o1 = await relay.client(OFFICE1)
    assert await presence() == "available"
    await o1.send({"type": "status", "status": "away"})
    await o1.expect("status", status="away")
    assert await presence() == "offline"
    await o1.send({"type": "status", "status": "available"})
    assert await presence() == "available"
    call = await place_call(counter, o1)
    assert await presence() == "busy"
    await counter.send({"type": "hangup", "call": call})
    assert await presence() == "available"
    await o1.close()
    assert await presence() == "offline"


async def test_away_stations_not_rung_and_unavailable(relay: Relay) -> None:
    """An away station is not rung; with every station away a call is refused 'unavailable' with the fallback phone."""
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    counter = await relay.client(COUNTER)
    await o1.send({"type": "status", "status": "away"})
    await o1.expect("status", status="away")
    await counter.send({"type": "call", "department": "juumin"})
    call = (await counter.expect("ringing"))["call"]
    await o2.expect("incoming", call=call)
    await assert_alive(o1)
    assert not [m for m in o1.inbox if m["type"] == "incoming"]
    await counter.send({"type": "cancel", "call": call})
    await counter.expect("ended", call=call)

    await o2.send({"type": "status", "status": "away"})
    await o2.expect("status", status="away")
    await counter.send({"type": "call", "department": "juumin"})
    err = await counter.expect("error", ref="call")
    assert err["code"] == "unavailable" and err["department"] == "juumin"
    assert err["fallback"]["phone"] == JUUMIN_FALLBACK_PHONE
    assert not relay.server.core.calls


def office_hours_config(tmp_path: Path) -> RelayConfig:
    """The demo config with juumin open weekdays 08:45-17:30 in Asia/Tokyo."""
    text = DEMO_RELAY_CONFIG.read_text()
    marker = 'en = "Residents Division" }\nhours = "always"'
    assert marker in text
    p = tmp_path / "relay.toml"
    p.write_text(text.replace(marker, marker.replace('"always"', '["mon-fri 08:45-17:30"]')))
    cfg = load_relay_config(p)
    assert cfg.offices["tobetsu"].timezone == "Asia/Tokyo"
    return replace(cfg, database="", port=0)


async def test_stations_see_their_colleagues_status(relay: Relay) -> None:
    """A station's welcome lists its colleagues with their status, and each change comes as 'colleagues':
    available, away, back, offline; a call changes nothing (an invitation rings a station in a call too)."""
    o1 = await relay.client(OFFICE1)
    o2 = await relay.client(OFFICE2)
    assert (await o1.expect("colleagues"))["stations"] == {OFFICE2: "available"}
    welcome = o2.welcome
    assert [(s["id"], s["status"]) for s in welcome["stations"]] == [(OFFICE1, "available")]
    await o2.send({"type": "status", "status": "away"})
    assert (await o1.expect("colleagues"))["stations"] == {OFFICE2: "away"}
    await o2.send({"type": "status", "status": "available"})
    assert (await o1.expect("colleagues"))["stations"] == {OFFICE2: "available"}
    counter = await relay.client(COUNTER)
    call = await place_call(counter, o2)
    await counter.send({"type": "hangup", "call": call})
    await o2.expect("ended", call=call)
    await assert_alive(o1)
    assert not [m for m in o1.inbox if m["type"] == "colleagues"], "a call is no status change"
    await o2.close()
    await o1.expect("colleagues", stations={OFFICE2: "offline"})


async def test_office_hours_in_office_time_zone(start_relay: StartRelay, tmp_path: Path) -> None:
    """Office hours are judged in the office's zone (Asia/Tokyo), even on a server running in UTC."""
    # 10:00 UTC on a Monday is 19:00 in Tokyo (closed) but inside 08:45-17:30 in UTC;
    # 00:30 UTC on a Monday is 09:30 in Tokyo (open) but before 08:45 in UTC.
    closed_at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp()
    open_at = datetime(2026, 3, 2, 0, 30, tzinfo=UTC).timestamp()
    now = [closed_at]
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        relay = await start_relay(office_hours_config(tmp_path), clock=lambda: now[0])
        o1 = await relay.client(OFFICE1)
        counter = await relay.client(COUNTER)
        presence = (await counter.expect("presence"))["departments"]
        assert presence["juumin"] == "closed" and presence["zeimu"] == "available"
        await counter.send({"type": "call", "department": "juumin"})
        err = await counter.expect("error", ref="call")
        assert err["code"] == "closed" and err["department"] == "juumin"
        assert err["fallback"]["phone"] == JUUMIN_FALLBACK_PHONE
        assert not [m for m in o1.inbox if m["type"] == "incoming"]

        now[0] = open_at
        relay.server._apply(relay.server.core.tick(now[0]))  # what the periodic tick does
        assert (await counter.expect("presence"))["departments"]["juumin"] == "available"
        await place_call(counter, o1, "juumin")
    finally:
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


# -- welcome extras, HTTP endpoints, origins, TLS ---------------------------------------------------
async def test_turn_credentials_in_welcome(start_relay: StartRelay) -> None:
    """With turn_secret set, welcome carries coturn REST credentials: '<expiry>:<id>' and base64 HMAC-SHA1 of it."""
    now = 1_800_000_000.0
    relay = await start_relay(
        clock=lambda: now,
        turn_secret="s3cret",
        turn_urls=("turn:127.0.0.1:3478",),
        turn_ttl=3600,
        ice_servers=({"urls": "stun:127.0.0.1:3478"},),
    )
    c = await relay.client(token=TOKENS[COUNTER], expect_welcome=False)
    welcome = await c.expect("welcome")
    stun, turn = welcome["ice_servers"]
    assert stun == {"urls": "stun:127.0.0.1:3478"}
    assert turn["urls"] == ["turn:127.0.0.1:3478"]
    assert turn["username"] == f"{int(now) + 3600}:{COUNTER}"
    expected = base64.b64encode(
        hmac.new(b"s3cret", turn["username"].encode(), hashlib.sha1).digest()
    ).decode()
    assert turn["credential"] == expected


async def test_healthz(relay: Relay) -> None:
    """/healthz answers 200 with JSON saying ok and how many terminals are connected."""
    await relay.client(OFFICE1)
    status, ctype, body = await http_get(f"http://127.0.0.1:{relay.server.port}/healthz")
    assert status == 200 and ctype == "application/json"
    data = json.loads(body)
    assert data["status"] == "ok" and data["terminals"]["office"] == 1
    status, _, _ = await http_get(f"http://127.0.0.1:{relay.server.port}/elsewhere")
    assert status == 404


async def test_metrics_count_calls_and_errors(start_relay: StartRelay) -> None:
    """/metrics counts finished calls by outcome and error replies by code."""
    relay = await start_relay(ring_timeout=0.3)
    o1 = await relay.client(OFFICE1)
    counter = await relay.client(COUNTER)
    for _ in range(2):
        call = await place_call(counter, o1)
        await counter.send({"type": "hangup", "call": call})
        await o1.expect("ended", call=call)
    await counter.send({"type": "call", "department": "juumin"})
    call = (await counter.expect("ringing"))["call"]
    await counter.send({"type": "cancel", "call": call})
    await counter.expect("ended", call=call)
    await counter.send({"type": "call", "department": "juumin"})
    call = (await counter.expect("ringing"))["call"]
    await counter.expect("ended", call=call, reason="unanswered")
    await counter.send("not json")
    await counter.expect("error", code="bad_message")
    await counter.send({"type": "answer", "call": "nope"})
    await counter.expect("error", code="forbidden")

    status, ctype, text = await http_get(f"http://127.0.0.1:{relay.server.port}/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert metric(text, "relay_calls_total", department="juumin", outcome="answered") == 2
    assert metric(text, "relay_calls_total", department="juumin", outcome="cancelled") == 1
    assert metric(text, "relay_calls_total", department="juumin", outcome="unanswered") == 1
    assert metric(text, "relay_errors_total", code="bad_message") == 1
    assert metric(text, "relay_errors_total", code="forbidden") == 1
    assert metric(text, "relay_terminals_connected", role="office", department="juumin") == 1
    assert metric(text, "relay_ring_seconds_count", department="juumin") == 2


async def test_foreign_origin_rejected(start_relay: StartRelay) -> None:
    """With allowed_origins set, a browser from another Origin is refused; listed and Origin-less clients connect."""
    relay = await start_relay(allowed_origins=("https://kiosk.example",))
    with pytest.raises(websockets.InvalidStatus) as exc:
        await connect(relay.server.url, origin="https://evil.example", open_timeout=5)  # type: ignore[arg-type]
    assert exc.value.response.status_code == 403
    async with connect(relay.server.url, origin="https://kiosk.example", open_timeout=5) as ws:  # type: ignore[arg-type]
        c = WsClient(ws)
        await c.send({"type": "hello", "token": TOKENS[OFFICE1], "protocol": 1})
        await c.expect("welcome", terminal=OFFICE1)
    await relay.client(COUNTER)


async def test_tls_wss(start_relay: StartRelay, tmp_path: Path) -> None:
    """With tls_cert/tls_key the relay speaks wss:// and a client trusting the certificate completes a call."""
    import ssl

    cert, key = make_cert(tmp_path)
    relay = await start_relay(tls_cert=str(cert), tls_key=str(key))
    assert relay.server.url.startswith("wss://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=cert)

    async def open_tls(terminal: str) -> WsClient:
        c = WsClient(await connect(relay.server.url, ssl=ctx, open_timeout=5))
        relay.clients.append(c)
        await c.send({"type": "hello", "token": TOKENS[terminal], "protocol": 1})
        await c.expect("welcome", terminal=terminal)
        return c

    o1, counter = await open_tls(OFFICE1), await open_tls(COUNTER)
    call = await place_call(counter, o1)
    await assert_signal(call, (COUNTER, counter), (OFFICE1, o1))
    # A plain ws:// client cannot talk to it.
    with pytest.raises((websockets.InvalidHandshake, OSError, TimeoutError)):
        await connect(relay.server.url.replace("wss://", "ws://"), open_timeout=2)


async def test_terminal_that_stops_reading_is_cut_off_and_others_carry_on(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """A terminal that stops reading is disconnected once its outbox is full; the sender is unaffected."""
    relay = await start_relay(rate_limit=100000.0, rate_burst=100000)
    o1, counter = await relay.client(OFFICE1), await relay.client(COUNTER)
    call = await place_call(counter, o1)
    # The counter's client now reads nothing: its library buffers a few frames, then the kernel's socket
    # buffers fill, then the relay's outbox for it grows past its limit.
    blob = "x" * 40_000
    for i in range(600):
        await o1.send(
            {"type": "signal", "call": call, "to": COUNTER, "data": {"kind": "offer", "sdp": blob, "n": i}}
        )
        if i % 50 == 0:
            await o1.send({"type": "ping", "id": i})
            await o1.expect("pong", id=i)  # the sender is never slowed down by the stalled reader
    await wait_until(lambda: COUNTER not in relay.server.conns, 10)
    assert "event=terminal_not_reading terminal=counter-sapporo-1" in caplog.text
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await counter.recv(5)
    # The close frame (1008) can only arrive if the stalled socket drained in time; either way it is closed.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1008
    await o1.send({"type": "ping", "id": "after"})
    await o1.expect("pong", id="after")
