"""Issue 13: no member can hurt another, and limits come before trust — the real relay on 127.0.0.1:0.

Each test names the row of the issue's table it reproduces; each failed on the code before the fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest
import websockets
from helpers import COUNTER, OFFICE1, OFFICE2, ROOT, TOKENS, make_relay_config, wait_until
from rawws import RawWs
from relay_support import Relay, StartRelay, assert_alive, drain_until_closed, place_call

from common.protocol import CLOSE_REPLACED, CLOSE_UNAUTHORIZED
from relay_server.config import ConfigError, hash_token
from relay_server.server import RelayServer


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


# -- row 1: text that cannot be encoded never enters -------------------------------------------------
async def test_lone_surrogate_in_signal_is_refused_and_recipient_keeps_its_socket(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 1: a lone surrogate in a signal's data gets bad_message; the recipient is not disconnected and the
    valid offer sent next arrives."""
    o1, counter = await relay.client(OFFICE1), await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await counter.send(
        '{"type":"signal","call":"' + call + '","to":"' + OFFICE1 + '","data":{"sdp":"\\ud800"}}'
    )
    err = await counter.expect("error", ref="signal")
    assert err["code"] == "bad_message" and "surrogate" in err["message"]
    await counter.send(
        {"type": "signal", "call": call, "to": OFFICE1, "data": {"kind": "offer", "sdp": "v=0"}}
    )
    got = await o1.expect("signal", call=call)
    assert got["data"] == {"kind": "offer", "sdp": "v=0"}
    await assert_alive(o1)
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"ping","id":"\\udfff"}',  # would be echoed in pong
        '{"type":"\\ud800"}',  # would be echoed in the error's text and ref
        '{"type":"call","department":"\\ud800x"}',
    ],
)
async def test_surrogates_never_break_the_senders_socket(
    relay: Relay, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 1: surrogates in echoed fields (ping ids, types, departments) get an error, and the sender stays."""
    counter = await relay.client(COUNTER)
    await counter.send(frame)
    err = await counter.expect("error")
    assert err["code"] == "bad_message", err
    await assert_alive(counter)
    no_tracebacks(caplog)


async def test_surrogate_before_hello_is_unauthorized_without_traceback(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 1: a surrogate in the first message gets 'unauthorized' and 4401, no traceback in the log."""
    c = await relay.client()
    await c.send('{"type":"hello","token":"\\ud800","protocol":1}')
    msgs, code = await drain_until_closed(c)
    assert code == CLOSE_UNAUTHORIZED and [m["code"] for m in msgs] == ["unauthorized"]
    no_tracebacks(caplog)


# -- row 13 (relay part): deep nesting, non-UTF-8, oversize ------------------------------------------------
async def test_deep_nesting_gets_bad_message(relay: Relay, caplog: pytest.LogCaptureFixture) -> None:
    """Row 13: JSON nested 5,000 deep is a bad_message (was RecursionError, close 1011 and a traceback)."""
    o1, counter = await relay.client(OFFICE1), await relay.client(COUNTER)
    call = await place_call(counter, o1)
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    await counter.send('{"type":"signal","call":"' + call + '","to":"' + OFFICE1 + '","data":' + deep + "}")
    err = await counter.expect("error")
    assert err["code"] == "bad_message" and "nested" in err["message"]
    await assert_alive(counter)
    no_tracebacks(caplog)


async def test_non_utf8_text_frame_gets_bad_message(relay: Relay) -> None:
    """Row 13: a text frame that is not UTF-8 gets bad_message and the connection stays (was close 1007)."""
    counter = await relay.client(COUNTER)
    await counter.ws.send(b'{"type":"ping","id":"\xff\xfe"}', text=True)
    err = await counter.expect("error")
    assert err["code"] == "bad_message" and "UTF-8" in err["message"]
    await assert_alive(counter)


async def test_far_oversize_message_gets_an_error_before_the_close(start_relay: StartRelay) -> None:
    """Row 13: a message over twice the limit gets too_large before close 1009 (was a close with no error)."""
    relay = await start_relay(max_message_bytes=4096)
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    try:
        await o2.send(json.dumps({"type": "ping", "id": "x" * 20_000}))
    except websockets.ConnectionClosed:
        pass
    msgs, code = await drain_until_closed(o2)
    assert code == 1009 and [m["code"] for m in msgs] == ["too_large"]
    await assert_alive(o1)


# -- row 3: the counter's cancel wins over a crossing answer -------------------------------------------
async def test_cancel_crossing_the_answer_ends_the_call(relay: Relay) -> None:
    """Row 3: cancel after the relay took the answer ends the call for the station, and the counter can call
    again at once (was not_ringing, and already_in_call until the station hung up)."""
    o1, counter = await relay.client(OFFICE1), await relay.client(COUNTER)
    call = await place_call(counter, o1)
    await counter.send({"type": "cancel", "call": call})
    assert (await o1.expect("ended", call=call))["reason"] == "cancelled"
    await counter.send({"type": "call", "department": "juumin"})
    assert (await counter.expect("ringing", department="juumin"))["call"] != call
    assert not [m for m in counter.inbox if m["type"] == "error"]


# -- row 4: limits before trust --------------------------------------------------------------------
async def test_pre_hello_frames_are_small(relay: Relay) -> None:
    """Row 4: before hello, a frame announcing 1 MiB is refused at once (unauthorized, 4401) without waiting for
    its bytes (was: buffered up to 1 MiB per socket)."""
    raw = await RawWs.open(relay.server.url)
    raw.frame(b'{"type":"hello"', announce=1 << 20)  # 1 MiB announced, 15 bytes sent
    frames = await raw.read_until_eof()
    raw.close()
    texts = [json.loads(d) for op, d in frames if op == 1]
    assert [m["code"] for m in texts] == ["unauthorized"] and "4096" in texts[0]["message"]
    closes = [d for op, d in frames if op == 8]
    assert closes and int.from_bytes(closes[0][:2], "big") == CLOSE_UNAUTHORIZED


async def test_hello_just_under_the_pre_hello_limit_is_fine(relay: Relay) -> None:
    """Row 4: the small limit leaves room for any real hello (a long client name)."""
    c = await relay.client()
    await c.send({"type": "hello", "token": TOKENS[COUNTER], "protocol": 1, "client": "k" * 3000})
    await c.expect("welcome")


@pytest.mark.parametrize("cap", ["max_connections_per_address", "max_connections"])
async def test_connection_caps_per_address_and_in_all(start_relay: StartRelay, cap: str) -> None:
    """Row 4: one socket over [server] max_connections_per_address (or max_connections) is refused with HTTP 503;
    a place frees up when a socket closes."""
    relay = await start_relay(**{cap: 3})
    held = [await relay.client() for _ in range(3)]
    with pytest.raises(websockets.InvalidStatus) as exc:
        await relay.client()
    assert exc.value.response.status_code == 503
    await held[0].close()
    await wait_until(lambda: relay.server.open_total == 2)
    await relay.client(COUNTER)  # room again


async def test_silent_sockets_over_the_cap_are_dropped_at_once(start_relay: StartRelay) -> None:
    """Row 4: TCP sockets that never even send their HTTP request count against the cap, and one over it is
    dropped within seconds (not after the 10 s handshake timeout), while those within it stay."""
    relay = await start_relay(max_connections_per_address=3)
    host, port = relay.server.host, relay.server.port
    socks = [await asyncio.open_connection(host, port) for _ in range(4)]
    try:
        assert await asyncio.wait_for(socks[3][0].read(), 5) == b""  # dropped
        for reader, _ in socks[:3]:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(), 0.05)
    finally:
        for _, writer in socks:
            writer.close()


async def test_failed_logins_slow_down_but_valid_tokens_never_wait(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 4/8: after the free failures, a bad token from an address waits (exponentially longer each time),
    while a valid token from the same address is welcomed at once; one log line per address per minute."""
    from relay_server.guards import AuthThrottle  # (imports of new names inside: the test runs on older code)

    caplog.set_level(logging.INFO, logger="relay")
    relay = await start_relay()
    relay.server.auth_throttle = AuthThrottle(free=2, base=60.0, cap=60.0)
    for _ in range(2):  # the free ones: answered at once
        c = await relay.client()
        await c.send({"type": "hello", "token": "guess", "protocol": 1})
        _, code = await drain_until_closed(c)
        assert code == CLOSE_UNAUTHORIZED
    slow = await relay.client()
    await slow.send({"type": "hello", "token": "guess", "protocol": 1})
    await wait_until(lambda: relay.server.auth_throttle.failures["127.0.0.1"][0] == 3)
    await relay.client(COUNTER)  # welcome arrives while the third failure is still held back
    with pytest.raises(TimeoutError):
        await slow.recv(timeout=0.2)
    lines = [r.getMessage() for r in caplog.records if "event=auth_failed" in r.getMessage()]
    assert len(lines) == 1, lines


def test_auth_throttle_grows_exponentially_and_forgets() -> None:
    """Row 8: the wait doubles with each failure past the free ones, is capped, and is forgotten later."""
    from relay_server.guards import AuthThrottle

    t = AuthThrottle(free=3, base=0.5, cap=30.0, forget=600.0)
    waits = [t.failed("198.18.0.9", 100.0 + i) for i in range(12)]
    assert waits[:3] == [0, 0, 0] and waits[3:8] == [0.5, 1, 2, 4, 8] and waits[-1] == 30
    assert t.failed("198.18.0.10", 200.0) == 0  # another address is not affected
    assert t.failed("198.18.0.9", 100.0 + 11 + 601) == 0  # forgiven after 10 quiet minutes


async def test_rate_limit_survives_reconnects(start_relay: StartRelay) -> None:
    """Row 9: a terminal's message allowance is not refilled by reconnecting (was a fresh bucket per socket)."""
    relay = await start_relay(rate_limit=0.05, rate_burst=5, rate_strikes=1000)
    c = await relay.client(OFFICE1)
    for i in range(5):
        await c.send({"type": "ping", "id": i})
    for i in range(5):
        await c.expect("pong", id=i)
    await c.close()
    c = await relay.client(OFFICE1)
    await c.send({"type": "ping", "id": "after"})
    assert (await c.expect("error"))["code"] == "rate_limited"


async def test_refused_calls_are_counted_not_one_row_and_line_each(
    start_relay: StartRelay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 9: 40 refused calls (no station online) make no call-log row and one log line, and are all counted."""
    caplog.set_level(logging.INFO, logger="relay")
    db = tmp_path / "calls.sqlite3"
    relay = await start_relay(database=str(db), rate_limit=1000.0, rate_burst=1000)
    counter = await relay.client(COUNTER)
    for _ in range(40):
        await counter.send({"type": "call", "department": "juumin"})
    for _ in range(40):
        assert (await counter.expect("error", ref="call"))["code"] == "unavailable"
    await relay.server.close()
    from relay_server.store import CallLog

    with CallLog(db) as log:
        assert log.records() == []
        assert len(log.refused()) == 40
    lines = [r.getMessage() for r in caplog.records if "event=call_rejected" in r.getMessage()]
    assert len(lines) == 1, lines


async def test_published_tokens_refused_unless_loopback() -> None:
    """Row 8: a relay listening beyond loopback refuses to start with demo or REPLACE-ME tokens; on 127.0.0.1
    (the demo configs) it starts."""
    config = make_relay_config(host="0.0.0.0")
    with pytest.raises(ConfigError, match="published demo or placeholder token"):
        await RelayServer(config).start()
    terminals = dict(config.terminals)
    from dataclasses import replace

    terminals[COUNTER] = replace(terminals[COUNTER], token_hash=hash_token(f"REPLACE-ME-{COUNTER}"))
    for t in (OFFICE1, OFFICE2, "lamp-tobetsu-1"):
        terminals[t] = replace(terminals[t], token_hash=hash_token(f"a-real-secret-{t}"))
    with pytest.raises(ConfigError, match=COUNTER):
        await RelayServer(replace(config, terminals=terminals)).start()
    server = await RelayServer(make_relay_config()).start()  # 127.0.0.1
    await server.close()


def test_every_demo_token_is_known_as_published() -> None:
    """Row 8: each token written in config/*.toml is in the published list (a new demo token must be added)."""
    from relay_server.config import PUBLISHED_TOKENS

    written = {
        m
        for p in (ROOT / "config").rglob("*.toml")
        for m in re.findall(r'^token = "([^"]+)"', p.read_text(), re.M)
        if not m.startswith("REPLACE-ME-")
    }
    assert written and written <= set(PUBLISHED_TOKENS), written - set(PUBLISHED_TOKENS)


def test_relay_unit_raises_the_open_file_limit() -> None:
    """Row 4: the systemd unit sets LimitNOFILE above the default connection cap plus the relay's reserve."""
    unit = (ROOT / "contrib" / "systemd" / "relay-server.service").read_text()
    m = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert m and int(m.group(1)) >= make_relay_config().max_connections + 64


# -- row 5: logs that cannot lie -------------------------------------------------------------------
async def test_attacker_text_cannot_forge_or_flood_log_lines(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 5: CR, LF and ESC in a client's text are escaped, and its text is cut short, in every log line."""
    caplog.set_level(logging.INFO)
    forged = (
        "x\r\n2026-12-02 12:00:00 WARNING relay event=terminal_replaced terminal=office\x1b[2J" + "A" * 60_000
    )
    c = await relay.client()
    await c.send({"type": forged})
    await drain_until_closed(c)
    counter = await relay.client(COUNTER)
    await counter.send({"type": forged})
    await counter.expect("error")
    for r in caplog.records:
        text = r.getMessage()
        assert not re.search(r"[\x00-\x1f\x7f]", text), text[:300]
        assert len(text) < 2000, len(text)
    assert any("\\r\\n2026-12-02" in r.getMessage() for r in caplog.records)


# -- row 6: a replaced connection is inert at once ---------------------------------------------------
async def test_replaced_connection_is_inert_at_once(relay: Relay) -> None:
    """Row 6: what an old socket sends after a newer login of its terminal is dropped, even while its close is
    pending (was: processed for up to 3 s, ringing stations)."""
    o1 = await relay.client(OFFICE1)
    old = await RawWs.open(relay.server.url)
    old.send({"type": "hello", "token": TOKENS[COUNTER], "protocol": 1})
    await wait_until(lambda: COUNTER in relay.server.core.online)
    new = await relay.client(COUNTER)  # welcomed: the old connection is replaced from here on
    for _ in range(5):  # the old socket never answers the relay's close frame: it stays open for a while
        old.send({"type": "call", "department": "juumin"})
    frames = await old.read_until_eof()  # all its frames were read before the relay dropped it
    old.close()
    codes = [int.from_bytes(d[:2], "big") for op, d in frames if op == 8]
    assert codes == [CLOSE_REPLACED]
    assert relay.server.core.calls == {}
    await assert_alive(new)
    assert not [m for m in o1.inbox if m["type"] == "incoming"]


# -- row 11: a station back from away is rung ------------------------------------------------------
async def test_station_back_from_away_is_rung_for_ringing_calls(relay: Relay) -> None:
    """Row 11: a station that switches back to available gets incoming for calls already ringing and may answer
    (was: not rung, and its answer refused)."""
    o1, o2 = await relay.client(OFFICE1), await relay.client(OFFICE2)
    await o2.send({"type": "status", "status": "away"})
    await o2.expect("status", status="away")
    counter = await relay.client(COUNTER)
    await counter.send({"type": "call", "department": "juumin"})
    call = (await counter.expect("ringing"))["call"]
    await o1.expect("incoming", call=call)
    await o2.send({"type": "status", "status": "available"})
    await o2.expect("incoming", call=call)
    await o2.send({"type": "answer", "call": call})
    assert (await counter.expect("answered", call=call))["by"] == OFFICE2
